ALTER TABLE deployments DROP COLUMN unplaced_reason;
ALTER TABLE deployments DROP COLUMN unplaced;
