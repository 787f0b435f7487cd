-- Owner access (the "Violet" app for residential sites): who owns a site, their accounts, invitations,
-- sessions, and what each device lets them see and do. Portable SQL as in the initial migration; for
-- PostgreSQL, `owner_accounts.id` becomes `BIGINT GENERATED ALWAYS AS IDENTITY`.
-- Emails are stored trimmed and lower-cased. Tokens (invitations, sessions) are stored only as their
-- SHA-256 (hex); passwords as a PBKDF2 string (`pbkdf2-sha256$<iterations>$<salt>$<hash>`).

-- Per agent: the owner's email and the on/off switch (configuration: a cleanup keeps it).
CREATE TABLE agent_owners (
    agent_id    TEXT PRIMARY KEY NOT NULL REFERENCES agents (id),
    email       TEXT NOT NULL,
    enabled     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX agent_owners_email ON agent_owners (email);

-- One account per email; which sites it sees follows from `agent_owners.email`.
CREATE TABLE owner_accounts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Single-use invitation links: accepting one sets the account's password.
CREATE TABLE owner_invitations (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    email       TEXT NOT NULL,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX owner_invitations_agent ON owner_invitations (agent_id);

-- Signed-in browsers (the `outpost_owner` cookie).
CREATE TABLE owner_sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    owner_id    BIGINT NOT NULL REFERENCES owner_accounts (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_used   BIGINT NOT NULL
);
CREATE INDEX owner_sessions_owner ON owner_sessions (owner_id);
CREATE INDEX owner_sessions_expiry ON owner_sessions (expires_at);

-- Per device (the inventory's key, `vlan` 0 for none): what the owner may see and do. Data: a cleanup
-- removes it with the inventory. No row means hidden, no power, no blocking.
CREATE TABLE owner_device_flags (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    vlan        INTEGER NOT NULL,
    mac         TEXT NOT NULL,
    visible     BIGINT NOT NULL,
    can_power   BIGINT NOT NULL,
    can_block   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, vlan, mac)
);
