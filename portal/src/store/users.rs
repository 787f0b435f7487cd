//! Users (company members and support engineers), the companies they belong to, and what proves who they
//! are: API tokens, single-use account links and browser sessions. Secrets arrive here already hashed,
//! emails already normalized.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, opt_from_ms, parse_column, to_ms, Conn, StoreError};
use crate::access::Role;

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub company_id: Option<i64>,
    pub username: String,
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    pub password_hash: Option<String>,
    pub time_format: String,
    pub time_zone: String,
    pub require_2fa: bool,
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
    pub totp_enabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl UserRow {
    pub fn has_2fa(&self) -> bool {
        self.totp_enabled_at.is_some() && self.totp_secret.is_some()
    }
}

const COLUMNS: &str = "u.id, u.company_id, u.username, u.email, u.name, u.role, u.password_hash, \
    u.time_format, u.time_zone, u.require_2fa, u.totp_secret, u.totp_last_step, u.totp_enabled_at, \
    u.created_at";

fn from_row(row: &SqliteRow) -> Result<UserRow, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: parse_column("role", &role)?,
        password_hash: row.try_get("password_hash")?,
        time_format: row.try_get("time_format")?,
        time_zone: row.try_get("time_zone")?,
        require_2fa: row.try_get::<i64, _>("require_2fa")? != 0,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        totp_enabled_at: opt_from_ms(row.try_get("totp_enabled_at")?)?,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

/// A company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyRow {
    pub id: i64,
    pub name: String,
}

pub async fn companies(conn: &mut Conn) -> Result<Vec<CompanyRow>, StoreError> {
    let rows = sqlx::query("SELECT id, name FROM companies ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CompanyRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
            })
        })
        .collect()
}

pub async fn company(conn: &mut Conn, id: i64) -> Result<Option<CompanyRow>, StoreError> {
    let row = sqlx::query("SELECT id, name FROM companies WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(CompanyRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
        })
    })
    .transpose()
}

pub async fn company_by_name(conn: &mut Conn, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM companies WHERE lower(name) = lower(?)")
            .bind(name)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn insert_company(
    conn: &mut Conn,
    name: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("INSERT INTO companies (name, created_at) VALUES (?, ?) RETURNING id")
            .bind(name)
            .bind(to_ms(now))
            .fetch_one(conn)
            .await?,
    )
}

/// What a new user starts with.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub company_id: Option<i64>,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub name: &'a str,
    pub role: Role,
    pub require_2fa: bool,
}

pub async fn insert(
    conn: &mut Conn,
    new: &NewUser<'_>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO users (company_id, username, email, name, role, require_2fa, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(new.company_id)
    .bind(new.username)
    .bind(new.email)
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(i64::from(new.require_2fa))
    .bind(to_ms(now))
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?)
}

pub async fn by_id(conn: &mut Conn, id: i64) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users u WHERE u.id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_email(conn: &mut Conn, email: &str) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users u WHERE u.email = ?"))
        .bind(email)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn username_taken(conn: &mut Conn, username: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = ?")
        .bind(username)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// The users of a company (or, with `None`, the support engineers), by username.
pub async fn of_company(conn: &mut Conn, company: Option<i64>) -> Result<Vec<UserRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users u WHERE u.company_id IS ? ORDER BY u.username"
    ))
    .bind(company)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The oldest company admin of `company` (any company when `None`).
pub async fn first_company_admin(
    conn: &mut Conn,
    company: Option<i64>,
) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users u WHERE u.role = 'company-admin' \
         AND (? IS NULL OR u.company_id = ?) ORDER BY u.id LIMIT 1"
    ))
    .bind(company)
    .bind(company)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn set_password(
    conn: &mut Conn,
    id: i64,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
        .bind(hash)
        .bind(to_ms(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_role(
    conn: &mut Conn,
    id: i64,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET role = ?, updated_at = ? WHERE id = ?")
        .bind(role.as_str())
        .bind(to_ms(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_require_2fa(
    conn: &mut Conn,
    id: i64,
    require: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET require_2fa = ?, updated_at = ? WHERE id = ?")
        .bind(i64::from(require))
        .bind(to_ms(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_email(
    conn: &mut Conn,
    id: i64,
    email: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET email = ?, updated_at = ? WHERE id = ?")
        .bind(email)
        .bind(to_ms(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_preferences(
    conn: &mut Conn,
    id: i64,
    name: &str,
    time_format: &str,
    time_zone: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET name = ?, time_format = ?, time_zone = ?, updated_at = ? WHERE id = ?",
    )
    .bind(name)
    .bind(time_format)
    .bind(time_zone)
    .bind(to_ms(now))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets (or with `None`, removes) the user's TOTP secret; `enabled` is when it was confirmed.
pub async fn set_totp(
    conn: &mut Conn,
    id: i64,
    secret: Option<&str>,
    last_step: Option<i64>,
    enabled: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET totp_secret = ?, totp_last_step = ?, totp_enabled_at = ?, updated_at = ? \
         WHERE id = ?",
    )
    .bind(secret)
    .bind(last_step)
    .bind(enabled.map(to_ms))
    .bind(to_ms(now))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the time step of an accepted TOTP code, unless a later or equal one was recorded first (two
/// sign-ins racing with one code): returns whether this one won.
pub async fn take_totp_step(conn: &mut Conn, id: i64, step: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
    )
    .bind(step)
    .bind(id)
    .bind(step)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the user and everything that proves who they are or gives them access.
pub async fn delete(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM user_sessions WHERE user_id = ?",
        "DELETE FROM user_tokens WHERE user_id = ?",
        "DELETE FROM user_links WHERE user_id = ?",
        "DELETE FROM trusted_devices WHERE user_id = ?",
        "DELETE FROM recovery_codes WHERE user_id = ?",
        "DELETE FROM group_users WHERE user_id = ?",
        "DELETE FROM support_grants WHERE user_id = ?",
        "DELETE FROM users WHERE id = ?",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub read_only: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

fn token_from_row(r: &SqliteRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        read_only: r.try_get::<i64, _>("read_only")? != 0,
        created_at: from_ms(r.try_get("created_at")?)?,
        expires_at: opt_from_ms(r.try_get("expires_at")?)?,
        last_used: opt_from_ms(r.try_get("last_used")?)?,
    })
}

const TOKEN_COLUMNS: &str = "id, user_id, name, read_only, created_at, expires_at, last_used";

pub async fn insert_token(
    conn: &mut Conn,
    hash: &str,
    user: i64,
    name: &str,
    read_only: bool,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO user_tokens (hash, user_id, name, read_only, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(hash)
    .bind(user)
    .bind(name)
    .bind(i64::from(read_only))
    .bind(to_ms(now))
    .bind(expires_at.map(to_ms))
    .fetch_one(conn)
    .await?)
}

/// The live token with this hash (not expired at `now`), marking it used.
pub async fn use_token(
    conn: &mut Conn,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE user_tokens SET last_used = ? WHERE hash = ? AND (expires_at IS NULL OR expires_at > ?) \
         RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(to_ms(now))
    .bind(hash)
    .bind(to_ms(now))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(token_from_row).transpose()
}

/// The tokens of a user, newest first.
pub async fn tokens_of(conn: &mut Conn, user: i64) -> Result<Vec<TokenRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM user_tokens WHERE user_id = ? ORDER BY id DESC"
    ))
    .bind(user)
    .fetch_all(conn)
    .await?;
    rows.iter().map(token_from_row).collect()
}

/// The tokens of every user of a company, newest first.
pub async fn tokens_of_company(conn: &mut Conn, company: i64) -> Result<Vec<TokenRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM user_tokens t JOIN users u ON u.id = t.user_id WHERE u.company_id = ? ORDER BY t.id DESC",
        TOKEN_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(company)
    .fetch_all(conn)
    .await?;
    rows.iter().map(token_from_row).collect()
}

pub async fn token(conn: &mut Conn, id: i64) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM user_tokens WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(token_from_row).transpose()
}

pub async fn delete_token(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM user_tokens WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What a single-use link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Set the first password of an invited user.
    Invite,
    /// Set a new password after "forgot password".
    Reset,
    /// Confirm a new email address.
    Email,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invite => "invite",
            LinkPurpose::Reset => "reset",
            LinkPurpose::Email => "email",
        }
    }
}

/// A link that was still valid when taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub user_id: i64,
    pub new_email: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a link, replacing the user's earlier links of the same purpose.
pub async fn insert_link(
    conn: &mut Conn,
    hash: &str,
    user: i64,
    purpose: LinkPurpose,
    new_email: Option<&str>,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM user_links WHERE user_id = ? AND purpose = ?")
        .bind(user)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO user_links (token_hash, user_id, purpose, new_email, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(hash)
    .bind(user)
    .bind(purpose.as_str())
    .bind(new_email)
    .bind(to_ms(now))
    .bind(to_ms(expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The link with this hash and purpose, if it exists (expired or not: the caller tells the person which).
pub async fn link(
    conn: &mut Conn,
    hash: &str,
    purpose: LinkPurpose,
) -> Result<Option<LinkRow>, StoreError> {
    let row = sqlx::query(
        "SELECT user_id, new_email, expires_at FROM user_links WHERE token_hash = ? AND purpose = ?",
    )
    .bind(hash)
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(LinkRow {
            user_id: r.try_get("user_id")?,
            new_email: r.try_get("new_email")?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
        })
    })
    .transpose()
}

/// Uses the link up: false if it was gone already (used by a racing request).
pub async fn take_link(conn: &mut Conn, hash: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM user_links WHERE token_hash = ?")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: i64,
    pub second_factor: bool,
    pub browser: String,
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn session_from_row(r: &SqliteRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        token_hash: r.try_get("token_hash")?,
        user_id: r.try_get("user_id")?,
        second_factor: r.try_get::<i64, _>("second_factor")? != 0,
        browser: r.try_get("browser")?,
        address: r.try_get("address")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        last_seen: from_ms(r.try_get("last_seen")?)?,
        expires_at: from_ms(r.try_get("expires_at")?)?,
    })
}

const SESSION_COLUMNS: &str =
    "token_hash, user_id, second_factor, browser, address, created_at, last_seen, expires_at";

pub async fn insert_session(conn: &mut Conn, s: &SessionRow) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO user_sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&s.token_hash)
    .bind(s.user_id)
    .bind(i64::from(s.second_factor))
    .bind(&s.browser)
    .bind(&s.address)
    .bind(to_ms(s.created_at))
    .bind(to_ms(s.last_seen))
    .bind(to_ms(s.expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The live session with this hash (not expired at `now`), marking it seen.
pub async fn use_session(
    conn: &mut Conn,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<SessionRow>, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE user_sessions SET last_seen = ? WHERE token_hash = ? AND expires_at > ? \
         RETURNING {SESSION_COLUMNS}"
    ))
    .bind(to_ms(now))
    .bind(hash)
    .bind(to_ms(now))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// The session passed its second factor (or finished the forced two-factor setup).
pub async fn complete_session(conn: &mut Conn, hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE user_sessions SET second_factor = 1 WHERE token_hash = ?")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user's live sessions, most recently seen first.
pub async fn sessions_of(
    conn: &mut Conn,
    user: i64,
    now: DateTime<Utc>,
) -> Result<Vec<SessionRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM user_sessions WHERE user_id = ? AND expires_at > ? \
         ORDER BY last_seen DESC"
    ))
    .bind(user)
    .bind(to_ms(now))
    .fetch_all(conn)
    .await?;
    rows.iter().map(session_from_row).collect()
}

pub async fn delete_session(conn: &mut Conn, hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM user_sessions WHERE token_hash = ?")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the user; returns how many.
pub async fn delete_sessions_of(conn: &mut Conn, user: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM user_sessions WHERE user_id = ?")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Forgets sessions and links that ended before `now`.
pub async fn delete_expired(conn: &mut Conn, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM user_sessions WHERE expires_at <= ?")
        .bind(to_ms(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM user_links WHERE expires_at <= ?")
        .bind(to_ms(now) - 7 * 24 * 3600 * 1000)
        .execute(conn)
        .await?;
    Ok(())
}
