ALTER TABLE rollouts DROP COLUMN pulled_at_ms;
ALTER TABLE deployment_revisions DROP COLUMN image_digest;
