-- The portal's own signing keys, each made on first use from the operating system's random source:
-- `trusted-device` signs the "remember this device" cookies (32 bytes, hex). Deleting a row makes every
-- cookie it signed worthless (people then sign in with their second factor again).
CREATE TABLE portal_keys (
    name        TEXT PRIMARY KEY NOT NULL,
    key_hex     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Wrong two-factor codes typed in a session waiting for its code: after a few, the session ends.
ALTER TABLE user_sessions ADD COLUMN code_failures BIGINT NOT NULL DEFAULT 0;
