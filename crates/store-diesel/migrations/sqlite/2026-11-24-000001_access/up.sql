-- API tokens, kept only as SHA-256 digests.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'reader')),
    digest TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

-- Every mutation through the API: who (token id), what, when, and the answer.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at_ms BIGINT NOT NULL,
    token_id TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL
);
