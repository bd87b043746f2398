-- Replicas that ended badly (exited, unhealthy, vanished, never started, image not pulled): why, and the last
-- of what each printed (JSON lines, at most 64 KiB), kept per deployment until it is deleted.
CREATE TABLE replica_exits (
    replica BIGINT PRIMARY KEY NOT NULL,
    deployment TEXT NOT NULL,
    node TEXT NOT NULL,
    revision BIGINT NOT NULL CHECK (revision >= 1),
    started_at_ms BIGINT,
    ended_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('exited', 'oom_killed', 'unhealthy', 'vanished', 'not_started', 'pull_failed')),
    exit_code BIGINT,
    detail TEXT,
    logs TEXT NOT NULL
);
CREATE INDEX replica_exits_by_deployment ON replica_exits (deployment, ended_at_ms);
