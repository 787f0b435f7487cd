//! Agent rows (identity, subscription, renewal decision, what the agent said about itself, link counters)
//! and tombstones.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, opt_from_ms, parse_column, sites, to_i64, to_ms, to_u64, Conn, StoreError};
use crate::access::Scope;
use crate::lifecycle::{Plan, RenewalDecision, Status, Subscription};
use crate::listing::{online_cutoff_ms, AgentQuery, DisplayStatus, Order, RenewalFlag, SortKey};
use crate::site::SiteConfig;

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
    /// The company that owns the agent (none only for agents of a database older than companies).
    pub company_id: Option<i64>,
    /// Its group; none: ungrouped (only company admins and company-wide grants see it).
    pub group_id: Option<i64>,
    /// What people decided about its renewal (yearly and quarterly plans).
    pub renewal: RenewalDecision,
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
    pub company_id: Option<i64>,
    pub group_id: Option<i64>,
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
    duplicates, gaps, outbox_depth, outbox_dropped, company_id, group_id, renewal_confirmed_until, \
    renewed_automatically_at";

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
        company_id: row.try_get("company_id")?,
        group_id: row.try_get("group_id")?,
        renewal: RenewalDecision {
            confirmed_until: opt_from_ms(row.try_get("renewal_confirmed_until")?)?,
            renewed_automatically_at: opt_from_ms(row.try_get("renewed_automatically_at")?)?,
        },
    })
}

pub async fn insert(conn: &mut Conn, a: &NewAgent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agents (id, name, secret_hash, status, plan, expires_at, activated_at, version, local_ip, \
         mac, public_ip, platform, hostname, company_id, group_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(a.company_id)
    .bind(a.group_id)
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

/// How a search judges time-dependent facts: `online` means the last presence said online and
/// `last_seen` is at or after `online_since` (see `crate::listing::online_cutoff`; `None`: any time); a
/// renewal is due when its date is at or before `renewal_due_before` (`crate::listing::renewal_horizon`).
#[derive(Debug, Clone, Copy)]
pub struct SearchClock {
    pub online_since: Option<DateTime<Utc>>,
    pub renewal_due_before: DateTime<Utc>,
}

/// SQL (over `agents a`) for `crate::listing::renewal_undecided`: an active yearly or quarterly agent whose
/// renewal date is at or before the one `?` (the horizon) and not the date a person confirmed.
pub const RENEWAL_UNDECIDED_SQL: &str =
    "(a.status = 'active' AND a.plan IN ('yearly', 'quarterly') \
    AND a.expires_at IS NOT NULL AND a.expires_at <= ? \
    AND (a.renewal_confirmed_until IS NULL OR a.renewal_confirmed_until <> a.expires_at))";

/// SQL (over `agents a`) for the red flag (`RenewalFlag::Overdue`), no placeholder.
pub const RENEWAL_OVERDUE_SQL: &str = "(a.status = 'active' AND a.plan IN ('yearly', 'quarterly') \
    AND a.renewed_automatically_at IS NOT NULL)";

/// A search's WHERE clause and the values of its placeholders, in order.
struct Filter {
    sql: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// Characters a phone number can hold: a search text made only of these may match the stored phones
/// (a JSON array, whose quotes and commas must not match anything else).
fn phone_text(q: &str) -> bool {
    q.chars()
        .all(|c| c.is_ascii_alphanumeric() || " +-.()".contains(c))
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The clause keeping a search inside what the caller sees (nothing for an empty scope).
fn scope_clause(scope: &Scope, binds: &mut Vec<Bind>) -> String {
    let mut any = Vec::new();
    let mut list = |column: &str, n: usize| {
        if n > 0 {
            any.push(format!("{column} IN ({})", vec!["?"; n].join(", ")));
        }
    };
    list("a.company_id", scope.companies.len());
    list("a.group_id", scope.groups.len());
    list("a.id", scope.agents.len());
    binds.extend(scope.companies.iter().map(|c| Bind::Int(*c)));
    binds.extend(scope.groups.iter().map(|g| Bind::Int(*g)));
    binds.extend(scope.agents.iter().map(|a| Bind::Text(a.clone())));
    if any.is_empty() {
        "0 = 1".to_owned()
    } else {
        format!("({})", any.join(" OR "))
    }
}

fn filter(query: &AgentQuery, scope: &Scope, clock: SearchClock) -> Filter {
    let mut binds = Vec::new();
    let mut clauses: Vec<String> = vec![scope_clause(scope, &mut binds)];
    if !query.statuses.is_empty() {
        let any: Vec<&str> = query
            .statuses
            .iter()
            .map(|s| match s {
                DisplayStatus::ActivationPending => "(a.status = 'active' AND a.last_seen IS NULL)",
                DisplayStatus::Active => "(a.status = 'active' AND a.last_seen IS NOT NULL)",
                DisplayStatus::DeactivationPending => "a.status = 'deactivation_pending'",
                DisplayStatus::Deactivated => "a.status = 'deactivated'",
                DisplayStatus::Expired => "a.status = 'expired'",
            })
            .collect();
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if let Some(online) = query.online {
        let is_online = match clock.online_since {
            Some(since) => {
                binds.push(Bind::Int(online_cutoff_ms(since)));
                "(a.online = 1 AND a.last_seen IS NOT NULL AND a.last_seen >= ?)"
            }
            None => "(a.online = 1 AND a.last_seen IS NOT NULL)",
        };
        clauses.push(if online {
            is_online.to_owned()
        } else {
            format!("NOT {is_online}")
        });
    }
    if !query.renewals.is_empty() {
        let any: Vec<String> = query
            .renewals
            .iter()
            .map(|flag| match flag {
                RenewalFlag::Due => {
                    binds.push(Bind::Int(to_ms(clock.renewal_due_before)));
                    format!("({RENEWAL_UNDECIDED_SQL} AND a.renewed_automatically_at IS NULL)")
                }
                RenewalFlag::Overdue => RENEWAL_OVERDUE_SQL.to_owned(),
            })
            .collect();
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if let Some(q) = &query.q {
        let pattern = like_pattern(q);
        let mut fields = vec![
            "a.name",
            "s.customer_id",
            "s.contract_id",
            "s.email",
            "s.first_name",
            "s.last_name",
            "(s.first_name || ' ' || s.last_name)",
            "s.note",
        ];
        if phone_text(q) {
            fields.push("s.phones");
        }
        let any: Vec<String> = fields
            .iter()
            .map(|f| format!("lower({f}) LIKE lower(?) ESCAPE '\\'"))
            .collect();
        binds.extend(fields.iter().map(|_| Bind::Text(pattern.clone())));
        clauses.push(format!("({})", any.join(" OR ")));
    }
    Filter {
        sql: clauses.join(" AND "),
        binds,
    }
}

/// The ORDER BY of a search: the key (empty values last in both orders), then the id.
fn order_by(query: &AgentQuery) -> String {
    let key = match query.sort {
        SortKey::Name => "lower(a.name)",
        SortKey::Status => {
            "CASE WHEN a.status = 'active' AND a.last_seen IS NULL THEN 0 \
             WHEN a.status = 'active' THEN 1 WHEN a.status = 'deactivation_pending' THEN 2 \
             WHEN a.status = 'deactivated' THEN 3 ELSE 4 END"
        }
        SortKey::LastSeen => "a.last_seen",
        SortKey::ActivatedAt => "a.activated_at",
        SortKey::ExpiresAt => "a.expires_at",
        SortKey::CustomerId => "lower(s.customer_id)",
    };
    let direction = match query.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    format!("({key}) IS NULL, {key} {direction}, a.id ASC")
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for b in binds {
        query = match b {
            Bind::Text(t) => query.bind(t.as_str()),
            Bind::Int(n) => query.bind(*n),
        };
    }
    query
}

const FROM: &str = "FROM agents a LEFT JOIN sites s ON s.agent_id = a.id";

/// How many agents in `scope` match the query's search and filters (its sort and page play no part).
pub async fn count(
    conn: &mut Conn,
    query: &AgentQuery,
    scope: &Scope,
    clock: SearchClock,
) -> Result<u64, StoreError> {
    let f = filter(query, scope, clock);
    let sql = format!("SELECT COUNT(*) AS n {FROM} WHERE {}", f.sql);
    let row = bind_all(sqlx::query(&sql), &f.binds)
        .fetch_one(&mut *conn)
        .await?;
    to_u64("count", row.try_get("n")?)
}

/// The agents matching the query's search and filters with their site configurations, in its sort, from
/// `offset`, at most `limit` of them.
pub async fn search(
    conn: &mut Conn,
    query: &AgentQuery,
    scope: &Scope,
    clock: SearchClock,
    limit: u32,
    offset: u32,
) -> Result<Vec<(AgentRow, SiteConfig)>, StoreError> {
    let f = filter(query, scope, clock);
    let columns = COLUMNS
        .split(',')
        .map(|c| format!("a.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, {} {FROM} WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
        sites::JOINED_COLUMNS,
        f.sql,
        order_by(query)
    );
    let rows = bind_all(sqlx::query(&sql), &f.binds)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok((from_row(row)?, sites::from_joined_row(row)?)))
        .collect()
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

/// The ids of the agents the broker must refuse (deactivated or expired), by id.
pub async fn refused_ids(conn: &mut Conn) -> Result<Vec<AgentId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM agents WHERE status IN ('deactivated', 'expired') ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    ids.iter()
        .map(|id| {
            AgentId::parse(id).map_err(|e| StoreError::Corrupt(format!("agent id {id:?}: {e}")))
        })
        .collect()
}

/// Active yearly and quarterly agents (what the renewal sweep looks at), by id.
pub async fn renewing(conn: &mut Conn) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents WHERE status = 'active' AND plan IN ('yearly', 'quarterly') ORDER BY id"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Stores the renewal decision state.
pub async fn set_renewal_decision(
    conn: &mut Conn,
    id: &AgentId,
    d: &RenewalDecision,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agents SET renewal_confirmed_until = ?, renewed_automatically_at = ? WHERE id = ?",
    )
    .bind(d.confirmed_until.map(to_ms))
    .bind(d.renewed_automatically_at.map(to_ms))
    .bind(id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the subscription to `next` only if it still is `expected` (status, plan and dates); false if
/// something changed it in between (a person's action, or the sweep), so nothing was written.
pub async fn replace_subscription(
    conn: &mut Conn,
    id: &AgentId,
    expected: &Subscription,
    next: &Subscription,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE agents SET status = ?, plan = ?, expires_at = ?, deactivates_at = ? \
         WHERE id = ? AND status = ? AND plan = ? AND expires_at IS ? AND deactivates_at IS ?",
    )
    .bind(next.status.as_str())
    .bind(next.plan.as_str())
    .bind(next.expires_at.map(to_ms))
    .bind(next.deactivates_at.map(to_ms))
    .bind(id.as_str())
    .bind(expected.status.as_str())
    .bind(expected.plan.as_str())
    .bind(expected.expires_at.map(to_ms))
    .bind(expected.deactivates_at.map(to_ms))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
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
/// renewal reminders, settings, its update attempts and its places in rollouts, rollouts made for it
/// alone, support grants to it, its site configuration, the agent) and leaves a tombstone with its secret
/// hash. The caller writes the account history's `deleted` line (the one row that keeps the id).
///
/// A running rollout the agent was part of goes on without it: its stages are counted over the agents
/// still there (`rollout::next_step`), so a stage that waited for the deleted agent can complete.
pub async fn delete_with_tombstone(
    conn: &mut Conn,
    agent: &AgentRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::devices::delete_all(conn, &agent.id).await?;
    let id = agent.id.as_str();
    for table in [
        "reports",
        "commands",
        "history",
        "renewal_reminders",
        "agent_settings",
        "agent_updates",
        "rollout_agents",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE agent_id = ?"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    // Rollouts of this one agent: their attempts and agent rows (this agent's) went above.
    sqlx::query("DELETE FROM rollouts WHERE scope = 'agent' AND agent_id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM support_grants WHERE scope = 'agent' AND agent_id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sites::delete(conn, &agent.id).await?;
    sqlx::query("DELETE FROM agents WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO tombstones (id, secret_hash, name, deleted_at, company_id) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(&agent.secret_hash)
    .bind(&agent.name)
    .bind(to_ms(now))
    .bind(agent.company_id)
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
