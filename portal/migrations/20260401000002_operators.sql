-- Technicians who sign in to the portal's web pages (the API keeps its bearer tokens). Portable SQL as in
-- the initial migration; for PostgreSQL, `operator_accounts.id` becomes `BIGINT GENERATED ALWAYS AS
-- IDENTITY`. Emails are stored trimmed and lower-cased; passwords as a PBKDF2 string
-- (`pbkdf2-sha256$<iterations>$<salt>$<hash>`); session tokens only as their SHA-256 (hex).

CREATE TABLE operator_accounts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Signed-in browsers (the `outpost_session` cookie).
CREATE TABLE operator_sessions (
    token_hash   TEXT PRIMARY KEY NOT NULL,
    operator_id  BIGINT NOT NULL REFERENCES operator_accounts (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);
CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
