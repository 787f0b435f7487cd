//! Agent rows (identity, subscription, what the agent said about itself, link counters) and tombstones.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, opt_from_ms, parse_column, to_i64, to_ms, to_u64, Conn, StoreError};
use crate::lifecycle::{Plan, Status, Subscription};

/// The link counters of one agent, stored and shown as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    pub last_seq: u64,
    pub received: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub outbox_depth: u64,
    pub outbox_dropped: u64,
}

/// One agent as stored.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: AgentId,
    pub name: String,
    pub secret_hash: String,
    pub subscription: Subscription,
    pub activated_at: DateTime<Utc>,
    pub version: Option<String>,
    pub local_ip: Option<String>,
    pub mac: Option<String>,
    pub public_ip: Option<String>,
    pub platform: Option<String>,
    pub hostname: Option<String>,
    /// The last presence said online (see `App::is_online` for what the API shows).
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub data_epoch: u64,
    pub link: LinkStats,
}

/// What activation stores.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub id: AgentId,
    pub name: String,
    pub secret_hash: String,
    pub plan: Plan,
    pub expires_at: Option<DateTime<Utc>>,
    pub activated_at: DateTime<Utc>,
    pub version: String,
    pub local_ip: Option<String>,
    pub mac: Option<String>,
    pub public_ip: Option<String>,
    pub platform: String,
    pub hostname: String,
}

/// What a hello says about the agent's host.
#[derive(Debug, Clone)]
pub struct HelloFacts<'a> {
    pub version: &'a str,
    pub platform: &'a str,
    pub hostname: &'a str,
    pub mac: Option<&'a str>,
    pub local_ip: Option<&'a str>,
}

const COLUMNS: &str = "id, name, secret_hash, status, plan, expires_at, deactivates_at, activated_at, \
    version, local_ip, mac, public_ip, platform, hostname, online, last_seen, data_epoch, last_seq, received, \
    duplicates, gaps, outbox_depth, outbox_dropped";

fn from_row(row: &SqliteRow) -> Result<AgentRow, StoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let plan: String = row.try_get("plan")?;
    let n = |c: &str| -> Result<u64, StoreError> { to_u64(c, row.try_get::<i64, _>(c)?) };
    Ok(AgentRow {
        id: parse_column("id", &id)?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        subscription: Subscription {
            status: parse_column::<Status>("status", &status)?,
            plan: parse_column::<Plan>("plan", &plan)?,
            expires_at: opt_from_ms(row.try_get("expires_at")?)?,
            deactivates_at: opt_from_ms(row.try_get("deactivates_at")?)?,
        },
        activated_at: from_ms(row.try_get("activated_at")?)?,
        version: row.try_get("version")?,
        local_ip: row.try_get("local_ip")?,
        mac: row.try_get("mac")?,
        public_ip: row.try_get("public_ip")?,
        platform: row.try_get("platform")?,
        hostname: row.try_get("hostname")?,
        online: row.try_get::<i64, _>("online")? != 0,
        last_seen: opt_from_ms(row.try_get("last_seen")?)?,
        data_epoch: n("data_epoch")?,
        link: LinkStats {
            last_seq: n("last_seq")?,
            received: n("received")?,
            duplicates: n("duplicates")?,
            gaps: n("gaps")?,
            outbox_depth: n("outbox_depth")?,
            outbox_dropped: n("outbox_dropped")?,
        },
    })
}

pub async fn insert(conn: &mut Conn, a: &NewAgent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agents (id, name, secret_hash, status, plan, expires_at, activated_at, version, local_ip, \
         mac, public_ip, platform, hostname) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(a.id.as_str())
    .bind(&a.name)
    .bind(&a.secret_hash)
    .bind(Status::Active.as_str())
    .bind(a.plan.as_str())
    .bind(a.expires_at.map(to_ms))
    .bind(to_ms(a.activated_at))
    .bind(&a.version)
    .bind(&a.local_ip)
    .bind(&a.mac)
    .bind(&a.public_ip)
    .bind(&a.platform)
    .bind(&a.hostname)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &AgentId) -> Result<Option<AgentRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A page of agents, filtered by status and a case-insensitive substring of the name, oldest first; and
/// how many match in all.
pub async fn list(
    conn: &mut Conn,
    status: Option<Status>,
    name_contains: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<(Vec<AgentRow>, u64), StoreError> {
    let pattern = name_contains.map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let filter =
        "(? IS NULL OR status = ?) AND (? IS NULL OR lower(name) LIKE lower(?) ESCAPE '\\')";
    let status = status.map(Status::as_str);
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM agents WHERE {filter}"))
        .bind(status)
        .bind(status)
        .bind(&pattern)
        .bind(&pattern)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents WHERE {filter} ORDER BY activated_at, id LIMIT ? OFFSET ?"
    ))
    .bind(status)
    .bind(status)
    .bind(&pattern)
    .bind(&pattern)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&mut *conn)
    .await?;
    let agents = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    Ok((agents, to_u64("count", total)?))
}

/// Agents whose subscription time can still change things (active or pending).
pub async fn sweepable(conn: &mut Conn) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents WHERE status IN ('active', 'deactivation_pending') ORDER BY id"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_name(conn: &mut Conn, id: &AgentId, name: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET name = ? WHERE id = ?")
        .bind(name)
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_subscription(
    conn: &mut Conn,
    id: &AgentId,
    s: &Subscription,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agents SET status = ?, plan = ?, expires_at = ?, deactivates_at = ? WHERE id = ?",
    )
    .bind(s.status.as_str())
    .bind(s.plan.as_str())
    .bind(s.expires_at.map(to_ms))
    .bind(s.deactivates_at.map(to_ms))
    .bind(id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Increments the data epoch and returns the new one.
pub async fn bump_epoch(conn: &mut Conn, id: &AgentId) -> Result<u64, StoreError> {
    let epoch: i64 = sqlx::query_scalar(
        "UPDATE agents SET data_epoch = data_epoch + 1 WHERE id = ? RETURNING data_epoch",
    )
    .bind(id.as_str())
    .fetch_one(conn)
    .await?;
    to_u64("data_epoch", epoch)
}

/// Whether the agent's data epoch is still `epoch`. A no-op write, so inside a transaction it takes the
/// write lock first: a cleanup (which bumps the epoch) cannot commit between this check and the
/// transaction's writes.
pub async fn hold_epoch(conn: &mut Conn, id: &AgentId, epoch: u64) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE agents SET data_epoch = data_epoch WHERE id = ? AND data_epoch = ?")
            .bind(id.as_str())
            .bind(to_i64(epoch))
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a sequenced message: the new `last_seq`, one more received, and `missing` sequence numbers
/// skipped since the previous one (messages that never arrived).
pub async fn record_message(
    conn: &mut Conn,
    id: &AgentId,
    seq: u64,
    missing: u64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agents SET last_seq = ?, received = received + 1, gaps = gaps + ?, last_seen = ? WHERE id = ?",
    )
    .bind(to_i64(seq))
    .bind(to_i64(missing))
    .bind(to_ms(now))
    .bind(id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn count_duplicate(conn: &mut Conn, id: &AgentId) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET duplicates = duplicates + 1 WHERE id = ?")
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_online(conn: &mut Conn, id: &AgentId, online: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET online = ? WHERE id = ?")
        .bind(i64::from(online))
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_hello(
    conn: &mut Conn,
    id: &AgentId,
    facts: &HelloFacts<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agents SET version = ?, platform = ?, hostname = ?, mac = COALESCE(?, mac), \
         local_ip = COALESCE(?, local_ip), online = 1 WHERE id = ?",
    )
    .bind(facts.version)
    .bind(facts.platform)
    .bind(facts.hostname)
    .bind(facts.mac)
    .bind(facts.local_ip)
    .bind(id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_outbox(
    conn: &mut Conn,
    id: &AgentId,
    depth: u64,
    dropped: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET outbox_depth = ?, outbox_dropped = ? WHERE id = ?")
        .bind(to_i64(depth))
        .bind(to_i64(dropped))
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes every row that belongs to the agent (reports, devices and device events, commands, history,
/// the agent) and leaves a tombstone with its secret hash.
pub async fn delete_with_tombstone(
    conn: &mut Conn,
    agent: &AgentRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::devices::delete_all(conn, &agent.id).await?;
    let id = agent.id.as_str();
    for table in ["reports", "commands", "history"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE agent_id = ?"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM agents WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO tombstones (id, secret_hash, name, deleted_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(&agent.secret_hash)
        .bind(&agent.name)
        .bind(to_ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The secret hash a deleted agent had, if `id` is a tombstone.
pub async fn tombstone_secret(conn: &mut Conn, id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT secret_hash FROM tombstones WHERE id = ?")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}
