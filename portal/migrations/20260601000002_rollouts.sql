-- Over-the-air update rollouts (issue 8, portal side). Portable SQL as in the initial migration
-- (PostgreSQL: `BIGINT GENERATED ALWAYS AS IDENTITY` for the ids). Times are Unix milliseconds.
--
-- What the agent says about itself in its hello: the Rust target its binary was built for (the releases
-- it can install; NULL from agents older than updates) and whether it runs under `outpost-agent launch`
-- (so it can restart into a new binary and roll a bad one back).
ALTER TABLE agents ADD COLUMN target TEXT;
ALTER TABLE agents ADD COLUMN updatable BIGINT NOT NULL DEFAULT 0;

-- A rollout of one release to one agent (`scope` 'agent', `agent_id`), a group with its sub-groups
-- ('group', `group_id`) or the company's whole fleet ('fleet'), in stages: `stages` are cumulative
-- percentages of the eligible agents, comma-separated and strictly increasing, the last 100 (`10,50,100`);
-- `stage` is the index of the current one. `state`: running, paused (`pause_reason`), done, cancelled.
-- The release's version and target are copied so the rollout still reads after the release is removed
-- (no foreign keys to releases, groups or agents: removing those must not be blocked by a rollout).
CREATE TABLE rollouts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id       BIGINT NOT NULL,
    release_id       BIGINT NOT NULL,
    version          TEXT NOT NULL,
    target           TEXT NOT NULL,
    scope            TEXT NOT NULL,
    group_id         BIGINT,
    agent_id         TEXT,
    stages           TEXT NOT NULL,
    max_failure_pct  BIGINT NOT NULL,
    stage            BIGINT NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    pause_reason     TEXT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX rollouts_company ON rollouts (company_id, id);
CREATE INDEX rollouts_state ON rollouts (state);

-- The agents a rollout considered when it was made: the eligible ones with their place in the rollout's
-- order (`position`, 0-based; a stage covers the first N), the others with why they were skipped.
CREATE TABLE rollout_agents (
    rollout_id      BIGINT NOT NULL REFERENCES rollouts (id),
    agent_id        TEXT NOT NULL,
    agent_name      TEXT NOT NULL,
    position        BIGINT,
    skipped_reason  TEXT,
    PRIMARY KEY (rollout_id, agent_id)
);

-- One row per agent per update attempt: `state` pending (command queued), downloading, installed,
-- committed, rolled_back or failed (`reason` for people, `code` stable); `stage` the rollout stage that
-- issued it. An agent takes part at most once in a rollout.
CREATE TABLE agent_updates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id      TEXT NOT NULL,
    rollout_id    BIGINT REFERENCES rollouts (id),
    release_id    BIGINT NOT NULL,
    version       TEXT NOT NULL,
    from_version  TEXT,
    state         TEXT NOT NULL,
    reason        TEXT,
    code          TEXT,
    command_id    BIGINT,
    stage         BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX agent_updates_agent ON agent_updates (agent_id, id);
CREATE INDEX agent_updates_command ON agent_updates (agent_id, command_id);
CREATE INDEX agent_updates_state ON agent_updates (state);
CREATE UNIQUE INDEX agent_updates_once ON agent_updates (rollout_id, agent_id) WHERE rollout_id IS NOT NULL;
