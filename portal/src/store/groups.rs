//! Groups of agents (with sub-groups), who is assigned to them, the agents' group, and the scope a user's
//! groups and support grants give them.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::agents::RENEWAL_UNDECIDED_SQL;
use super::{from_ms, opt_from_ms, to_ms, to_u64, Conn, StoreError};
use crate::access::{Role, Scope};

/// A group with its figures for the groups list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: i64,
    pub company_id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub note: String,
    /// Agents directly in the group that are active (or pending deactivation).
    pub active_agents: u64,
    /// Of those, how many need a decision before the cut-off the caller gave: yearly and quarterly
    /// renewals nobody confirmed (the orange flag, `crate::listing::renewal_undecided`) and prepaid
    /// expirations.
    pub due_agents: u64,
}

fn from_row(r: &SqliteRow) -> Result<GroupRow, StoreError> {
    Ok(GroupRow {
        id: r.try_get("id")?,
        company_id: r.try_get("company_id")?,
        parent_id: r.try_get("parent_id")?,
        name: r.try_get("name")?,
        note: r.try_get("note")?,
        active_agents: to_u64("active_agents", r.try_get("active_agents")?)?,
        due_agents: to_u64("due_agents", r.try_get("due_agents")?)?,
    })
}

/// The groups' columns and figures; its two placeholders are both the renewal cut-off.
fn select() -> String {
    format!(
        "SELECT g.id, g.company_id, g.parent_id, g.name, g.note, \
         (SELECT COUNT(*) FROM agents a WHERE a.group_id = g.id \
            AND a.status IN ('active', 'deactivation_pending')) AS active_agents, \
         (SELECT COUNT(*) FROM agents a WHERE a.group_id = g.id AND ({RENEWAL_UNDECIDED_SQL} \
            OR (a.status = 'active' AND a.plan = 'prepaid' \
                AND a.expires_at IS NOT NULL AND a.expires_at <= ?))) AS due_agents \
         FROM groups g"
    )
}

/// The company's groups, by name; `due_before` is the renewal cut-off for `due_agents`.
pub async fn of_company(
    conn: &mut Conn,
    company: i64,
    due_before: DateTime<Utc>,
) -> Result<Vec<GroupRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "{} WHERE g.company_id = ? ORDER BY lower(g.name)",
        select()
    ))
    .bind(to_ms(due_before))
    .bind(to_ms(due_before))
    .bind(company)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(
    conn: &mut Conn,
    id: i64,
    due_before: DateTime<Utc>,
) -> Result<Option<GroupRow>, StoreError> {
    let row = sqlx::query(&format!("{} WHERE g.id = ?", select()))
        .bind(to_ms(due_before))
        .bind(to_ms(due_before))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_name(conn: &mut Conn, company: i64, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM groups WHERE company_id = ? AND lower(name) = lower(?)")
            .bind(company)
            .bind(name)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn insert(
    conn: &mut Conn,
    company: i64,
    parent: Option<i64>,
    name: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO groups (company_id, parent_id, name, note, created_at) VALUES (?, ?, ?, ?, ?) \
         RETURNING id",
    )
    .bind(company)
    .bind(parent)
    .bind(name)
    .bind(note)
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?)
}

pub async fn update(
    conn: &mut Conn,
    id: i64,
    parent: Option<i64>,
    name: &str,
    note: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE groups SET parent_id = ?, name = ?, note = ? WHERE id = ?")
        .bind(parent)
        .bind(name)
        .bind(note)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many agents and sub-groups the group holds (a group is deleted only when empty).
pub async fn contents(conn: &mut Conn, id: i64) -> Result<(u64, u64), StoreError> {
    let agents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE group_id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let subs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM groups WHERE parent_id = ?")
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok((to_u64("agents", agents)?, to_u64("groups", subs)?))
}

pub async fn delete(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM group_users WHERE group_id = ?",
        "DELETE FROM support_grants WHERE group_id = ?",
        "UPDATE activation_codes SET group_id = NULL WHERE group_id = ?",
        "DELETE FROM groups WHERE id = ?",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The group and all its sub-groups, at any depth.
pub async fn with_descendants(conn: &mut Conn, id: i64) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE sub(id) AS (SELECT ? UNION SELECT g.id FROM groups g JOIN sub ON g.parent_id = sub.id) \
         SELECT id FROM sub",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

/// The users assigned to the group (ids), by id.
pub async fn users_of(conn: &mut Conn, group: i64) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM group_users WHERE group_id = ? ORDER BY user_id")
            .bind(group)
            .fetch_all(conn)
            .await?,
    )
}

/// The groups a user is assigned to (directly).
pub async fn groups_of(conn: &mut Conn, user: i64) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT group_id FROM group_users WHERE user_id = ? ORDER BY group_id")
            .bind(user)
            .fetch_all(conn)
            .await?,
    )
}

/// Makes the group's users exactly `users`.
pub async fn set_users(conn: &mut Conn, group: i64, users: &[i64]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_users WHERE group_id = ?")
        .bind(group)
        .execute(&mut *conn)
        .await?;
    for user in users {
        sqlx::query("INSERT INTO group_users (group_id, user_id) VALUES (?, ?)")
            .bind(group)
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Puts the agent in `group` (none: ungrouped).
pub async fn move_agent(
    conn: &mut Conn,
    agent: &AgentId,
    group: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET group_id = ? WHERE id = ?")
        .bind(group)
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// An agent's company and group, if the agent exists.
pub async fn agent_place(
    conn: &mut Conn,
    agent: &str,
) -> Result<Option<(Option<i64>, Option<i64>)>, StoreError> {
    let row = sqlx::query("SELECT company_id, group_id FROM agents WHERE id = ?")
        .bind(agent)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("company_id")?, r.try_get("group_id")?)))
        .transpose()
}

/// A support access grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub id: i64,
    pub company_id: i64,
    pub user_id: i64,
    /// `company`, `group` or `agent`.
    pub scope: String,
    pub group_id: Option<i64>,
    pub agent_id: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

fn grant_from_row(r: &SqliteRow) -> Result<GrantRow, StoreError> {
    Ok(GrantRow {
        id: r.try_get("id")?,
        company_id: r.try_get("company_id")?,
        user_id: r.try_get("user_id")?,
        scope: r.try_get("scope")?,
        group_id: r.try_get("group_id")?,
        agent_id: r.try_get("agent_id")?,
        until: opt_from_ms(r.try_get("until")?)?,
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

const GRANT_COLUMNS: &str =
    "id, company_id, user_id, scope, group_id, agent_id, until, created_by, created_at";

pub async fn insert_grant(conn: &mut Conn, g: &GrantRow) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO support_grants (company_id, user_id, scope, group_id, agent_id, until, created_by, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(g.company_id)
    .bind(g.user_id)
    .bind(&g.scope)
    .bind(g.group_id)
    .bind(&g.agent_id)
    .bind(g.until.map(to_ms))
    .bind(&g.created_by)
    .bind(to_ms(g.created_at))
    .fetch_one(conn)
    .await?)
}

/// The company's grants, newest first (expired ones too, so the list shows them ended).
pub async fn grants_of_company(conn: &mut Conn, company: i64) -> Result<Vec<GrantRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM support_grants WHERE company_id = ? ORDER BY id DESC"
    ))
    .bind(company)
    .fetch_all(conn)
    .await?;
    rows.iter().map(grant_from_row).collect()
}

pub async fn grant(conn: &mut Conn, id: i64) -> Result<Option<GrantRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM support_grants WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(grant_from_row).transpose()
}

pub async fn delete_grant(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM support_grants WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a user sees now: a company admin their company; a group admin or supervisor their groups and
/// sub-groups; a support engineer what their grants in force at `now` cover. Also the grants in force.
pub async fn scope_of(
    conn: &mut Conn,
    user: i64,
    role: Role,
    company: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(Scope, Vec<i64>), StoreError> {
    let mut scope = Scope::default();
    let mut grants = Vec::new();
    match role {
        Role::CompanyAdmin => scope.companies.extend(company),
        Role::GroupAdmin | Role::Supervisor => {
            scope.groups = sqlx::query_scalar(
                "WITH RECURSIVE sub(id) AS (SELECT group_id FROM group_users WHERE user_id = ? \
                 UNION SELECT g.id FROM groups g JOIN sub ON g.parent_id = sub.id) SELECT id FROM sub ORDER BY id",
            )
            .bind(user)
            .fetch_all(&mut *conn)
            .await?;
        }
        Role::Support => {
            let rows = sqlx::query(&format!(
                "SELECT {GRANT_COLUMNS} FROM support_grants WHERE user_id = ? AND (until IS NULL OR until > ?) ORDER BY id"
            ))
            .bind(user)
            .bind(to_ms(now))
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                let g = grant_from_row(row)?;
                grants.push(g.id);
                match (g.scope.as_str(), g.group_id, g.agent_id) {
                    ("company", _, _) => scope.companies.push(g.company_id),
                    ("group", Some(group), _) => {
                        scope.groups.extend(with_descendants(conn, group).await?)
                    }
                    ("agent", _, Some(agent)) => scope.agents.push(agent),
                    (other, _, _) => {
                        return Err(StoreError::Corrupt(format!(
                            "support grant {} has scope {other:?} without its target",
                            g.id
                        )))
                    }
                }
            }
        }
    }
    Ok((scope, grants))
}
