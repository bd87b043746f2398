DROP TABLE deployment_revisions;
ALTER TABLE replicas DROP COLUMN revision;
ALTER TABLE deployments DROP COLUMN revision;
ALTER TABLE deployments ADD COLUMN image TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN command TEXT NOT NULL DEFAULT '[]';
UPDATE deployments SET image = json_extract(template, '$.image'), command = json(json_extract(template, '$.command'));
ALTER TABLE deployments DROP COLUMN template;
