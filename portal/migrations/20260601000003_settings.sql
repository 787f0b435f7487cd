-- Agent settings pushed from the portal (issue 8, portal side). Portable SQL as in the initial migration;
-- times are Unix milliseconds.
--
-- One row per agent: the settings document the portal manages for it (`version` increases with every
-- change, 0 and `settings` NULL while none was stored; `settings` is the JSON of `Settings`), who stored it
-- and when; what the agent last said about it: `state` pending (sent or waiting for the agent), applied
-- or refused; `applied_version` the last version it applied with the settings its local file pins
-- (`pinned`, a JSON array of paths) and whether it restarts to apply them (`restart`); a refusal's `code`
-- and `message`; and `running_version`, the version its latest hello says it runs with (NULL: none, or an
-- agent older than settings). No foreign key to agents: the row goes with the agent's id, which is never
-- reused, and must not block deleting the agent.
CREATE TABLE agent_settings (
    agent_id         TEXT PRIMARY KEY,
    version          BIGINT NOT NULL DEFAULT 0,
    settings         TEXT,
    updated_at       BIGINT,
    updated_by       TEXT,
    state            TEXT,
    applied_version  BIGINT,
    pinned           TEXT,
    restart          BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    acked_at         BIGINT,
    running_version  BIGINT
);
