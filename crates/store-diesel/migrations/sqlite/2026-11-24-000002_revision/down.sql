ALTER TABLE cluster DROP COLUMN revision;
