-- Bumped by every write that adds or removes a node or changes what a node is (its address,
-- capacity, labels, public host or engine facts), not by what changes with its replicas and
-- heartbeats: a reader that holds those parts from an earlier read keeps them while this is
-- unchanged, and reads only the columns that move (`store_diesel::node_cache`).
ALTER TABLE cluster ADD COLUMN nodes_version BIGINT NOT NULL DEFAULT 0;
