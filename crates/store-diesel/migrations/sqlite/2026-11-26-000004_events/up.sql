-- Every change of state, in order (see orchestrator_core::event). AUTOINCREMENT: an id is never
-- handed out twice, even after the newest events were dropped.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    deployment TEXT,
    replica BIGINT,
    message TEXT NOT NULL
);
