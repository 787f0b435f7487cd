//! Agent settings pushed from the portal: per agent, the current settings document (version, JSON, who
//! stored it and when), what the agent last said about it (applied with its pinned settings and restart
//! flag, or refused with its code and message) and the version its hello says it runs with.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{opt_from_ms, to_i64, to_ms, to_u64, Conn, StoreError};

/// The state of the current document.
pub const PENDING: &str = "pending";
pub const APPLIED: &str = "applied";
pub const REFUSED: &str = "refused";

/// One agent's settings record.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsRow {
    pub agent_id: String,
    /// 0 while no document was stored.
    pub version: u64,
    /// The `Settings` JSON of `version` (none while no document was stored).
    pub settings: Option<serde_json::Value>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
    /// [`PENDING`], [`APPLIED`] or [`REFUSED`] (of `version`); none while no document was stored.
    pub state: Option<String>,
    /// The last version the agent acknowledged applying.
    pub applied_version: Option<u64>,
    /// What the agent kept at its local values when it applied `applied_version`.
    pub pinned: Vec<String>,
    /// Whether the agent restarts (restarted) to apply `applied_version`.
    pub restart: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// When the agent last acknowledged a document.
    pub acked_at: Option<DateTime<Utc>>,
    /// The version the agent's latest hello says it runs with.
    pub running_version: Option<u64>,
}

const COLUMNS: &str =
    "agent_id, version, settings, updated_at, updated_by, state, applied_version, \
    pinned, restart, error_code, error_message, acked_at, running_version";

fn opt_u64(row: &SqliteRow, column: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| to_u64(column, v))
        .transpose()
}

fn from_row(row: &SqliteRow) -> Result<SettingsRow, StoreError> {
    let settings: Option<String> = row.try_get("settings")?;
    let pinned: Option<String> = row.try_get("pinned")?;
    Ok(SettingsRow {
        agent_id: row.try_get("agent_id")?,
        version: to_u64("version", row.try_get("version")?)?,
        settings: settings
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("agent_settings.settings: {e}")))?,
        updated_at: opt_from_ms(row.try_get("updated_at")?)?,
        updated_by: row.try_get("updated_by")?,
        state: row.try_get("state")?,
        applied_version: opt_u64(row, "applied_version")?,
        pinned: match pinned {
            Some(p) => serde_json::from_str(&p)
                .map_err(|e| StoreError::Corrupt(format!("agent_settings.pinned: {e}")))?,
            None => Vec::new(),
        },
        restart: row.try_get::<i64, _>("restart")? != 0,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        acked_at: opt_from_ms(row.try_get("acked_at")?)?,
        running_version: opt_u64(row, "running_version")?,
    })
}

/// The agent's record, if it has one (a stored document or a hello that named its version).
pub async fn get(conn: &mut Conn, agent: &AgentId) -> Result<Option<SettingsRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agent_settings WHERE agent_id = ?"
    ))
    .bind(agent.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores `version` of the document as pending (clearing a refusal of an older one), only if the stored
/// version is still `version - 1` (none stored counts as 0); returns whether it did (false: someone
/// stored another version meanwhile).
pub async fn put(
    conn: &mut Conn,
    agent: &AgentId,
    version: u64,
    settings: &serde_json::Value,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO agent_settings (agent_id, version, settings, updated_at, updated_by, state) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (agent_id) DO UPDATE SET version = excluded.version, settings = excluded.settings, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by, state = excluded.state, \
         error_code = NULL, error_message = NULL \
         WHERE agent_settings.version = ?",
    )
    .bind(agent.as_str())
    .bind(to_i64(version))
    .bind(settings.to_string())
    .bind(to_ms(now))
    .bind(actor)
    .bind(PENDING)
    .bind(to_i64(version.saturating_sub(1)))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records that the agent applied `version` (it becomes `applied` if it is the current one).
pub async fn applied(
    conn: &mut Conn,
    agent: &AgentId,
    version: u64,
    pinned: &[String],
    restart: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let pinned = serde_json::to_string(pinned)
        .map_err(|e| StoreError::Corrupt(format!("agent_settings.pinned: {e}")))?;
    let v = to_i64(version);
    sqlx::query(
        "UPDATE agent_settings SET \
         state = CASE WHEN version = ? THEN ? ELSE state END, \
         error_code = CASE WHEN version = ? THEN NULL ELSE error_code END, \
         error_message = CASE WHEN version = ? THEN NULL ELSE error_message END, \
         applied_version = ?, pinned = ?, restart = ?, acked_at = ? \
         WHERE agent_id = ? AND (applied_version IS NULL OR applied_version <= ?)",
    )
    .bind(v)
    .bind(APPLIED)
    .bind(v)
    .bind(v)
    .bind(v)
    .bind(pinned)
    .bind(i64::from(restart))
    .bind(to_ms(now))
    .bind(agent.as_str())
    .bind(v)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the agent refused `version`; only the current version's refusal changes the state.
/// Returns whether it did.
pub async fn refused(
    conn: &mut Conn,
    agent: &AgentId,
    version: u64,
    code: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE agent_settings SET state = ?, error_code = ?, error_message = ?, acked_at = ? \
         WHERE agent_id = ? AND version = ?",
    )
    .bind(REFUSED)
    .bind(code)
    .bind(message)
    .bind(to_ms(now))
    .bind(agent.as_str())
    .bind(to_i64(version))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Stores the version the agent's hello says it runs with.
pub async fn set_running(
    conn: &mut Conn,
    agent: &AgentId,
    running: Option<u64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_settings (agent_id, version, running_version) VALUES (?, 0, ?) \
         ON CONFLICT (agent_id) DO UPDATE SET running_version = excluded.running_version",
    )
    .bind(agent.as_str())
    .bind(running.map(to_i64))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the agent's record (cleanup: the document made for the agent goes with its data). Returns the
/// version of the document it held, if one was stored.
pub async fn delete(conn: &mut Conn, agent: &AgentId) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = sqlx::query_scalar(
        "DELETE FROM agent_settings WHERE agent_id = ? AND version > 0 RETURNING version",
    )
    .bind(agent.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM agent_settings WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    version.map(|v| to_u64("version", v)).transpose()
}
