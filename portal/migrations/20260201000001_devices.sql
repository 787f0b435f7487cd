-- The device inventory agents report (`devices.snapshot` and `devices.delta` reports, see
-- cloud-link/src/inventory.rs). Portable SQL as in the initial migration; for PostgreSQL,
-- `device_events.id` becomes `BIGINT GENERATED ALWAYS AS IDENTITY`.

-- One device per (agent, VLAN, MAC). `vlan` is 0 for "no VLAN" (VLAN id 0 is not a real VLAN: 802.1Q uses it
-- for priority tags only). The searchable facts have their own columns; `record` is the whole device JSON as
-- the agent sent it (what the API serves). `names` is a JSON array of the name strings only (for search).
-- `snapshot` is the id of the snapshot that last confirmed the device (or that was being collected when a
-- delta upserted it); a complete snapshot removes the agent's devices stamped with any other id.
CREATE TABLE devices (
    agent_id       TEXT NOT NULL REFERENCES agents (id),
    vlan           INTEGER NOT NULL,
    mac            TEXT NOT NULL,
    interface      TEXT NOT NULL,
    ipv4           TEXT,
    names          TEXT NOT NULL,
    vendor         TEXT,
    online         BIGINT NOT NULL,
    first_seen_ms  BIGINT NOT NULL,
    last_seen_ms   BIGINT NOT NULL,
    record         TEXT NOT NULL,
    snapshot       BIGINT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (agent_id, vlan, mac)
);
CREATE INDEX devices_online ON devices (agent_id, online, vlan, mac);
CREATE INDEX devices_interface ON devices (agent_id, interface, vlan, mac);
CREATE INDEX devices_mac ON devices (agent_id, mac);

-- What happened to devices, in arrival order (`id` increases). `at_ms` is the agent's clock; `body` is the
-- whole event JSON as the agent sent it.
CREATE TABLE device_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id     TEXT NOT NULL REFERENCES agents (id),
    at_ms        BIGINT NOT NULL,
    mac          TEXT NOT NULL,
    vlan         INTEGER NOT NULL,
    interface    TEXT NOT NULL,
    ipv4         TEXT,
    type         TEXT NOT NULL,
    body         TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX device_events_agent ON device_events (agent_id, id);
CREATE INDEX device_events_mac ON device_events (agent_id, mac, id);

-- The parts received of the snapshot an agent is sending (at most one snapshot per agent: a part of another
-- snapshot discards these rows). Once parts 0..parts are all here the snapshot is applied and the rows go.
CREATE TABLE snapshot_parts (
    agent_id     TEXT NOT NULL REFERENCES agents (id),
    snapshot     BIGINT NOT NULL,
    part         BIGINT NOT NULL,
    parts        BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, snapshot, part)
);
