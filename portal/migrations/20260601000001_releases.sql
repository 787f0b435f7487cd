-- Signed agent releases the portal stores and serves to agents (issue 8). Portable SQL as in the initial
-- migration (PostgreSQL: `BIGINT GENERATED ALWAYS AS IDENTITY` for the id).
--
-- The binary itself is a file under the data directory (`binary_path`, relative to it:
-- `releases/<target>/outpost-agent-<version>`), written and fsynced before the row is inserted.
-- `release_file` is the signed release file exactly as received (the JSON agents verify); the other
-- columns repeat what its manifest says, for listing and lookups. `key_ids` are the ids of the keys that
-- signed it, comma-separated in the file's order. Times are Unix milliseconds.
CREATE TABLE releases (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version       TEXT NOT NULL,
    target        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    rollback      BIGINT NOT NULL DEFAULT 0,
    notes         TEXT,
    release_file  TEXT NOT NULL,
    key_ids       TEXT NOT NULL,
    binary_path   TEXT NOT NULL,
    added_at      BIGINT NOT NULL,
    added_by      TEXT NOT NULL,
    UNIQUE (version, target)
);
CREATE INDEX releases_target ON releases (target);
