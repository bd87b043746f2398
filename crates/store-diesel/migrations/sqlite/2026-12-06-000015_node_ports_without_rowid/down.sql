CREATE TABLE node_ports_rowid (
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    node TEXT NOT NULL REFERENCES nodes (name),
    replica BIGINT NOT NULL,
    PRIMARY KEY (port, protocol, node)
);
INSERT INTO node_ports_rowid (port, protocol, node, replica) SELECT port, protocol, node, replica FROM node_ports;
DROP TABLE node_ports;
ALTER TABLE node_ports_rowid RENAME TO node_ports;
