-- Rolling updates. How a deployment rolls out and back (JSON; '{}' = the defaults), and the
-- rollout under way, if any.
ALTER TABLE deployments ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN rollout_id BIGINT;
-- A rollback's revision names the one it restores.
ALTER TABLE deployment_revisions ADD COLUMN restores BIGINT;
-- When a replica started and its health last changed: "ready for monitor" is read off these.
ALTER TABLE replicas ADD COLUMN started_at_ms BIGINT;
ALTER TABLE replicas ADD COLUMN health_at_ms BIGINT;
-- Out of the endpoints, about to be stopped (endpoints first: a load balancer stops sending).
ALTER TABLE replicas ADD COLUMN deregistered_at_ms BIGINT;
-- Every rollout, kept until its deployment is deleted: the record of what each update did.
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    deployment TEXT NOT NULL,
    from_revision BIGINT NOT NULL CHECK (from_revision >= 1),
    to_revision BIGINT NOT NULL CHECK (to_revision > from_revision),
    restores BIGINT,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'paused', 'succeeded', 'failed', 'rolled_back')),
    reason TEXT,
    updated BIGINT NOT NULL DEFAULT 0 CHECK (updated >= 0),
    healthy BIGINT NOT NULL DEFAULT 0 CHECK (healthy >= 0),
    failed BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    policy TEXT NOT NULL
);
CREATE INDEX rollouts_by_deployment ON rollouts (deployment, id);
