//! Commands queued for agents: `pending` until the agent acknowledges them `done` or `failed`.

use chrono::{DateTime, Utc};
use outpost_cloud_link::protocol::{Command, Outcome};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, opt_from_ms, to_i64, to_ms, to_u64, Conn, StoreError};

/// One stored command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRow {
    pub id: u64,
    pub agent_id: String,
    pub kind: String,
    pub command: Command,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// A failure's machine-readable code (`control::codes`), when the agent gave one.
    pub code: Option<String>,
    /// What the acknowledgement had to say (`Ack::result`).
    pub result: Option<serde_json::Value>,
}

const COLUMNS: &str =
    "id, agent_id, kind, body, status, created_at, acked_at, message, code, result";

fn from_row(row: &SqliteRow) -> Result<CommandRow, StoreError> {
    let body: String = row.try_get("body")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(CommandRow {
        id: to_u64("id", row.try_get("id")?)?,
        agent_id: row.try_get("agent_id")?,
        kind: row.try_get("kind")?,
        command: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("command body: {e}")))?,
        status: row.try_get("status")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        acked_at: opt_from_ms(row.try_get("acked_at")?)?,
        message: row.try_get("message")?,
        code: row.try_get("code")?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("command result: {e}")))?,
    })
}

/// Queues a command and returns its id.
pub async fn insert(
    conn: &mut Conn,
    agent: &AgentId,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let body = serde_json::to_string(command)
        .map_err(|e| StoreError::Corrupt(format!("command body: {e}")))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO commands (agent_id, kind, body, status, created_at) VALUES (?, ?, ?, 'pending', ?) \
         RETURNING id",
    )
    .bind(agent.as_str())
    .bind(command.name())
    .bind(body)
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?;
    to_u64("id", id)
}

pub async fn get(
    conn: &mut Conn,
    agent: &AgentId,
    id: u64,
) -> Result<Option<CommandRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = ? AND id = ?"
    ))
    .bind(agent.as_str())
    .bind(to_i64(id))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The agent's most recent commands, newest first.
pub async fn recent(
    conn: &mut Conn,
    agent: &AgentId,
    limit: u32,
) -> Result<Vec<CommandRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(agent.as_str())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The agent's pending commands, oldest first.
pub async fn pending(conn: &mut Conn, agent: &AgentId) -> Result<Vec<CommandRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM commands WHERE agent_id = ? AND status = 'pending' ORDER BY id"
    ))
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Records an acknowledgement (its outcome and result); returns the command if it belongs to the agent.
pub async fn ack(
    conn: &mut Conn,
    agent: &AgentId,
    id: u64,
    outcome: &Outcome,
    result: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<Option<CommandRow>, StoreError> {
    let (status, message, code) = match outcome {
        Outcome::Done => ("done", None, None),
        Outcome::Failed { message, code } => ("failed", Some(message), code.as_ref()),
    };
    let row = sqlx::query(&format!(
        "UPDATE commands SET status = ?, acked_at = ?, message = ?, code = ?, result = ? \
         WHERE agent_id = ? AND id = ? RETURNING {COLUMNS}"
    ))
    .bind(status)
    .bind(to_ms(now))
    .bind(message)
    .bind(code)
    .bind(result.map(|r| r.to_string()))
    .bind(agent.as_str())
    .bind(to_i64(id))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks the agent's pending commands of `kind` failed with `code` and `message` (they will not be sent);
/// returns how many.
pub async fn cancel_pending(
    conn: &mut Conn,
    agent: &AgentId,
    kind: &str,
    code: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE commands SET status = 'failed', acked_at = ?, message = ?, code = ? \
         WHERE agent_id = ? AND kind = ? AND status = 'pending'",
    )
    .bind(to_ms(now))
    .bind(message)
    .bind(code)
    .bind(agent.as_str())
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The id of the agent's latest command of `kind`, if any.
pub async fn latest_of_kind(
    conn: &mut Conn,
    agent: &AgentId,
    kind: &str,
) -> Result<Option<u64>, StoreError> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT MAX(id) FROM commands WHERE agent_id = ? AND kind = ?")
            .bind(agent.as_str())
            .bind(kind)
            .fetch_one(conn)
            .await?;
    id.map(|id| to_u64("id", id)).transpose()
}
