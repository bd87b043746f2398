-- Registry logins. The password is sealed (XChaCha20-Poly1305, with a key kept outside the
-- database, bound to the server and username): a copy of this file alone does not reveal it.
CREATE TABLE registries (
    server TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    sealed TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
