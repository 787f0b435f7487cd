//! Owner access: each agent's owner (email and on/off switch), owner accounts, invitation links, sessions,
//! and the per-device flags (visible, power, block). Tokens arrive here already hashed.
//!
//! Which sites an account sees is not stored: it follows from `agent_owners.email`, so changing an agent's
//! owner email moves the site to the new owner at once.

use chrono::{DateTime, Utc};
use outpost_cloud_link::inventory::Device;
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::devices::{DeviceKey, DeviceRow};
use super::{from_ms, opt_from_ms, parse_column, to_ms, Conn, StoreError};

/// An agent's owner settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRow {
    pub agent_id: String,
    pub email: String,
    pub enabled: bool,
    pub updated_at: DateTime<Utc>,
}

/// An owner account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// An invitation link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub email: String,
    pub agent_id: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// What the owner may do with one device. No row: all false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub visible: bool,
    pub power: bool,
    pub block: bool,
}

/// A site an owner account sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRow {
    pub agent_id: AgentId,
    pub name: String,
    pub enabled: bool,
}

/// A device the owner may see, with its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct VisibleDevice {
    pub row: DeviceRow,
    /// `row.record`, read.
    pub device: Device,
    pub flags: Flags,
}

fn bool_column(row: &SqliteRow, column: &str) -> Result<bool, StoreError> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

// ---------------------------------------------------------------------------------------------------------
// Owner settings per agent
// ---------------------------------------------------------------------------------------------------------

pub async fn get_owner(conn: &mut Conn, agent: &AgentId) -> Result<Option<OwnerRow>, StoreError> {
    let row = sqlx::query(
        "SELECT agent_id, email, enabled, updated_at FROM agent_owners WHERE agent_id = ?",
    )
    .bind(agent.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(OwnerRow {
            agent_id: row.try_get("agent_id")?,
            email: row.try_get("email")?,
            enabled: bool_column(&row, "enabled")?,
            updated_at: from_ms(row.try_get("updated_at")?)?,
        })
    })
    .transpose()
}

pub async fn put_owner(
    conn: &mut Conn,
    agent: &AgentId,
    email: &str,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_owners (agent_id, email, enabled, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (agent_id) DO UPDATE SET email = excluded.email, enabled = excluded.enabled, \
         updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(email)
    .bind(i64::from(enabled))
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// The sites whose owner email is `email` (switched on or off), by name.
pub async fn sites_of(conn: &mut Conn, email: &str) -> Result<Vec<SiteRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.agent_id, a.name, o.enabled FROM agent_owners o JOIN agents a ON a.id = o.agent_id \
         WHERE o.email = ? ORDER BY a.name, o.agent_id",
    )
    .bind(email)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("agent_id")?;
            Ok(SiteRow {
                agent_id: parse_column("agent_id", &id)?,
                name: row.try_get("name")?,
                enabled: bool_column(row, "enabled")?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------------------

fn account_from_row(row: &SqliteRow) -> Result<AccountRow, StoreError> {
    Ok(AccountRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

pub async fn account_by_email(
    conn: &mut Conn,
    email: &str,
) -> Result<Option<AccountRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, email, password_hash, created_at FROM owner_accounts WHERE email = ?",
    )
    .bind(email)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(account_from_row).transpose()
}

/// Creates the account for `email`, or sets its password; returns its id.
pub async fn set_account_password(
    conn: &mut Conn,
    email: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO owner_accounts (email, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, \
         updated_at = excluded.updated_at RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(to_ms(now))
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------------------------
// Invitations
// ---------------------------------------------------------------------------------------------------------

pub async fn insert_invitation(
    conn: &mut Conn,
    token_hash: &str,
    email: &str,
    agent: &AgentId,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO owner_invitations (token_hash, email, agent_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(email)
    .bind(agent.as_str())
    .bind(to_ms(now))
    .bind(to_ms(expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn invitation(
    conn: &mut Conn,
    token_hash: &str,
) -> Result<Option<InvitationRow>, StoreError> {
    let row = sqlx::query(
        "SELECT email, agent_id, expires_at, used_at FROM owner_invitations WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(InvitationRow {
            email: row.try_get("email")?,
            agent_id: row.try_get("agent_id")?,
            expires_at: from_ms(row.try_get("expires_at")?)?,
            used_at: opt_from_ms(row.try_get("used_at")?)?,
        })
    })
    .transpose()
}

/// Marks the invitation used; `false` if it already was (so two tabs cannot both use it).
pub async fn use_invitation(
    conn: &mut Conn,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE owner_invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
    )
    .bind(to_ms(now))
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the agent's unused invitations for any email other than `email` (the owner changed).
pub async fn drop_invitations_not_for(
    conn: &mut Conn,
    agent: &AgentId,
    email: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM owner_invitations WHERE agent_id = ? AND email <> ? AND used_at IS NULL",
    )
    .bind(agent.as_str())
    .bind(email)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

// ---------------------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------------------

pub async fn insert_session(
    conn: &mut Conn,
    token_hash: &str,
    owner: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO owner_sessions (token_hash, owner_id, created_at, expires_at, last_used) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(owner)
    .bind(to_ms(now))
    .bind(to_ms(expires_at))
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// The account of a live session (not expired at `now`), recording the use.
pub async fn session_account(
    conn: &mut Conn,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<AccountRow>, StoreError> {
    let row = sqlx::query(
        "SELECT a.id, a.email, a.password_hash, a.created_at FROM owner_sessions s \
         JOIN owner_accounts a ON a.id = s.owner_id WHERE s.token_hash = ? AND s.expires_at > ?",
    )
    .bind(token_hash)
    .bind(to_ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    sqlx::query("UPDATE owner_sessions SET last_used = ? WHERE token_hash = ?")
        .bind(to_ms(now))
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    account_from_row(&row).map(Some)
}

pub async fn delete_session(conn: &mut Conn, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM owner_sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the account (its password was set again).
pub async fn delete_sessions_of(conn: &mut Conn, owner: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM owner_sessions WHERE owner_id = ?")
        .bind(owner)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Forgets sessions that ended before `now`; returns how many.
pub async fn delete_expired_sessions(
    conn: &mut Conn,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM owner_sessions WHERE expires_at <= ?")
        .bind(to_ms(now))
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

// ---------------------------------------------------------------------------------------------------------
// Device flags
// ---------------------------------------------------------------------------------------------------------

pub async fn flags(conn: &mut Conn, agent: &AgentId, key: &DeviceKey) -> Result<Flags, StoreError> {
    let row = sqlx::query(
        "SELECT visible, can_power, can_block FROM owner_device_flags \
         WHERE agent_id = ? AND vlan = ? AND mac = ?",
    )
    .bind(agent.as_str())
    .bind(i64::from(key.vlan))
    .bind(&key.mac)
    .fetch_optional(conn)
    .await?;
    match row {
        None => Ok(Flags::default()),
        Some(row) => Ok(Flags {
            visible: bool_column(&row, "visible")?,
            power: bool_column(&row, "can_power")?,
            block: bool_column(&row, "can_block")?,
        }),
    }
}

pub async fn put_flags(
    conn: &mut Conn,
    agent: &AgentId,
    key: &DeviceKey,
    flags: Flags,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO owner_device_flags (agent_id, vlan, mac, visible, can_power, can_block, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, vlan, mac) DO UPDATE SET \
         visible = excluded.visible, can_power = excluded.can_power, can_block = excluded.can_block, \
         updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(i64::from(key.vlan))
    .bind(&key.mac)
    .bind(i64::from(flags.visible))
    .bind(i64::from(flags.power))
    .bind(i64::from(flags.block))
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// The agent's devices the owner may see (flag set and the device in the inventory), by VLAN and MAC.
pub async fn visible_devices(
    conn: &mut Conn,
    agent: &AgentId,
) -> Result<Vec<VisibleDevice>, StoreError> {
    let rows = sqlx::query(
        "SELECT d.vlan, d.mac, d.record, d.updated_at, f.visible, f.can_power, f.can_block \
         FROM owner_device_flags f \
         JOIN devices d ON d.agent_id = f.agent_id AND d.vlan = f.vlan AND d.mac = f.mac \
         WHERE f.agent_id = ? AND f.visible = 1 ORDER BY d.vlan, d.mac",
    )
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let vlan: i64 = row.try_get("vlan")?;
            let record: String = row.try_get("record")?;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("device record: {e}"));
            let record: serde_json::Value = serde_json::from_str(&record).map_err(corrupt)?;
            Ok(VisibleDevice {
                row: DeviceRow {
                    key: DeviceKey {
                        vlan: u16::try_from(vlan)
                            .map_err(|_| StoreError::Corrupt(format!("device vlan {vlan}")))?,
                        mac: row.try_get("mac")?,
                    },
                    record: record.clone(),
                    updated_at: from_ms(row.try_get("updated_at")?)?,
                },
                device: serde_json::from_value(record).map_err(corrupt)?,
                flags: Flags {
                    visible: bool_column(row, "visible")?,
                    power: bool_column(row, "can_power")?,
                    block: bool_column(row, "can_block")?,
                },
            })
        })
        .collect()
}

/// Whether the agent's inventory holds the device.
pub async fn device_exists(
    conn: &mut Conn,
    agent: &AgentId,
    key: &DeviceKey,
) -> Result<bool, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM devices WHERE agent_id = ? AND vlan = ? AND mac = ?")
            .bind(agent.as_str())
            .bind(i64::from(key.vlan))
            .bind(&key.mac)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

// ---------------------------------------------------------------------------------------------------------
// Wiping
// ---------------------------------------------------------------------------------------------------------

/// Removes the agent's device flags (cleanup: they are data; the owner email and switch stay).
pub async fn delete_flags(conn: &mut Conn, agent: &AgentId) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM owner_device_flags WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Removes everything owner-related of the agent (deletion): flags, invitations, the owner settings.
/// Accounts stay: an owner may own other sites.
pub async fn delete_agent(conn: &mut Conn, agent: &AgentId) -> Result<(), StoreError> {
    for table in ["owner_device_flags", "owner_invitations", "agent_owners"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE agent_id = ?"))
            .bind(agent.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
