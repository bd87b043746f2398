DROP TABLE node_ports;
ALTER TABLE replicas DROP COLUMN ports;
ALTER TABLE replicas DROP COLUMN nano_cpus;
ALTER TABLE replicas DROP COLUMN memory_bytes;
ALTER TABLE nodes DROP CONSTRAINT nodes_cpus_fit;
ALTER TABLE nodes DROP CONSTRAINT nodes_memory_fits;
ALTER TABLE nodes DROP COLUMN nano_cpus_reserved;
ALTER TABLE nodes DROP COLUMN memory_reserved;
