-- Leadership among servers sharing this store: one row, the holder, its term (grows by one each
-- time the lease changes hands) and when it expires unless renewed.
CREATE TABLE lease (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    holder TEXT NOT NULL,
    term BIGINT NOT NULL CHECK (term >= 1),
    expires_at_ms BIGINT NOT NULL
);
