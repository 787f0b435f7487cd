//! What agents reported: the latest body per kind, stamped with the data epoch it belongs to.
//!
//! A report is written only while its epoch is still the agent's data epoch, checked by the write itself
//! ([`upsert`]), so a cleanup committing between the ingest's read of the agent and the write cannot let
//! an older epoch's report in; reads ([`list`], [`get`]) only return rows of the agent's current epoch.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, to_i64, to_ms, to_u64, Conn, StoreError};

/// One stored report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub kind: String,
    pub epoch: u64,
    pub body: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// Stores (or replaces) the agent's report of `kind` if `epoch` is still the agent's data epoch, in one
/// statement (the check and the write cannot be split by a cleanup). Returns whether it was stored
/// (false: a cleanup started a newer epoch, or the agent is gone).
pub async fn upsert(
    conn: &mut Conn,
    agent: &AgentId,
    kind: &str,
    epoch: u64,
    body: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO reports (agent_id, kind, epoch, body, updated_at) \
         SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM agents WHERE id = ? AND data_epoch = ?) \
         ON CONFLICT (agent_id, kind) DO UPDATE SET epoch = excluded.epoch, body = excluded.body, \
         updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(kind)
    .bind(to_i64(epoch))
    .bind(body.to_string())
    .bind(to_ms(now))
    .bind(agent.as_str())
    .bind(to_i64(epoch))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

fn from_row(row: &SqliteRow) -> Result<ReportRow, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(ReportRow {
        kind: row.try_get("kind")?,
        epoch: to_u64("epoch", row.try_get("epoch")?)?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("report body: {e}")))?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

/// The agent's reports of its current data epoch, by kind.
pub async fn list(conn: &mut Conn, agent: &AgentId) -> Result<Vec<ReportRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT r.kind, r.epoch, r.body, r.updated_at FROM reports r \
         JOIN agents a ON a.id = r.agent_id AND a.data_epoch = r.epoch \
         WHERE r.agent_id = ? ORDER BY r.kind",
    )
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The agent's latest report of `kind` of its current data epoch, if any.
pub async fn get(
    conn: &mut Conn,
    agent: &AgentId,
    kind: &str,
) -> Result<Option<ReportRow>, StoreError> {
    let row = sqlx::query(
        "SELECT r.kind, r.epoch, r.body, r.updated_at FROM reports r \
         JOIN agents a ON a.id = r.agent_id AND a.data_epoch = r.epoch \
         WHERE r.agent_id = ? AND r.kind = ?",
    )
    .bind(agent.as_str())
    .bind(kind)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Removes all of the agent's reports (cleanup).
pub async fn delete_all(conn: &mut Conn, agent: &AgentId) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM reports WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
