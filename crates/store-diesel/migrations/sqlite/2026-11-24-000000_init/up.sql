-- One row: this cluster's identity, stamped on every container it creates.
CREATE TABLE cluster (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    id TEXT NOT NULL
);

-- The seed's node.db.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    capacity BIGINT NOT NULL CHECK (capacity >= 0),
    available BIGINT NOT NULL CHECK (available >= 0 AND available <= capacity),
    status TEXT NOT NULL CHECK (status IN ('online', 'offline', 'draining')),
    last_heartbeat_ms BIGINT
);

-- The seed's container.db, normalized: one row per deployment, one per replica.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY NOT NULL,
    image TEXT NOT NULL,
    command TEXT NOT NULL,
    replicas BIGINT NOT NULL CHECK (replicas >= 0),
    units BIGINT NOT NULL CHECK (units >= 1),
    version BIGINT NOT NULL CHECK (version >= 1),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- AUTOINCREMENT: replica ids are never reused, so a stale container is recognizable by its id.
CREATE TABLE replicas (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    deployment TEXT NOT NULL REFERENCES deployments (name),
    node TEXT NOT NULL REFERENCES nodes (name),
    units BIGINT NOT NULL CHECK (units >= 1),
    container_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'exited', 'lost')),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX replicas_by_deployment ON replicas (deployment);
CREATE INDEX replicas_by_node ON replicas (node);
