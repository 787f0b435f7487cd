//! The portal's store: SQLite through sqlx (WAL mode, so `codes new` and `token new` work while `up` runs),
//! migrations from `portal/migrations/` run on open. Runtime queries only, written in portable SQL.
//!
//! - [`agents`]: agent rows (identity, subscription, link counters) and tombstones of deleted agents.
//! - [`commands`]: commands queued for agents and their outcomes.
//! - [`reports`]: what agents reported, per kind, stamped with the data epoch.
//! - [`devices`]: each agent's device inventory (devices, snapshot parts being collected, device events).
//! - [`controls`]: device control state: outlet bindings, the devices the agent reports blocked, its segments.
//! - [`history`]: the lifecycle history lines.
//! - [`owners`]: owner access (each agent's owner, owner accounts, invitations, sessions, device flags).
//! - [`sites`]: each agent's site configuration (contact, customer and contract ids, PSA, address, note).
//! - [`credentials`]: activation codes (hashed).
//! - [`releases`]: signed agent releases (the binaries are files under the data directory).
//! - [`rollouts`]: update rollouts, the agents each considered, agents' update attempts.
//! - [`settings`]: each agent's portal-managed settings document and what the agent said about it.
//! - [`renewals`]: renewal reminders sent per agent and renewal date, and who gets them.
//! - [`users`]: companies, users, their API tokens, single-use links and browser sessions.
//! - [`groups`]: groups of agents and their users, support grants, and the scope they give a user.
//!
//! Functions take a `&mut SqliteConnection`, so the same call works on a pooled connection or inside a
//! transaction (`&mut *tx`).

pub mod agents;
pub mod branding;
pub mod commands;
pub mod controls;
pub mod credentials;
pub mod devices;
pub mod groups;
pub mod history;
pub mod owners;
pub mod releases;
pub mod renewals;
pub mod reports;
pub mod rollouts;
pub mod settings;
pub mod sites;
pub mod two_factor;
pub mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use sqlx::SqliteConnection as Conn;

/// A transaction on the store.
pub type Tx = Transaction<'static, Sqlite>;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}; check that the data directory exists and is writable")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot bring the database schema up to date: {0}; is the database from a newer portal?"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the database holds a value this portal cannot read: {0}")]
    Corrupt(String),
}

/// The pooled database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A pooled connection for a few statements outside a transaction.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` is not needed: the busy timeout covers contention).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A time as stored: Unix milliseconds.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time back.
pub fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

fn opt_from_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_ms).transpose()
}

fn parse_column<T: FromStr>(column: &str, value: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| StoreError::Corrupt(format!("column {column}: {e}")))
}

fn to_u64(column: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {column} is negative: {v}")))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
