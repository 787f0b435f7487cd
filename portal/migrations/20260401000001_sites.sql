-- Per-site configuration the technician keeps for each agent (see portal/src/site.rs): the site owner's
-- contact, Customer ID and Contract ID, the PSA/ticketing mapping, the address and map pin, a note. Customer
-- data, not agent data: a cleanup keeps the row, deleting the agent removes it. Portable SQL as in the
-- initial migration. No row means nothing was set (every field empty).
-- `phones` is a JSON array of strings; `psa_system` a `PsaSystem` wire name (`connectwise_manage`, ...);
-- `latitude` and `longitude` are both set or both NULL.
CREATE TABLE sites (
    agent_id     TEXT PRIMARY KEY NOT NULL REFERENCES agents (id),
    email        TEXT,
    first_name   TEXT,
    last_name    TEXT,
    phones       TEXT NOT NULL DEFAULT '[]',
    customer_id  TEXT,
    contract_id  TEXT,
    psa_system   TEXT,
    psa_org_id   TEXT,
    address      TEXT,
    latitude     DOUBLE PRECISION,
    longitude    DOUBLE PRECISION,
    note         TEXT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX sites_customer_id ON sites (customer_id);
