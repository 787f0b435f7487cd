//! The history: one line per action on an agent or on the account (sign-ins, 2FA, roles, groups, tokens,
//! grants), with who did it, when, and for account lines from which address. Each line belongs to a
//! company: an agent line to its agent's company.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, to_ms, Conn, StoreError};

/// One history line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub agent_id: Option<String>,
    pub agent_name: String,
    pub action: String,
    pub actor: String,
    pub details: String,
    pub address: Option<String>,
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
    // The company of the agent, or for a deleted agent the one its tombstone keeps.
    sqlx::query(
        "INSERT INTO history (agent_id, agent_name, at, action, actor, details, company_id) \
         VALUES (?, ?, ?, ?, ?, ?, COALESCE((SELECT company_id FROM agents WHERE id = ?), \
         (SELECT company_id FROM tombstones WHERE id = ?)))",
    )
    .bind(line.agent.as_str())
    .bind(line.agent_name)
    .bind(to_ms(now))
    .bind(line.action)
    .bind(line.actor)
    .bind(line.details)
    .bind(line.agent.as_str())
    .bind(line.agent.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// An account line: not about one agent.
#[derive(Debug, Clone, Copy)]
pub struct AccountLine<'a> {
    /// None for lines of the operator's support team outside any company (their own sign-ins).
    pub company: Option<i64>,
    pub action: &'a str,
    pub actor: &'a str,
    pub details: &'a str,
    pub address: Option<&'a str>,
}

pub async fn append_account(
    conn: &mut Conn,
    line: AccountLine<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO history (agent_id, agent_name, at, action, actor, details, company_id, address) \
         VALUES (NULL, '', ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_ms(now))
    .bind(line.action)
    .bind(line.actor)
    .bind(line.details)
    .bind(line.company)
    .bind(line.address)
    .execute(conn)
    .await?;
    Ok(())
}

fn from_row(row: &SqliteRow) -> Result<Entry, StoreError> {
    Ok(Entry {
        id: row.try_get("id")?,
        at: from_ms(row.try_get("at")?)?,
        agent_id: row.try_get("agent_id")?,
        agent_name: row.try_get("agent_name")?,
        action: row.try_get("action")?,
        actor: row.try_get("actor")?,
        details: row.try_get("details")?,
        address: row.try_get("address")?,
    })
}

/// The agent's lines, oldest first.
pub async fn for_agent(conn: &mut Conn, agent: &AgentId) -> Result<Vec<Entry>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM history WHERE agent_id = ? ORDER BY id"
    ))
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

const COLUMNS: &str = "id, at, agent_id, agent_name, action, actor, details, address";

/// Which account lines to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Lines whose action starts with this (`sign-in` matches `sign-in` and `sign-in-failed`).
    pub action: Option<String>,
    /// Lines whose actor contains this.
    pub actor: Option<String>,
    pub agent: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A company's lines matching the filter, oldest first, a page of them.
pub async fn of_company(
    conn: &mut Conn,
    company: i64,
    filter: &Filter,
    limit: u32,
    offset: u32,
) -> Result<Vec<Entry>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM history WHERE company_id = ? \
         AND (? IS NULL OR action LIKE ? || '%' ESCAPE '\\') \
         AND (? IS NULL OR instr(actor, ?) > 0) \
         AND (? IS NULL OR agent_id = ?) \
         AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?) \
         ORDER BY id LIMIT ? OFFSET ?"
    ))
    .bind(company)
    .bind(filter.action.as_deref())
    .bind(filter.action.as_deref().map(escape_like))
    .bind(filter.actor.as_deref())
    .bind(filter.actor.as_deref())
    .bind(filter.agent.as_deref())
    .bind(filter.agent.as_deref())
    .bind(filter.since.map(to_ms))
    .bind(filter.since.map(to_ms))
    .bind(filter.until.map(to_ms))
    .bind(filter.until.map(to_ms))
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
