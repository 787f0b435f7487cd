//! The history: one line per lifecycle action, with who did it and when.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, to_ms, Conn, StoreError};

/// One history line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub agent_id: Option<String>,
    pub agent_name: String,
    pub action: String,
    pub actor: String,
    pub details: String,
}

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub agent: &'a AgentId,
    pub agent_name: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub details: &'a str,
}

pub async fn append(conn: &mut Conn, line: Line<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO history (agent_id, agent_name, at, action, actor, details) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(line.agent.as_str())
    .bind(line.agent_name)
    .bind(to_ms(now))
    .bind(line.action)
    .bind(line.actor)
    .bind(line.details)
    .execute(conn)
    .await?;
    Ok(())
}

fn from_row(row: &SqliteRow) -> Result<Entry, StoreError> {
    Ok(Entry {
        at: from_ms(row.try_get("at")?)?,
        agent_id: row.try_get("agent_id")?,
        agent_name: row.try_get("agent_name")?,
        action: row.try_get("action")?,
        actor: row.try_get("actor")?,
        details: row.try_get("details")?,
    })
}

/// The agent's lines, oldest first.
pub async fn for_agent(conn: &mut Conn, agent: &AgentId) -> Result<Vec<Entry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, agent_id, agent_name, action, actor, details FROM history WHERE agent_id = ? ORDER BY id",
    )
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The account's lines (all agents, deleted ones included), oldest first.
pub async fn all(conn: &mut Conn, limit: u32, offset: u32) -> Result<Vec<Entry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, agent_id, agent_name, action, actor, details FROM history ORDER BY id LIMIT ? OFFSET ?",
    )
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}
