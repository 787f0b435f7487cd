-- Renewals of yearly and quarterly plans (their renewal date is `agents.expires_at`): what people decided,
-- and the weekly reminders mailed before each renewal date. Portable SQL as in the initial migration.

-- The renewal date a person confirmed (NULL: no decision yet; an older date: none for the current one).
ALTER TABLE agents ADD COLUMN renewal_confirmed_until BIGINT;
-- When the sweep renewed the agent without a decision (the red flag); cleared by a decision.
ALTER TABLE agents ADD COLUMN renewed_automatically_at BIGINT;

-- The plan of the agents a code activates (monthly, prepaid, yearly, quarterly); NULL on codes made before
-- this migration: prepaid when `prepaid_months` is set, else monthly.
ALTER TABLE activation_codes ADD COLUMN plan TEXT;

-- The reminders mailed for one renewal date of one agent: how many (at most 4) and when the last one went.
-- Rows go with their agent when it is deleted.
CREATE TABLE renewal_reminders (
    agent_id      TEXT NOT NULL,
    renews_at     BIGINT NOT NULL,
    sent          BIGINT NOT NULL DEFAULT 0,
    last_sent_at  BIGINT,
    PRIMARY KEY (agent_id, renews_at)
);
