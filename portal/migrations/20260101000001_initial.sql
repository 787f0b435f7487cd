-- The portal's schema. Written for SQLite (the embedded default) in portable SQL: TEXT, BIGINT and
-- INTEGER columns, timestamps as BIGINT Unix milliseconds, booleans as 0/1 BIGINT.
-- A PostgreSQL migration set will need: `BIGINT GENERATED ALWAYS AS IDENTITY` instead of
-- `INTEGER PRIMARY KEY AUTOINCREMENT` (commands, history). The store's statements are portable except for
-- their `?` placeholders, which PostgreSQL spells `$1, $2, ...`; search already uses `lower(x) LIKE lower(?)`.

CREATE TABLE agents (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    secret_hash     TEXT NOT NULL,
    status          TEXT NOT NULL,
    plan            TEXT NOT NULL,
    expires_at      BIGINT,
    deactivates_at  BIGINT,
    activated_at    BIGINT NOT NULL,
    version         TEXT,
    local_ip        TEXT,
    mac             TEXT,
    public_ip       TEXT,
    platform        TEXT,
    hostname        TEXT,
    online          BIGINT NOT NULL DEFAULT 0,
    last_seen       BIGINT,
    data_epoch      BIGINT NOT NULL DEFAULT 0,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    received        BIGINT NOT NULL DEFAULT 0,
    duplicates      BIGINT NOT NULL DEFAULT 0,
    gaps            BIGINT NOT NULL DEFAULT 0,
    outbox_depth    BIGINT NOT NULL DEFAULT 0,
    outbox_dropped  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_status ON agents (status);

-- Deleted agents: enough to answer `410 agent_deleted` to the old identity.
CREATE TABLE tombstones (
    id           TEXT PRIMARY KEY NOT NULL,
    secret_hash  TEXT NOT NULL,
    name         TEXT NOT NULL,
    deleted_at   BIGINT NOT NULL
);

-- What an agent reported, latest per kind, stamped with its data epoch.
CREATE TABLE reports (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    kind        TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, kind)
);

-- Commands to agents; ids increase and are never reused (the agent dedupes by id).
CREATE TABLE commands (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    acked_at    BIGINT,
    message     TEXT
);
CREATE INDEX commands_agent_status ON commands (agent_id, status, id);

-- Every lifecycle action, with its actor. agent_id stays on the `deleted` line of a deleted agent.
CREATE TABLE history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT,
    agent_name  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX history_agent ON history (agent_id, id);

CREATE TABLE activation_codes (
    hash            TEXT PRIMARY KEY NOT NULL,
    uses            BIGINT NOT NULL,
    used            BIGINT NOT NULL DEFAULT 0,
    expires_at      BIGINT NOT NULL,
    prepaid_months  BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    hash        TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
