-- Replicas the scheduler could not place at its last try, and why (anyone can read it).
ALTER TABLE deployments ADD COLUMN unplaced BIGINT NOT NULL DEFAULT 0 CHECK (unplaced >= 0);
ALTER TABLE deployments ADD COLUMN unplaced_reason TEXT;
