-- What constraints look at (labels, JSON), where published ports are reached when not the
-- engine address's host, and what the engine said of itself at first contact.
ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN public_host TEXT;
ALTER TABLE nodes ADD COLUMN engine_cpus BIGINT CHECK (engine_cpus >= 0);
ALTER TABLE nodes ADD COLUMN engine_memory_bytes BIGINT CHECK (engine_memory_bytes >= 0);
