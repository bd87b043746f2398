-- Bumped by every write transaction: readers of any process can tell that something changed.
ALTER TABLE cluster ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
