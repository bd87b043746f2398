-- What replicas hold of their node besides units: memory and CPUs (their limits) and fixed
-- host ports. Reserved in the placement transaction like units, and never beyond what the
-- engine reported (the CHECKs refuse a write that would oversubscribe, whatever the code did).
ALTER TABLE nodes ADD COLUMN memory_reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN nano_cpus_reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD CONSTRAINT nodes_memory_fits
    CHECK (memory_reserved >= 0 AND (engine_memory_bytes IS NULL OR memory_reserved <= engine_memory_bytes));
ALTER TABLE nodes ADD CONSTRAINT nodes_cpus_fit
    CHECK (nano_cpus_reserved >= 0 AND (engine_cpus IS NULL OR nano_cpus_reserved <= engine_cpus * 1000000000));
ALTER TABLE replicas ADD COLUMN memory_bytes BIGINT NOT NULL DEFAULT 0 CHECK (memory_bytes >= 0);
ALTER TABLE replicas ADD COLUMN nano_cpus BIGINT NOT NULL DEFAULT 0 CHECK (nano_cpus >= 0);
-- The fixed host ports it publishes, as `tcp/18081,udp/53` (what it was placed with).
ALTER TABLE replicas ADD COLUMN ports TEXT NOT NULL DEFAULT '';

-- One row per host port an active replica holds: the primary key is the rule that two
-- replicas never hold one port of one node, and, port first, how placing a deployment finds
-- the nodes holding its ports. Deleted (by key) when the replica is released or lost; no
-- foreign key to the replica, whose check would cost every placement a lookup more.
CREATE TABLE node_ports (
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    node TEXT NOT NULL REFERENCES nodes (name),
    replica BIGINT NOT NULL,
    PRIMARY KEY (port, protocol, node)
);
