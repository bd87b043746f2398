ALTER TABLE deployments DROP COLUMN crash_retry_at_ms;
ALTER TABLE deployments DROP COLUMN crash_last_ms;
ALTER TABLE deployments DROP COLUMN crash_exit_code;
ALTER TABLE deployments DROP COLUMN crash_restarts;
