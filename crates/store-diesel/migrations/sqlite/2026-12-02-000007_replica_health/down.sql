ALTER TABLE replicas DROP COLUMN health;
