-- The same tables as migrations/sqlite, for PostgreSQL: several servers share one store.

-- One row: this cluster's identity (stamped on every container it creates) and the revision
-- every write transaction bumps.
CREATE TABLE cluster (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    id TEXT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 0
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

-- A sequence never hands out an id twice: a stale container is recognizable by its id.
CREATE TABLE replicas (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    deployment TEXT NOT NULL REFERENCES deployments (name),
    node TEXT NOT NULL REFERENCES nodes (name),
    units BIGINT NOT NULL CHECK (units >= 1),
    container_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'exited', 'lost')),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX replicas_by_deployment ON replicas (deployment);
CREATE INDEX replicas_by_node ON replicas (node);

-- API tokens, kept only as SHA-256 digests.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'reader')),
    digest TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

-- Every mutation through the API: who (token id), what, when, and the answer.
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY NOT NULL,
    at_ms BIGINT NOT NULL,
    token_id TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL
);
