-- As migrations/sqlite/2026-12-02-000005_templates: the template as one JSON value (kept as
-- TEXT, like every other column the two backends share), revisions, the replicas' revision.
ALTER TABLE deployments ADD COLUMN template TEXT;
UPDATE deployments SET template = json_build_object('image', image, 'command', command::json)::text;
ALTER TABLE deployments ALTER COLUMN template SET NOT NULL;
ALTER TABLE deployments DROP COLUMN image, DROP COLUMN command;
ALTER TABLE deployments ADD COLUMN revision BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1);

ALTER TABLE replicas ADD COLUMN revision BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1);

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
