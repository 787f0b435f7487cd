//! Update rollouts and agents' update attempts: the `rollouts` rows, the agents each rollout considered
//! (`rollout_agents`: eligible ones in the rollout's order, skipped ones with the reason), one
//! `agent_updates` row per agent per attempt, and the `target` / `updatable` an agent's hello reports.

use chrono::{DateTime, Utc};
use outpost_cloud_link::update::UpdateState;
use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, parse_column, to_i64, to_ms, to_u64, Conn, StoreError};

/// Who a rollout is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutScope {
    Agent(String),
    /// A group with its sub-groups.
    Group(i64),
    /// The company's whole fleet.
    Fleet,
}

impl RolloutScope {
    pub fn kind(&self) -> &'static str {
        match self {
            RolloutScope::Agent(_) => "agent",
            RolloutScope::Group(_) => "group",
            RolloutScope::Fleet => "fleet",
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    Running,
    Paused,
    Done,
    Cancelled,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Done => "done",
            RolloutState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for RolloutState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            RolloutState::Running,
            RolloutState::Paused,
            RolloutState::Done,
            RolloutState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown rollout state {s:?}"))
    }
}

/// One rollout as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub id: i64,
    pub company_id: i64,
    pub release_id: i64,
    pub version: String,
    pub target: String,
    pub scope: RolloutScope,
    pub stages: Vec<u8>,
    pub max_failure_pct: u8,
    /// Index into `stages`.
    pub stage: usize,
    pub state: RolloutState,
    pub pause_reason: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What to insert.
#[derive(Debug, Clone)]
pub struct NewRollout<'a> {
    pub company_id: i64,
    pub release_id: i64,
    pub version: &'a str,
    pub target: &'a str,
    pub scope: &'a RolloutScope,
    pub stages: &'a [u8],
    pub max_failure_pct: u8,
    pub created_by: &'a str,
}

const COLUMNS: &str =
    "id, company_id, release_id, version, target, scope, group_id, agent_id, stages, \
    max_failure_pct, stage, state, pause_reason, created_by, created_at, updated_at";

fn from_row(row: &SqliteRow) -> Result<RolloutRow, StoreError> {
    let scope: String = row.try_get("scope")?;
    let scope =
        match scope.as_str() {
            "agent" => {
                RolloutScope::Agent(row.try_get::<Option<String>, _>("agent_id")?.ok_or_else(
                    || StoreError::Corrupt("rollout of an agent without agent_id".into()),
                )?)
            }
            "group" => RolloutScope::Group(row.try_get::<Option<i64>, _>("group_id")?.ok_or_else(
                || StoreError::Corrupt("rollout of a group without group_id".into()),
            )?),
            "fleet" => RolloutScope::Fleet,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "rollout scope {other:?} is not agent, group or fleet"
                )))
            }
        };
    let stages: String = row.try_get("stages")?;
    let stages = stages
        .split(',')
        .map(|s| parse_column::<u8>("stages", s))
        .collect::<Result<Vec<_>, _>>()?;
    let state: String = row.try_get("state")?;
    Ok(RolloutRow {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        release_id: row.try_get("release_id")?,
        version: row.try_get("version")?,
        target: row.try_get("target")?,
        scope,
        stages,
        max_failure_pct: u8::try_from(row.try_get::<i64, _>("max_failure_pct")?)
            .map_err(|_| StoreError::Corrupt("max_failure_pct out of range".into()))?,
        stage: to_u64("stage", row.try_get("stage")?)? as usize,
        state: parse_column("state", &state)?,
        pause_reason: row.try_get("pause_reason")?,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

pub async fn insert(
    conn: &mut Conn,
    r: &NewRollout<'_>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let (group, agent) = match r.scope {
        RolloutScope::Agent(a) => (None, Some(a.as_str())),
        RolloutScope::Group(g) => (Some(*g), None),
        RolloutScope::Fleet => (None, None),
    };
    let stages: Vec<String> = r.stages.iter().map(u8::to_string).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO rollouts (company_id, release_id, version, target, scope, group_id, agent_id, stages, \
         max_failure_pct, stage, state, created_by, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'running', ?, ?, ?) RETURNING id",
    )
    .bind(r.company_id)
    .bind(r.release_id)
    .bind(r.version)
    .bind(r.target)
    .bind(r.scope.kind())
    .bind(group)
    .bind(agent)
    .bind(stages.join(","))
    .bind(i64::from(r.max_failure_pct))
    .bind(r.created_by)
    .bind(to_ms(now))
    .bind(to_ms(now))
    .fetch_one(conn)
    .await?)
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<RolloutRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every rollout of the companies, newest first.
pub async fn of_companies(
    conn: &mut Conn,
    companies: &[i64],
) -> Result<Vec<RolloutRow>, StoreError> {
    if companies.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; companies.len()].join(", ");
    let sql = format!("SELECT id FROM rollouts WHERE company_id IN ({marks}) ORDER BY id DESC");
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for c in companies {
        q = q.bind(c);
    }
    let ids = q.fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(get(conn, id).await?);
    }
    Ok(out)
}

/// The ids of the running rollouts, oldest first.
pub async fn running(conn: &mut Conn) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM rollouts WHERE state = 'running' ORDER BY id")
            .fetch_all(conn)
            .await?,
    )
}

/// Moves a rollout from `from` (state and stage) to the new state, stage and reason; false if it was no
/// longer at `from` (someone else moved it first).
pub async fn transition(
    conn: &mut Conn,
    id: i64,
    from: (RolloutState, usize),
    to: (RolloutState, usize, Option<&str>),
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE rollouts SET state = ?, stage = ?, pause_reason = ?, updated_at = ? \
         WHERE id = ? AND state = ? AND stage = ?",
    )
    .bind(to.0.as_str())
    .bind(to.1 as i64)
    .bind(to.2)
    .bind(to_ms(now))
    .bind(id)
    .bind(from.0.as_str())
    .bind(from.1 as i64)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One agent a rollout considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutAgent {
    pub agent_id: String,
    pub agent_name: String,
    /// Its place in the order (eligible agents only).
    pub position: Option<usize>,
    pub skipped_reason: Option<String>,
}

pub async fn insert_agent(
    conn: &mut Conn,
    rollout: i64,
    a: &RolloutAgent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rollout_agents (rollout_id, agent_id, agent_name, position, skipped_reason) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(rollout)
    .bind(&a.agent_id)
    .bind(&a.agent_name)
    .bind(a.position.map(|p| p as i64))
    .bind(&a.skipped_reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The rollout's agents: eligible ones in order, then skipped ones by name.
pub async fn agents_of(conn: &mut Conn, rollout: i64) -> Result<Vec<RolloutAgent>, StoreError> {
    let rows = sqlx::query(
        "SELECT agent_id, agent_name, position, skipped_reason FROM rollout_agents WHERE rollout_id = ? \
         ORDER BY position IS NULL, position, lower(agent_name), agent_id",
    )
    .bind(rollout)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RolloutAgent {
                agent_id: r.try_get("agent_id")?,
                agent_name: r.try_get("agent_name")?,
                position: r
                    .try_get::<Option<i64>, _>("position")?
                    .map(|p| to_u64("position", p).map(|p| p as usize))
                    .transpose()?,
                skipped_reason: r.try_get("skipped_reason")?,
            })
        })
        .collect()
}

/// One update attempt of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRow {
    pub id: i64,
    pub agent_id: String,
    pub rollout_id: Option<i64>,
    pub release_id: i64,
    pub version: String,
    pub from_version: Option<String>,
    pub state: UpdateState,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub command_id: Option<u64>,
    pub stage: Option<usize>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const UPDATE_COLUMNS: &str =
    "id, agent_id, rollout_id, release_id, version, from_version, state, reason, \
    code, command_id, stage, created_at, updated_at";

fn update_from_row(row: &SqliteRow) -> Result<UpdateRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(UpdateRow {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        rollout_id: row.try_get("rollout_id")?,
        release_id: row.try_get("release_id")?,
        version: row.try_get("version")?,
        from_version: row.try_get("from_version")?,
        state: parse_column("state", &state)?,
        reason: row.try_get("reason")?,
        code: row.try_get("code")?,
        command_id: row
            .try_get::<Option<i64>, _>("command_id")?
            .map(|c| to_u64("command_id", c))
            .transpose()?,
        stage: row
            .try_get::<Option<i64>, _>("stage")?
            .map(|s| to_u64("stage", s).map(|s| s as usize))
            .transpose()?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

/// What to insert for a new attempt.
#[derive(Debug, Clone)]
pub struct NewUpdate<'a> {
    pub agent_id: &'a str,
    pub rollout_id: Option<i64>,
    pub release_id: i64,
    pub version: &'a str,
    pub from_version: Option<&'a str>,
    pub state: UpdateState,
    pub reason: Option<&'a str>,
    pub code: Option<&'a str>,
    pub command_id: Option<u64>,
    pub stage: Option<usize>,
}

/// Inserts an attempt; `None` when the agent already has one in this rollout (an agent takes part in a
/// rollout once, so two drives at the same time cannot both issue it).
pub async fn insert_update(
    conn: &mut Conn,
    u: &NewUpdate<'_>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO agent_updates (agent_id, rollout_id, release_id, version, from_version, state, reason, \
         code, command_id, stage, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(u.agent_id)
    .bind(u.rollout_id)
    .bind(u.release_id)
    .bind(u.version)
    .bind(u.from_version)
    .bind(u.state.as_str())
    .bind(u.reason)
    .bind(u.code)
    .bind(u.command_id.map(to_i64))
    .bind(u.stage.map(|s| s as i64))
    .bind(to_ms(now))
    .bind(to_ms(now))
    .fetch_optional(conn)
    .await?)
}

pub async fn set_command(conn: &mut Conn, id: i64, command: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE agent_updates SET command_id = ? WHERE id = ?")
        .bind(to_i64(command))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets an attempt's state (and from_version when given, reason and code as given).
pub async fn set_state(
    conn: &mut Conn,
    id: i64,
    state: UpdateState,
    from_version: Option<&str>,
    reason: Option<&str>,
    code: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agent_updates SET state = ?, from_version = COALESCE(?, from_version), reason = ?, code = ?, \
         updated_at = ? WHERE id = ?",
    )
    .bind(state.as_str())
    .bind(from_version)
    .bind(reason)
    .bind(code)
    .bind(to_ms(now))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_by_command(
    conn: &mut Conn,
    agent: &AgentId,
    command: u64,
) -> Result<Option<UpdateRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {UPDATE_COLUMNS} FROM agent_updates WHERE agent_id = ? AND command_id = ? \
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(agent.as_str())
    .bind(to_i64(command))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(update_from_row).transpose()
}

/// The agent's latest attempt at `version`.
pub async fn latest_for_version(
    conn: &mut Conn,
    agent: &AgentId,
    version: &str,
) -> Result<Option<UpdateRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {UPDATE_COLUMNS} FROM agent_updates WHERE agent_id = ? AND version = ? \
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(agent.as_str())
    .bind(version)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(update_from_row).transpose()
}

/// The agent's attempts, newest first.
pub async fn updates_of_agent(
    conn: &mut Conn,
    agent: &str,
    limit: u32,
) -> Result<Vec<UpdateRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {UPDATE_COLUMNS} FROM agent_updates WHERE agent_id = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(agent)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(update_from_row).collect()
}

/// The attempts a rollout issued.
pub async fn updates_of_rollout(
    conn: &mut Conn,
    rollout: i64,
) -> Result<Vec<UpdateRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {UPDATE_COLUMNS} FROM agent_updates WHERE rollout_id = ? ORDER BY id"
    ))
    .bind(rollout)
    .fetch_all(conn)
    .await?;
    rows.iter().map(update_from_row).collect()
}

/// Attempts not in a final state created before `before`, oldest first.
pub async fn unfinished_before(
    conn: &mut Conn,
    before: DateTime<Utc>,
) -> Result<Vec<UpdateRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {UPDATE_COLUMNS} FROM agent_updates \
         WHERE state IN ('pending', 'downloading', 'installed') AND created_at < ? ORDER BY id"
    ))
    .bind(to_ms(before))
    .fetch_all(conn)
    .await?;
    rows.iter().map(update_from_row).collect()
}

/// Agents in an attempt that is not over, with the rollout it belongs to.
pub async fn busy_agents(conn: &mut Conn) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT agent_id, rollout_id FROM agent_updates WHERE state IN ('pending', 'downloading', 'installed')",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("agent_id")?, r.try_get("rollout_id")?)))
        .collect()
}

/// Stores what the hello said about updates: the agent's target and whether it can update. (One pair of
/// columns of the agent row, written only here, so the agent rows' module keeps one owner.)
pub async fn set_agent_target(
    conn: &mut Conn,
    agent: &AgentId,
    target: Option<&str>,
    updatable: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET target = ?, updatable = ? WHERE id = ?")
        .bind(target)
        .bind(i64::from(updatable))
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// An agent's update facts: its reported target and whether it can update.
pub async fn agent_target(
    conn: &mut Conn,
    agent: &str,
) -> Result<Option<(Option<String>, bool)>, StoreError> {
    let row = sqlx::query("SELECT target, updatable FROM agents WHERE id = ?")
        .bind(agent)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("target")?, r.try_get::<i64, _>("updatable")? != 0)))
        .transpose()
}

/// An agent a rollout may consider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub status: String,
    pub version: Option<String>,
    pub target: Option<String>,
    pub updatable: bool,
}

/// The agents of a company, or of some of its groups, or one agent (by id).
pub async fn candidates(
    conn: &mut Conn,
    company: i64,
    groups: Option<&[i64]>,
    agent: Option<&str>,
) -> Result<Vec<Candidate>, StoreError> {
    let mut sql =
        "SELECT id, name, status, version, target, updatable FROM agents WHERE company_id = ?"
            .to_owned();
    if let Some(groups) = groups {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(&format!(
            " AND group_id IN ({})",
            vec!["?"; groups.len()].join(", ")
        ));
    }
    if agent.is_some() {
        sql.push_str(" AND id = ?");
    }
    sql.push_str(" ORDER BY id");
    let mut q = sqlx::query(&sql).bind(company);
    for g in groups.unwrap_or(&[]) {
        q = q.bind(g);
    }
    if let Some(a) = agent {
        q = q.bind(a);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(Candidate {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                status: r.try_get("status")?,
                version: r.try_get("version")?,
                target: r.try_get("target")?,
                updatable: r.try_get::<i64, _>("updatable")? != 0,
            })
        })
        .collect()
}
