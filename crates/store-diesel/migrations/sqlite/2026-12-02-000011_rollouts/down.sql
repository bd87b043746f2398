DROP TABLE rollouts;
ALTER TABLE replicas DROP COLUMN deregistered_at_ms;
ALTER TABLE replicas DROP COLUMN health_at_ms;
ALTER TABLE replicas DROP COLUMN started_at_ms;
ALTER TABLE deployment_revisions DROP COLUMN restores;
ALTER TABLE deployments DROP COLUMN rollout_id;
ALTER TABLE deployments DROP COLUMN policy;
