ALTER TABLE cluster DROP COLUMN nodes_version;
