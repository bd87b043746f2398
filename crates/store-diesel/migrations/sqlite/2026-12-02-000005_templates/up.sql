-- A deployment's container as one value (the template, JSON), its revision, and the kept
-- revisions; each replica records the revision it runs. Existing deployments become revision
-- 1 of their image and command, and their replicas run it.
ALTER TABLE deployments ADD COLUMN template TEXT NOT NULL DEFAULT '{}';
UPDATE deployments SET template = json_object('image', image, 'command', json(command));
ALTER TABLE deployments DROP COLUMN image;
ALTER TABLE deployments DROP COLUMN command;
ALTER TABLE deployments ADD COLUMN revision BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1);

ALTER TABLE replicas ADD COLUMN revision BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1);

-- Immutable once written; the newest few per deployment are kept.
CREATE TABLE deployment_revisions (
    deployment TEXT NOT NULL,
    revision BIGINT NOT NULL CHECK (revision >= 1),
    template TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    cause TEXT,
    PRIMARY KEY (deployment, revision)
);
INSERT INTO deployment_revisions (deployment, revision, template, created_at_ms)
    SELECT name, 1, template, created_at_ms FROM deployments;
