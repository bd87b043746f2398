-- `node_ports` kept in its primary key alone: a row per fixed host port of every placement is
-- then one B-tree insert instead of two (the rowid table and the key's index). Its node is no
-- longer a foreign key: the row is written with its replica, on the same node, whose own key
-- to `nodes` is checked, and a node is removed only without active replicas, so without rows
-- here. The check cost every row a lookup in `nodes`.
CREATE TABLE node_ports_keyed (
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    node TEXT NOT NULL,
    replica BIGINT NOT NULL,
    PRIMARY KEY (port, protocol, node)
) WITHOUT ROWID;
INSERT INTO node_ports_keyed (port, protocol, node, replica) SELECT port, protocol, node, replica FROM node_ports;
DROP TABLE node_ports;
ALTER TABLE node_ports_keyed RENAME TO node_ports;
