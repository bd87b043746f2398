-- Every change of state, in order (see orchestrator_core::event). Writers hold the store's
-- advisory write lock, so ids are taken and committed in the same order.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    deployment TEXT,
    replica BIGINT,
    message TEXT NOT NULL
);
