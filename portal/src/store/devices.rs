//! The device inventory of each agent: devices keyed by (VLAN, MAC), the parts of the snapshot being
//! collected, device events, and their filtered, keyset-paginated listings.
//!
//! Devices arrive already checked (MAC normalized, VLAN 1–4094 or none): see `ingest`. The VLAN column is 0
//! for "no VLAN" ([`NO_VLAN`]); VLAN id 0 is not a real VLAN.
//!
//! Snapshots: the parts of one snapshot are upserted as they arrive, stamped with its id; when parts
//! `0..parts` of it have all arrived, the agent's devices stamped with any other id are removed. A part of
//! another snapshot discards the parts collected so far (messages arrive in sequence order, so it means the
//! agent started a new snapshot), so a snapshot with a missing part never removes anything. A delta that
//! arrives while a snapshot is being collected stamps its devices with that snapshot's id: they are newer
//! than the snapshot's start and must survive its completion.

use chrono::{DateTime, Utc};
use outpost_cloud_link::inventory::{Device, DeviceEvent};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{from_ms, to_i64, to_ms, to_u64, Conn, StoreError};

/// The `vlan` column of a device seen on an untagged segment.
pub const NO_VLAN: u16 = 0;

/// The `vlan` column for a device's (checked) VLAN.
pub fn vlan_column(vlan: Option<u16>) -> u16 {
    vlan.unwrap_or(NO_VLAN)
}

/// Where a device sits in the listing order (VLAN, then MAC); a page resumes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    /// [`NO_VLAN`] for none.
    pub vlan: u16,
    pub mac: String,
}

/// One stored device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub key: DeviceKey,
    /// The device JSON as the agent sent it (MAC normalized, VLAN 0 dropped).
    pub record: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// Which devices to list; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub online: Option<bool>,
    /// [`NO_VLAN`] for devices seen on untagged segments.
    pub vlan: Option<u16>,
    pub interface: Option<String>,
    /// Case-insensitive substring of the MAC, IPv4 address, a name or the vendor.
    pub text: Option<String>,
    /// A normalized MAC.
    pub mac: Option<String>,
}

/// A page of devices.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePage {
    pub devices: Vec<DeviceRow>,
    /// Where the next page starts, when there is one.
    pub next: Option<DeviceKey>,
    /// How many devices match the filter (all pages).
    pub total: u64,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The portal's id: increases in arrival order.
    pub id: u64,
    /// The event JSON as the agent sent it (MAC normalized, VLAN 0 dropped).
    pub record: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// Which events to list; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Event `type` tags (already checked against `EventKind::ALL`); empty for all.
    pub kinds: Vec<String>,
    /// A normalized MAC.
    pub mac: Option<String>,
    /// `at_ms >= since_ms`.
    pub since_ms: Option<i64>,
    /// `at_ms < until_ms`.
    pub until_ms: Option<i64>,
}

/// A page of events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventRow>,
    /// The page after this one holds events with ids below this one.
    pub next: Option<u64>,
}

/// What applying one snapshot part did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOutcome {
    /// Parts are still missing; nothing was removed.
    Collecting {
        received: u64,
        parts: u32,
        /// Parts of another, incomplete snapshot this one discarded.
        superseded: u64,
    },
    /// Every part is here: devices the snapshot does not contain were removed.
    Complete { removed: u64, superseded: u64 },
}

/// What [`delete_all`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub devices: u64,
    pub events: u64,
    /// Outlet bindings and blocks (see [`super::controls::delete_all`]).
    pub controls: super::controls::Wiped,
}

fn json_text<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the {what} as JSON: {e}")))
}

/// Stores (or wholly replaces) one device. `snapshot`: the snapshot that confirms it, or that is being
/// collected; `None` keeps the stamp it had.
pub async fn upsert(
    conn: &mut Conn,
    agent: &AgentId,
    device: &Device,
    snapshot: Option<u64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let names: Vec<&str> = device.names.iter().map(|n| n.name.as_str()).collect();
    sqlx::query(
        "INSERT INTO devices (agent_id, vlan, mac, interface, ipv4, names, vendor, online, first_seen_ms, \
         last_seen_ms, record, snapshot, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (agent_id, vlan, mac) DO UPDATE SET interface = excluded.interface, ipv4 = excluded.ipv4, \
         names = excluded.names, vendor = excluded.vendor, online = excluded.online, \
         first_seen_ms = excluded.first_seen_ms, last_seen_ms = excluded.last_seen_ms, record = excluded.record, \
         snapshot = COALESCE(excluded.snapshot, devices.snapshot), updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(i64::from(vlan_column(device.vlan)))
    .bind(&device.mac)
    .bind(&device.interface)
    .bind(device.ipv4.map(|ip| ip.to_string()))
    .bind(json_text("device names", &names)?)
    .bind(&device.vendor)
    .bind(i64::from(device.online))
    .bind(device.first_seen_ms)
    .bind(device.last_seen_ms)
    .bind(json_text("device", device)?)
    .bind(snapshot.map(to_i64))
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// The id of the snapshot whose parts are being collected, if any.
pub async fn collecting(conn: &mut Conn, agent: &AgentId) -> Result<Option<u64>, StoreError> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT MAX(snapshot) FROM snapshot_parts WHERE agent_id = ?")
            .bind(agent.as_str())
            .fetch_one(conn)
            .await?;
    id.map(|id| to_u64("snapshot", id)).transpose()
}

/// Applies part `part` of `parts` (`part < parts`, checked by the caller) of snapshot `snapshot`: upserts
/// its devices and, once every part has arrived, removes the agent's devices the snapshot does not contain.
pub async fn apply_part(
    conn: &mut Conn,
    agent: &AgentId,
    snapshot: u64,
    part: u32,
    parts: u32,
    devices: &[Device],
    now: DateTime<Utc>,
) -> Result<PartOutcome, StoreError> {
    let id = to_i64(snapshot);
    let superseded = sqlx::query("DELETE FROM snapshot_parts WHERE agent_id = ? AND snapshot <> ?")
        .bind(agent.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for device in devices {
        upsert(conn, agent, device, Some(snapshot), now).await?;
    }
    sqlx::query(
        "INSERT INTO snapshot_parts (agent_id, snapshot, part, parts, received_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (agent_id, snapshot, part) DO UPDATE SET parts = excluded.parts, \
         received_at = excluded.received_at",
    )
    .bind(agent.as_str())
    .bind(id)
    .bind(i64::from(part))
    .bind(i64::from(parts))
    .bind(to_ms(now))
    .execute(&mut *conn)
    .await?;
    // Parts that disagree on how many there are do not count together.
    let received: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM snapshot_parts WHERE agent_id = ? AND snapshot = ? AND parts = ? AND part < ?",
    )
    .bind(agent.as_str())
    .bind(id)
    .bind(i64::from(parts))
    .bind(i64::from(parts))
    .fetch_one(&mut *conn)
    .await?;
    let received = to_u64("count", received)?;
    if received < u64::from(parts) {
        return Ok(PartOutcome::Collecting {
            received,
            parts,
            superseded,
        });
    }
    let removed = sqlx::query(
        "DELETE FROM devices WHERE agent_id = ? AND (snapshot IS NULL OR snapshot <> ?)",
    )
    .bind(agent.as_str())
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM snapshot_parts WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(PartOutcome::Complete {
        removed,
        superseded,
    })
}

/// Stores one event; returns its id.
pub async fn insert_event(
    conn: &mut Conn,
    agent: &AgentId,
    event: &DeviceEvent,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO device_events (agent_id, at_ms, mac, vlan, interface, ipv4, type, body, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(agent.as_str())
    .bind(event.at_ms)
    .bind(&event.mac)
    .bind(i64::from(vlan_column(event.vlan)))
    .bind(&event.interface)
    .bind(event.ipv4.map(|ip| ip.to_string()))
    .bind(event.kind.as_str())
    .bind(json_text("event", event)?)
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?;
    to_u64("id", id)
}

/// `%text%` for `LIKE … ESCAPE '\'`, lower-cased.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn push_device_filter<'a>(
    qb: &mut QueryBuilder<'a, Sqlite>,
    agent: &'a AgentId,
    f: &'a DeviceFilter,
) {
    qb.push(" WHERE agent_id = ").push_bind(agent.as_str());
    if let Some(online) = f.online {
        qb.push(" AND online = ").push_bind(i64::from(online));
    }
    if let Some(vlan) = f.vlan {
        qb.push(" AND vlan = ").push_bind(i64::from(vlan));
    }
    if let Some(interface) = &f.interface {
        qb.push(" AND interface = ").push_bind(interface.as_str());
    }
    if let Some(mac) = &f.mac {
        qb.push(" AND mac = ").push_bind(mac.as_str());
    }
    if let Some(text) = &f.text {
        let pattern = like_pattern(text);
        qb.push(" AND (");
        for (i, column) in ["mac", "COALESCE(ipv4, '')", "names", "COALESCE(vendor, '')"]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push(format!("lower({column}) LIKE "))
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
        }
        qb.push(")");
    }
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceRow, StoreError> {
    let vlan: i64 = row.try_get("vlan")?;
    let record: String = row.try_get("record")?;
    Ok(DeviceRow {
        key: DeviceKey {
            vlan: u16::try_from(vlan)
                .map_err(|_| StoreError::Corrupt(format!("column vlan: {vlan}")))?,
            mac: row.try_get("mac")?,
        },
        record: serde_json::from_str(&record)
            .map_err(|e| StoreError::Corrupt(format!("device record: {e}")))?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

/// One device of the agent, by VLAN column and MAC.
pub async fn get(
    conn: &mut Conn,
    agent: &AgentId,
    key: &DeviceKey,
) -> Result<Option<DeviceRow>, StoreError> {
    let row = sqlx::query(
        "SELECT vlan, mac, record, updated_at FROM devices WHERE agent_id = ? AND vlan = ? AND mac = ?",
    )
    .bind(agent.as_str())
    .bind(i64::from(key.vlan))
    .bind(key.mac.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(device_from_row).transpose()
}

/// A page of the agent's devices matching `filter`, ordered by (VLAN, MAC), starting after `after`.
pub async fn list(
    conn: &mut Conn,
    agent: &AgentId,
    filter: &DeviceFilter,
    after: Option<&DeviceKey>,
    limit: u32,
) -> Result<DevicePage, StoreError> {
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM devices");
    push_device_filter(&mut count, agent, filter);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

    let mut qb = QueryBuilder::<Sqlite>::new("SELECT vlan, mac, record, updated_at FROM devices");
    push_device_filter(&mut qb, agent, filter);
    if let Some(key) = after {
        qb.push(" AND (vlan > ")
            .push_bind(i64::from(key.vlan))
            .push(" OR (vlan = ")
            .push_bind(i64::from(key.vlan))
            .push(" AND mac > ")
            .push_bind(key.mac.as_str())
            .push("))");
    }
    // One more than asked: tells whether there is a next page without an empty last one.
    qb.push(" ORDER BY vlan, mac LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let mut devices = rows
        .iter()
        .map(device_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if devices.len() > limit as usize {
        devices.truncate(limit as usize);
        devices.last().map(|d| d.key.clone())
    } else {
        None
    };
    Ok(DevicePage {
        devices,
        next,
        total: to_u64("count", total)?,
    })
}

/// A page of the agent's events matching `filter`, newest (highest id) first, with ids below `before`.
pub async fn events(
    conn: &mut Conn,
    agent: &AgentId,
    filter: &EventFilter,
    before: Option<u64>,
    limit: u32,
) -> Result<EventPage, StoreError> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT id, body, received_at FROM device_events WHERE agent_id = ",
    );
    qb.push_bind(agent.as_str());
    if !filter.kinds.is_empty() {
        qb.push(" AND type IN (");
        let mut kinds = qb.separated(", ");
        for kind in &filter.kinds {
            kinds.push_bind(kind.as_str());
        }
        kinds.push_unseparated(")");
    }
    if let Some(mac) = &filter.mac {
        qb.push(" AND mac = ").push_bind(mac.as_str());
    }
    if let Some(since) = filter.since_ms {
        qb.push(" AND at_ms >= ").push_bind(since);
    }
    if let Some(until) = filter.until_ms {
        qb.push(" AND at_ms < ").push_bind(until);
    }
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(to_i64(before));
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let mut events = rows
        .iter()
        .map(|row| {
            let body: String = row.try_get("body")?;
            Ok(EventRow {
                id: to_u64("id", row.try_get("id")?)?,
                record: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?,
                received_at: from_ms(row.try_get("received_at")?)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let next = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(EventPage { events, next })
}

/// Removes all of the agent's devices, events, collected snapshot parts, outlet bindings and blocks
/// (cleanup, deletion).
pub async fn delete_all(conn: &mut Conn, agent: &AgentId) -> Result<Removed, StoreError> {
    let mut removed = Removed {
        controls: super::controls::delete_all(conn, agent).await?,
        ..Removed::default()
    };
    for (table, count) in [
        ("devices", Some(&mut removed.devices)),
        ("device_events", Some(&mut removed.events)),
        ("snapshot_parts", None),
    ] {
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE agent_id = ?"))
            .bind(agent.as_str())
            .execute(&mut *conn)
            .await?;
        if let Some(count) = count {
            *count = done.rows_affected();
        }
    }
    Ok(removed)
}
