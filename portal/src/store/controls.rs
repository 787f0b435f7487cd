//! Device control state: the outlet binding of each device (with its secrets: only the app redacts), the
//! devices the agent reports blocked, and the LAN segments of the agent's latest hello.
//!
//! Devices are keyed as in [`super::devices`]: (agent, VLAN column, MAC), the VLAN column 0 for none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use outpost_cloud_link::control::{BlockRecord, DeviceRef, OutletBinding};
use outpost_cloud_link::protocol::Segment;
use outpost_cloud_link::AgentId;
use sqlx::Row;

use super::devices::vlan_column;
use super::{from_ms, to_ms, Conn, StoreError};

/// A stored outlet binding, secrets included.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    pub binding: OutletBinding,
    pub updated_at: DateTime<Utc>,
    /// The actor who set it (`token:<name>`).
    pub updated_by: String,
}

/// What [`delete_all`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wiped {
    pub bindings: u64,
    pub blocks: u64,
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the {what} as JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The device a (VLAN column, MAC) pair names.
fn device_ref(vlan: i64, mac: &str) -> Result<DeviceRef, StoreError> {
    let vlan =
        u16::try_from(vlan).map_err(|_| StoreError::Corrupt(format!("column vlan: {vlan}")))?;
    DeviceRef::new(mac, Some(vlan))
        .ok_or_else(|| StoreError::Corrupt(format!("column mac: {mac:?} is not a MAC")))
}

/// Stores (or replaces) the device's outlet binding; returns whether it replaced one.
pub async fn set_binding(
    conn: &mut Conn,
    agent: &AgentId,
    device: &DeviceRef,
    binding: &OutletBinding,
    updated_by: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let existed = get_binding(&mut *conn, agent, device).await?.is_some();
    sqlx::query(
        "INSERT INTO outlet_bindings (agent_id, vlan, mac, binding, updated_at, updated_by) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, vlan, mac) DO UPDATE SET \
         binding = excluded.binding, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(agent.as_str())
    .bind(i64::from(vlan_column(device.vlan)))
    .bind(&device.mac)
    .bind(to_json("outlet binding", binding)?)
    .bind(to_ms(now))
    .bind(updated_by)
    .execute(conn)
    .await?;
    Ok(existed)
}

pub async fn get_binding(
    conn: &mut Conn,
    agent: &AgentId,
    device: &DeviceRef,
) -> Result<Option<BindingRow>, StoreError> {
    let row = sqlx::query(
        "SELECT binding, updated_at, updated_by FROM outlet_bindings \
         WHERE agent_id = ? AND vlan = ? AND mac = ?",
    )
    .bind(agent.as_str())
    .bind(i64::from(vlan_column(device.vlan)))
    .bind(&device.mac)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let text: String = row.try_get("binding")?;
        Ok(BindingRow {
            binding: from_json("outlet binding", &text)?,
            updated_at: from_ms(row.try_get("updated_at")?)?,
            updated_by: row.try_get("updated_by")?,
        })
    })
    .transpose()
}

/// Removes the device's outlet binding; returns whether there was one.
pub async fn delete_binding(
    conn: &mut Conn,
    agent: &AgentId,
    device: &DeviceRef,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("DELETE FROM outlet_bindings WHERE agent_id = ? AND vlan = ? AND mac = ?")
            .bind(agent.as_str())
            .bind(i64::from(vlan_column(device.vlan)))
            .bind(&device.mac)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Every outlet binding of the agent, by device.
pub async fn bindings(
    conn: &mut Conn,
    agent: &AgentId,
) -> Result<HashMap<DeviceRef, OutletBinding>, StoreError> {
    let rows = sqlx::query("SELECT vlan, mac, binding FROM outlet_bindings WHERE agent_id = ?")
        .bind(agent.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.try_get("binding")?;
            let mac: String = row.try_get("mac")?;
            Ok((
                device_ref(row.try_get("vlan")?, &mac)?,
                from_json("outlet binding", &text)?,
            ))
        })
        .collect()
}

async fn insert_block(
    conn: &mut Conn,
    agent: &AgentId,
    record: &BlockRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO device_blocks (agent_id, vlan, mac, record, since_ms, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (agent_id, vlan, mac) DO UPDATE SET record = excluded.record, \
         since_ms = excluded.since_ms, updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(i64::from(vlan_column(record.device.vlan)))
    .bind(&record.device.mac)
    .bind(to_json("block record", record)?)
    .bind(record.since_ms)
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the agent's blocked devices with `records` (a `blocks` report); returns how many it holds.
pub async fn replace_blocks(
    conn: &mut Conn,
    agent: &AgentId,
    records: &[BlockRecord],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    sqlx::query("DELETE FROM device_blocks WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(&mut *conn)
        .await?;
    for record in records {
        insert_block(conn, agent, record, now).await?;
    }
    Ok(records.len())
}

/// Stores one block (a block command's acknowledgement), until the next `blocks` report.
pub async fn upsert_block(
    conn: &mut Conn,
    agent: &AgentId,
    record: &BlockRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    insert_block(conn, agent, record, now).await
}

/// Removes one block (an unblock command's acknowledgement); returns whether there was one.
pub async fn delete_block(
    conn: &mut Conn,
    agent: &AgentId,
    device: &DeviceRef,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM device_blocks WHERE agent_id = ? AND vlan = ? AND mac = ?")
        .bind(agent.as_str())
        .bind(i64::from(vlan_column(device.vlan)))
        .bind(&device.mac)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The device's block, if the agent reports it blocked.
pub async fn block(
    conn: &mut Conn,
    agent: &AgentId,
    device: &DeviceRef,
) -> Result<Option<BlockRecord>, StoreError> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT record FROM device_blocks WHERE agent_id = ? AND vlan = ? AND mac = ?",
    )
    .bind(agent.as_str())
    .bind(i64::from(vlan_column(device.vlan)))
    .bind(&device.mac)
    .fetch_optional(conn)
    .await?;
    text.map(|t| from_json("block record", &t)).transpose()
}

/// Every block of the agent, by device.
pub async fn blocks(
    conn: &mut Conn,
    agent: &AgentId,
) -> Result<HashMap<DeviceRef, BlockRecord>, StoreError> {
    let rows = sqlx::query("SELECT vlan, mac, record FROM device_blocks WHERE agent_id = ?")
        .bind(agent.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.try_get("record")?;
            let mac: String = row.try_get("mac")?;
            Ok((
                device_ref(row.try_get("vlan")?, &mac)?,
                from_json("block record", &text)?,
            ))
        })
        .collect()
}

/// Stores the segments of the agent's latest hello.
pub async fn set_segments(
    conn: &mut Conn,
    agent: &AgentId,
    segments: &[Segment],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET segments = ? WHERE id = ?")
        .bind(to_json("segments", &segments)?)
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// The segments of the agent's latest hello (empty before its first hello).
pub async fn segments(conn: &mut Conn, agent: &AgentId) -> Result<Vec<Segment>, StoreError> {
    let text: Option<Option<String>> =
        sqlx::query_scalar("SELECT segments FROM agents WHERE id = ?")
            .bind(agent.as_str())
            .fetch_optional(conn)
            .await?;
    match text.flatten() {
        Some(text) => from_json("segments", &text),
        None => Ok(Vec::new()),
    }
}

/// Removes the agent's outlet bindings and blocks (cleanup, deletion).
pub async fn delete_all(conn: &mut Conn, agent: &AgentId) -> Result<Wiped, StoreError> {
    let mut wiped = Wiped::default();
    for (table, count) in [
        ("outlet_bindings", &mut wiped.bindings),
        ("device_blocks", &mut wiped.blocks),
    ] {
        *count = sqlx::query(&format!("DELETE FROM {table} WHERE agent_id = ?"))
            .bind(agent.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(wiped)
}
