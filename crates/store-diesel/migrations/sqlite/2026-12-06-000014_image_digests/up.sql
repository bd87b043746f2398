-- Digest pinning: the digest a revision's image tag resolved to (a deployment's is its current
-- revision's), and when a rollout's image was on every node it may use (pull before stop).
ALTER TABLE deployment_revisions ADD COLUMN image_digest TEXT;
ALTER TABLE rollouts ADD COLUMN pulled_at_ms BIGINT;
