//! Operator accounts (technicians who use the web pages) and their sessions. Tokens arrive here already
//! hashed; emails already normalized.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, to_ms, Conn, StoreError};

/// An operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "a.id, a.email, a.name, a.password_hash, a.created_at";

fn from_row(row: &SqliteRow) -> Result<OperatorRow, StoreError> {
    Ok(OperatorRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

/// Creates the account, or sets the name and password of the existing one; returns its id and whether it
/// was new.
pub async fn upsert(
    conn: &mut Conn,
    email: &str,
    name: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<(i64, bool), StoreError> {
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM operator_accounts WHERE email = ?")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = existing {
        sqlx::query(
            "UPDATE operator_accounts SET name = ?, password_hash = ?, updated_at = ? WHERE id = ?",
        )
        .bind(name)
        .bind(password_hash)
        .bind(to_ms(now))
        .bind(id)
        .execute(conn)
        .await?;
        return Ok((id, false));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO operator_accounts (email, name, password_hash, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(to_ms(now))
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?;
    Ok((id, true))
}

pub async fn by_email(conn: &mut Conn, email: &str) -> Result<Option<OperatorRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM operator_accounts a WHERE a.email = ?"
    ))
    .bind(email)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn insert_session(
    conn: &mut Conn,
    token_hash: &str,
    operator: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operator_sessions (token_hash, operator_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(operator)
    .bind(to_ms(now))
    .bind(to_ms(expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The account of a live session (not expired at `now`).
pub async fn session_account(
    conn: &mut Conn,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<OperatorRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM operator_sessions s JOIN operator_accounts a ON a.id = s.operator_id \
         WHERE s.token_hash = ? AND s.expires_at > ?"
    ))
    .bind(token_hash)
    .bind(to_ms(now))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn delete_session(conn: &mut Conn, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM operator_sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the account (its password was set again).
pub async fn delete_sessions_of(conn: &mut Conn, operator: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM operator_sessions WHERE operator_id = ?")
        .bind(operator)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Forgets sessions that ended before `now`; returns how many.
pub async fn delete_expired_sessions(
    conn: &mut Conn,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM operator_sessions WHERE expires_at <= ?")
        .bind(to_ms(now))
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
