DROP TABLE deployment_revisions;
ALTER TABLE replicas DROP COLUMN revision;
ALTER TABLE deployments DROP COLUMN revision;
ALTER TABLE deployments ADD COLUMN image TEXT, ADD COLUMN command TEXT;
UPDATE deployments SET image = template::json->>'image', command = (template::json->'command')::text;
ALTER TABLE deployments ALTER COLUMN image SET NOT NULL, ALTER COLUMN command SET NOT NULL;
ALTER TABLE deployments DROP COLUMN template;
