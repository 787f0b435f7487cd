-- Device control: block/unblock and power commands (see cloud-link/src/control.rs). Portable SQL as in the
-- initial migration.

-- A failed command's machine-readable code (`control::codes`) and what a command's acknowledgement had to
-- say (`Ack::result`, JSON).
ALTER TABLE commands ADD COLUMN code TEXT;
ALTER TABLE commands ADD COLUMN result TEXT;

-- The LAN segments the agent watches, from its latest hello (JSON array of `Segment`). Configuration, not
-- data: kept across cleanups like `platform`, so the portal can tell which devices a box cannot block.
ALTER TABLE agents ADD COLUMN segments TEXT;

-- Where a device takes its power from: one binding per (agent, VLAN, MAC), `vlan` 0 for no VLAN as in
-- `devices`. `binding` is the whole `OutletBinding` JSON, secrets included (the API only shows it
-- redacted); it travels inside every power command. `updated_by` is the actor (`token:<name>`).
CREATE TABLE outlet_bindings (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    vlan        INTEGER NOT NULL,
    mac         TEXT NOT NULL,
    binding     TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (agent_id, vlan, mac)
);

-- The devices the agent reports blocked (its `blocks` report replaces the agent's rows; a block or unblock
-- acknowledgement updates one row until the next report). `record` is the `BlockRecord` JSON.
CREATE TABLE device_blocks (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    vlan        INTEGER NOT NULL,
    mac         TEXT NOT NULL,
    record      TEXT NOT NULL,
    since_ms    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, vlan, mac)
);
