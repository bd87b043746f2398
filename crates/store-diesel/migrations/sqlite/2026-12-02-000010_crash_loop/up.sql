-- A deployment's streak of failing replicas: replacements wait until crash_retry_at_ms.
ALTER TABLE deployments ADD COLUMN crash_restarts BIGINT NOT NULL DEFAULT 0 CHECK (crash_restarts >= 0);
ALTER TABLE deployments ADD COLUMN crash_exit_code BIGINT;
ALTER TABLE deployments ADD COLUMN crash_last_ms BIGINT;
ALTER TABLE deployments ADD COLUMN crash_retry_at_ms BIGINT;
