-- People and access: companies, their users (company admins, group admins, supervisors) and the operator's
-- support engineers, groups of agents, API tokens that act as a user, single-use account links, browser
-- sessions, trusted devices, two-factor recovery codes and support access grants. Portable SQL as in the
-- initial migration; for PostgreSQL, every `INTEGER PRIMARY KEY AUTOINCREMENT` becomes `BIGINT GENERATED
-- ALWAYS AS IDENTITY`. Every secret (tokens, links, session and device ids, recovery codes) is stored only
-- as its SHA-256 (hex); passwords as an Argon2id PHC string (or a legacy PBKDF2 one until the next
-- sign-in rehashes it).

CREATE TABLE companies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- `company_id` is NULL for the operator's support engineers (role `support`). `email` is NULL only for
-- the token-only admin `token new` makes on an install without one. `username` never changes.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id      BIGINT REFERENCES companies (id),
    username        TEXT NOT NULL UNIQUE,
    email           TEXT UNIQUE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    password_hash   TEXT,
    time_format     TEXT NOT NULL DEFAULT '24h',
    time_zone       TEXT NOT NULL DEFAULT 'UTC',
    require_2fa     BIGINT NOT NULL DEFAULT 0,
    totp_secret     TEXT,
    totp_last_step  BIGINT,
    totp_enabled_at BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX users_company ON users (company_id);

-- Groups of agents; `parent_id` makes sub-groups (of the same company).
CREATE TABLE groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id  BIGINT NOT NULL REFERENCES companies (id),
    parent_id   BIGINT REFERENCES groups (id),
    name        TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    UNIQUE (company_id, name)
);
CREATE INDEX groups_parent ON groups (parent_id);

-- Which groups a group admin or supervisor is assigned to (and so their sub-groups).
CREATE TABLE group_users (
    group_id  BIGINT NOT NULL REFERENCES groups (id),
    user_id   BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_users_user ON group_users (user_id);

-- Agents belong to a company, and to one of its groups or to none (only company admins see those).
ALTER TABLE agents ADD COLUMN company_id BIGINT REFERENCES companies (id);
ALTER TABLE agents ADD COLUMN group_id BIGINT REFERENCES groups (id);
CREATE INDEX agents_company_group ON agents (company_id, group_id);

-- A deleted agent's lines stay in its company's history.
ALTER TABLE tombstones ADD COLUMN company_id BIGINT;

-- Codes make agents of a company (and optionally straight into a group).
ALTER TABLE activation_codes ADD COLUMN company_id BIGINT REFERENCES companies (id);
ALTER TABLE activation_codes ADD COLUMN group_id BIGINT REFERENCES groups (id);

-- The history: whose account a line belongs to, and the address an action came from.
ALTER TABLE history ADD COLUMN company_id BIGINT;
ALTER TABLE history ADD COLUMN address TEXT;
CREATE INDEX history_company ON history (company_id, id);

-- API tokens act as their user, with that user's role or read-only, until they expire or are revoked.
CREATE TABLE user_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    read_only   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    last_used   BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);

-- Single-use links: `invite` and `reset` set a password, `email` confirms a new address.
CREATE TABLE user_links (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    purpose     TEXT NOT NULL,
    new_email   TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX user_links_user ON user_links (user_id);

-- Signed-in browsers. `second_factor` is 0 while a session waits for its two-factor code (or for the
-- forced two-factor setup) and may do nothing else.
CREATE TABLE user_sessions (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    second_factor  BIGINT NOT NULL,
    browser        TEXT NOT NULL,
    address        TEXT,
    created_at     BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- "Remember this device": the device cookie is signed; removing the row makes it worthless.
CREATE TABLE trusted_devices (
    id_hash     TEXT PRIMARY KEY NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    browser     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_used   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX trusted_devices_user ON trusted_devices (user_id);

CREATE TABLE recovery_codes (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A company lets a support engineer in: to the whole account (`scope` = 'company'), or to one group
-- ('group', `group_id`) or one agent ('agent', `agent_id`), until `until` or for good (NULL).
CREATE TABLE support_grants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id  BIGINT NOT NULL REFERENCES companies (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    scope       TEXT NOT NULL,
    group_id    BIGINT REFERENCES groups (id),
    agent_id    TEXT,
    until       BIGINT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX support_grants_user ON support_grants (user_id);

-- An existing install becomes one company: its agents, codes and history, its technicians as company
-- admins (their PBKDF2 passwords work until their next sign-in rehashes them), its API tokens as tokens
-- of a token-only admin.
INSERT INTO companies (id, name, created_at)
SELECT 1, 'My company', CAST(strftime('%s', 'now') AS BIGINT) * 1000
WHERE EXISTS (SELECT 1 FROM agents) OR EXISTS (SELECT 1 FROM tombstones)
   OR EXISTS (SELECT 1 FROM activation_codes) OR EXISTS (SELECT 1 FROM api_tokens)
   OR EXISTS (SELECT 1 FROM operator_accounts);
UPDATE agents SET company_id = 1 WHERE EXISTS (SELECT 1 FROM companies WHERE id = 1);
UPDATE tombstones SET company_id = 1 WHERE EXISTS (SELECT 1 FROM companies WHERE id = 1);
UPDATE activation_codes SET company_id = 1 WHERE EXISTS (SELECT 1 FROM companies WHERE id = 1);
UPDATE history SET company_id = 1 WHERE EXISTS (SELECT 1 FROM companies WHERE id = 1);
INSERT INTO users (company_id, username, email, name, role, password_hash, created_at, updated_at)
SELECT 1, 'tech-' || id, email, name, 'company-admin', password_hash, created_at, updated_at
FROM operator_accounts;
INSERT INTO users (company_id, username, email, name, role, password_hash, created_at, updated_at)
SELECT 1, 'admin', NULL, 'API tokens', 'company-admin', NULL,
       CAST(strftime('%s', 'now') AS BIGINT) * 1000, CAST(strftime('%s', 'now') AS BIGINT) * 1000
WHERE EXISTS (SELECT 1 FROM api_tokens);
INSERT INTO user_tokens (hash, user_id, name, read_only, created_at)
SELECT t.hash, u.id, t.name, 0, t.created_at FROM api_tokens t JOIN users u ON u.username = 'admin';
DROP TABLE api_tokens;
DROP TABLE operator_sessions;
DROP TABLE operator_accounts;
