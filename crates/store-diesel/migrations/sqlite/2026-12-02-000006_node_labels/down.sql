ALTER TABLE nodes DROP COLUMN engine_memory_bytes;
ALTER TABLE nodes DROP COLUMN engine_cpus;
ALTER TABLE nodes DROP COLUMN public_host;
ALTER TABLE nodes DROP COLUMN labels;
