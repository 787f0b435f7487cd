//! Over-the-air update rollouts (issue 8, portal side): a release sent to one agent, a group (with its
//! sub-groups) or a company's whole fleet, in stages (`crate::rollout` decides, this drives), and every
//! agent's update attempts as the agent reports them.
//!
//! ```text
//!  create ─▶ eligible agents (active, target = release's, updatable, older version) in the rollout's order
//!        └─▶ drive: stage k ─▶ Command::Update (queue_command) + agent_updates row `pending`
//!  agent: update reports (downloading, installed, committed, rolled_back, failed) and the command's ack
//!        ─▶ the agent's attempt row + a history line per change ─▶ drive again
//!  drive: stage complete? failure rate > max ─▶ paused │ otherwise advance, done after the last stage
//!  sweeper tick ─▶ drive, and attempts silent for 30 minutes become `failed` (no-answer)
//! ```
//! The confirmation of a new version (`PortalNotice::UpdateHealthy`) is sent by `ingest`, which holds
//! the way to send notices: [`App::update_to_confirm`] says when.

use std::collections::HashMap;
use std::time::Duration;

use outpost_cloud_link::protocol::{Ack, Command, Outcome};
use outpost_cloud_link::release::Version;
use outpost_cloud_link::update::{UpdateReport, UpdateState};
use outpost_cloud_link::AgentId;
use tracing::{debug, info, warn};

use super::{Actor, App, OpError};
use crate::access::Caller;
use crate::rollout::{self, PlanError, Progress, Step};
use crate::store::history::{self, AccountLine, Line};
use crate::store::rollouts::{
    self as store, Candidate, NewRollout, NewUpdate, RolloutAgent, RolloutRow, RolloutScope,
    RolloutState, UpdateRow,
};
use crate::store::{agents, groups, releases, StoreError};

/// An attempt that has not reached a final state this long after it was issued is failed with
/// [`NO_ANSWER`], so a stage does not wait forever for an agent that went away.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The code of an attempt the portal gave up on (a later report from the agent still wins).
pub const NO_ANSWER: &str = "no-answer";

/// The default stages of a rollout: everyone at once.
pub const DEFAULT_STAGES: [i64; 1] = [100];

/// The default failure threshold (percent of a stage's agents).
pub const DEFAULT_MAX_FAILURE_PCT: i64 = 20;

/// What an operator can do to a rollout under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// No new updates are sent (a running rollout).
    Pause,
    /// Go on (a paused rollout).
    Resume,
    /// Stop for good (a running or paused rollout).
    Cancel,
}

impl Steer {
    pub const ALL: [Steer; 3] = [Steer::Pause, Steer::Resume, Steer::Cancel];

    /// The verb of its route and button (`POST /rollouts/{id}/<verb>`).
    pub fn verb(self) -> &'static str {
        match self {
            Steer::Pause => "pause",
            Steer::Resume => "resume",
            Steer::Cancel => "cancel",
        }
    }

    /// Whether a rollout in `state` can be steered this way.
    pub fn applies_to(self, state: RolloutState) -> bool {
        match self {
            Steer::Pause => state == RolloutState::Running,
            Steer::Resume => state == RolloutState::Paused,
            Steer::Cancel => matches!(state, RolloutState::Running | RolloutState::Paused),
        }
    }
}

/// Why a rollout operation was refused or failed. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("release_id: there is no release {0}; GET /api/v1/releases lists them")]
    UnknownRelease(i64),
    #[error("there is no rollout {0} you can see; GET /api/v1/rollouts lists them")]
    UnknownRollout(i64),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Scope(String),
    #[error("{0}")]
    NoEligible(String),
    #[error("{0}")]
    State(String),
}

impl From<StoreError> for RolloutError {
    fn from(e: StoreError) -> Self {
        RolloutError::Op(OpError::Store(e))
    }
}

/// What an agent's hello said about updates, and its latest attempt.
#[derive(Debug, Clone, Default)]
pub struct UpdateFacts {
    pub target: Option<String>,
    pub updatable: bool,
    pub latest: Option<UpdateRow>,
}

/// What a person asks for.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub release_id: i64,
    pub scope: RolloutScope,
    pub stages: Option<Vec<i64>>,
    pub max_failure_pct: Option<i64>,
}

/// A rollout with its agents and their attempts.
#[derive(Debug, Clone)]
pub struct RolloutInfo {
    pub row: RolloutRow,
    /// Eligible agents in order, then the skipped ones.
    pub agents: Vec<RolloutAgent>,
    /// The attempts the rollout issued, by agent id.
    pub updates: HashMap<String, UpdateRow>,
}

impl RolloutInfo {
    /// How many eligible agents there are and how many are in each state (`not_started` for none yet).
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        let mut add = |k: &'static str| match out.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => out.push((k, 1)),
        };
        for a in self.agents.iter().filter(|a| a.position.is_some()) {
            match self.updates.get(&a.agent_id) {
                Some(u) => add(u.state.as_str()),
                None => add("not_started"),
            }
        }
        out
    }

    pub fn eligible(&self) -> usize {
        self.agents.iter().filter(|a| a.position.is_some()).count()
    }

    pub fn skipped(&self) -> usize {
        self.agents.len() - self.eligible()
    }
}

/// How far an agent's update went: pending < downloading < installed < any final state.
fn rank(s: UpdateState) -> u8 {
    match s {
        UpdateState::Pending => 0,
        UpdateState::Downloading => 1,
        UpdateState::Installed => 2,
        _ => 3,
    }
}

/// Whether an attempt at `cur` (with `cur_code`) moves to `new`: only forward, and a final state is kept
/// except the portal's own give-up ([`NO_ANSWER`]), which the agent's word overrides.
pub fn moves_to(cur: UpdateState, cur_code: Option<&str>, new: UpdateState) -> bool {
    if cur == new {
        return false;
    }
    if cur.is_final() {
        return cur_code == Some(NO_ANSWER) && new != UpdateState::Pending;
    }
    rank(new) > rank(cur)
}

/// The history line of an attempt's step: `update 1.2.0: installed`, `update 1.2.0: rolled back
/// (crashed-at-start: …)`.
pub fn step_text(
    version: &str,
    state: UpdateState,
    code: Option<&str>,
    reason: Option<&str>,
) -> String {
    let label = match state {
        UpdateState::RolledBack => "rolled back",
        other => other.as_str(),
    };
    let why = match (code, reason) {
        (Some(c), Some(r)) => format!(" ({c}: {r})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(r)) => format!(" ({r})"),
        (None, None) => String::new(),
    };
    format!("update {version}: {label}{why}")
}

/// Why an agent is not updated by a rollout of `release`, or `None` when it is eligible.
pub fn skip_reason(
    c: &Candidate,
    release: &releases::ReleaseRow,
    busy: Option<Option<i64>>,
) -> Option<String> {
    if !matches!(c.status.as_str(), "active" | "deactivation_pending") {
        return Some(format!("not active (its subscription is {})", c.status));
    }
    let Some(target) = &c.target else {
        return Some("has not reported its target (it runs a version older than updates, or never connected); update it by hand once".into());
    };
    if *target != release.target {
        return Some(format!(
            "runs {target}, but the release is for {}",
            release.target
        ));
    }
    if !c.updatable {
        return Some("cannot update itself: it was not started by `outpost-agent launch` (install the agent's package, which does)".into());
    }
    let Some(running) = &c.version else {
        return Some("has not reported its version".into());
    };
    let offered: Option<Version> = release.version.parse().ok();
    match (running.parse::<Version>(), offered) {
        (Ok(r), Some(o)) => {
            if release.rollback {
                if r == o {
                    return Some(format!("already runs {running}"));
                }
            } else if r >= o {
                return Some(format!(
                    "already runs {running}, not older than {} (only a release marked rollback goes back)",
                    release.version
                ));
            }
        }
        (Err(_), _) => {
            return Some(format!(
                "reports version {running:?}, which is not a version this portal can compare"
            ))
        }
        (_, None) => {
            if *running == release.version {
                return Some(format!("already runs {running}"));
            }
        }
    }
    if let Some(rollout) = busy {
        return Some(match rollout {
            Some(r) => format!("an update is already under way (rollout {r})"),
            None => "an update is already under way".into(),
        });
    }
    None
}

/// Whether the caller sees the rollout (its agent, group or whole company).
async fn sees(app: &App, caller: &Caller, r: &RolloutRow) -> Result<bool, OpError> {
    Ok(match &r.scope {
        RolloutScope::Fleet => caller.scope.companies.contains(&r.company_id),
        RolloutScope::Group(g) => caller.scope.sees_group(r.company_id, *g),
        RolloutScope::Agent(a) => {
            app.sees_agent(caller, a).await? || caller.scope.companies.contains(&r.company_id)
        }
    })
}

impl App {
    /// Starts a rollout (see the module's documentation) and issues its first stage.
    pub async fn create_rollout(
        &self,
        caller: &Caller,
        req: &RolloutRequest,
        actor: &Actor,
    ) -> Result<RolloutInfo, RolloutError> {
        let stages = rollout::check_stages(req.stages.as_deref().unwrap_or(&DEFAULT_STAGES))?;
        let max_failure_pct =
            rollout::check_threshold(req.max_failure_pct.unwrap_or(DEFAULT_MAX_FAILURE_PCT))?;
        if matches!(req.scope, RolloutScope::Agent(_)) && stages != [100] {
            return Err(RolloutError::Scope(
                "stages: an update of one agent has the single stage [100]; leave stages out"
                    .into(),
            ));
        }
        let mut conn = self.store().conn().await?;
        let release = releases::get(&mut conn, req.release_id)
            .await?
            .ok_or(RolloutError::UnknownRelease(req.release_id))?;
        let (company, candidates) = match &req.scope {
            RolloutScope::Agent(a) => {
                let Some((company, _)) = groups::agent_place(&mut conn, a).await? else {
                    return Err(OpError::UnknownAgent(a.clone()).into());
                };
                if !self.sees_agent(caller, a).await? {
                    return Err(OpError::UnknownAgent(a.clone()).into());
                }
                let company = company.ok_or_else(|| {
                    RolloutError::Scope(format!(
                        "agent {a} belongs to no company; move it to one before updating it"
                    ))
                })?;
                (
                    company,
                    store::candidates(&mut conn, company, None, Some(a)).await?,
                )
            }
            RolloutScope::Group(g) => {
                let Some(group) = groups::get(&mut conn, *g, self.now()).await? else {
                    return Err(OpError::UnknownGroup(*g).into());
                };
                if !caller.scope.sees_group(group.company_id, group.id) {
                    return Err(OpError::UnknownGroup(*g).into());
                }
                let all = groups::with_descendants(&mut conn, *g).await?;
                (
                    group.company_id,
                    store::candidates(&mut conn, group.company_id, Some(&all), None).await?,
                )
            }
            RolloutScope::Fleet => {
                let company = caller
                    .company_id
                    .filter(|c| caller.scope.companies.contains(c))
                    .ok_or_else(|| {
                        OpError::Forbidden(
                            "only a company admin may roll a release out to the whole fleet; pick a group or an agent".into(),
                        )
                    })?;
                (
                    company,
                    store::candidates(&mut conn, company, None, None).await?,
                )
            }
        };
        let busy: HashMap<String, Option<i64>> =
            store::busy_agents(&mut conn).await?.into_iter().collect();
        let mut eligible = Vec::new();
        let mut skipped = Vec::new();
        for c in &candidates {
            match skip_reason(c, &release, busy.get(&c.id).copied()) {
                None => eligible.push(c),
                Some(reason) => skipped.push((c, reason)),
            }
        }
        if eligible.is_empty() {
            let on_target = candidates
                .iter()
                .any(|c| c.target.as_deref() == Some(release.target.as_str()));
            let message = if candidates.is_empty() {
                "there is no agent in the scope; pick another group or agent".to_owned()
            } else if !on_target {
                format!(
                    "release {} is for {} but no agent in the scope runs that target; pick the release for their target",
                    release.id, release.target
                )
            } else {
                let why: Vec<String> = skipped
                    .iter()
                    .take(5)
                    .map(|(c, r)| format!("{}: {r}", c.name))
                    .collect();
                format!(
                    "no agent in the scope can take release {} ({} for {}): {}",
                    release.id,
                    release.version,
                    release.target,
                    why.join("; ")
                )
            };
            return Err(RolloutError::NoEligible(message));
        }
        drop(conn);
        let mut tx = self.store().begin().await?;
        let now = self.now();
        let id = store::insert(
            &mut tx,
            &NewRollout {
                company_id: company,
                release_id: release.id,
                version: &release.version,
                target: &release.target,
                scope: &req.scope,
                stages: &stages,
                max_failure_pct,
                created_by: actor.as_str(),
            },
            now,
        )
        .await?;
        let ids: Vec<String> = eligible.iter().map(|c| c.id.clone()).collect();
        let names: HashMap<&str, &str> = eligible
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        for (position, agent) in rollout::order(id, &ids).iter().enumerate() {
            store::insert_agent(
                &mut tx,
                id,
                &RolloutAgent {
                    agent_id: agent.clone(),
                    agent_name: names.get(agent.as_str()).copied().unwrap_or("").to_owned(),
                    position: Some(position),
                    skipped_reason: None,
                },
            )
            .await?;
        }
        for (c, reason) in &skipped {
            store::insert_agent(
                &mut tx,
                id,
                &RolloutAgent {
                    agent_id: c.id.clone(),
                    agent_name: c.name.clone(),
                    position: None,
                    skipped_reason: Some(reason.clone()),
                },
            )
            .await?;
        }
        let stages_text: Vec<String> = stages.iter().map(|s| format!("{s}%")).collect();
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "rollout-created",
                actor: actor.as_str(),
                details: &format!(
                    "rollout {id}: release {} ({} for {}) to {}; stages {}, pause above {}% failures; {} agents eligible, {} skipped",
                    release.id,
                    release.version,
                    release.target,
                    scope_text(&req.scope),
                    stages_text.join(", "),
                    max_failure_pct,
                    eligible.len(),
                    skipped.len()
                ),
                address: None,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(rollout = id, release = release.id, version = %release.version, eligible = eligible.len(),
            skipped = skipped.len(), "rollout started");
        if let Err(e) = self.drive_rollouts().await {
            warn!(rollout = id, error = %e, "first stage not sent yet; the sweeper's next tick sends it");
        }
        self.rollout_info(id).await
    }

    async fn rollout_info(&self, id: i64) -> Result<RolloutInfo, RolloutError> {
        let mut conn = self.store().conn().await?;
        let row = store::get(&mut conn, id)
            .await?
            .ok_or(RolloutError::UnknownRollout(id))?;
        let agents = store::agents_of(&mut conn, id).await?;
        let updates = store::updates_of_rollout(&mut conn, id)
            .await?
            .into_iter()
            .map(|u| (u.agent_id.clone(), u))
            .collect();
        Ok(RolloutInfo {
            row,
            agents,
            updates,
        })
    }

    /// One rollout the caller sees.
    pub async fn rollout(&self, caller: &Caller, id: i64) -> Result<RolloutInfo, RolloutError> {
        let info = self.rollout_info(id).await?;
        if !sees(self, caller, &info.row).await? {
            return Err(RolloutError::UnknownRollout(id));
        }
        Ok(info)
    }

    /// The rollouts the caller sees, newest first.
    pub async fn rollouts(&self, caller: &Caller) -> Result<Vec<RolloutInfo>, RolloutError> {
        let mut companies: Vec<i64> = caller.company_id.into_iter().collect();
        companies.extend(caller.scope.companies.iter().copied());
        if caller.company_id.is_none() {
            // Support engineers: the companies of what their grants cover.
            let mut conn = self.store().conn().await?;
            for a in &caller.scope.agents {
                if let Some((Some(c), _)) = groups::agent_place(&mut conn, a).await? {
                    companies.push(c);
                }
            }
            for g in &caller.scope.groups {
                if let Some(row) = groups::get(&mut conn, *g, self.now()).await? {
                    companies.push(row.company_id);
                }
            }
        }
        companies.sort_unstable();
        companies.dedup();
        let rows = {
            let mut conn = self.store().conn().await?;
            store::of_companies(&mut conn, &companies).await?
        };
        let mut out = Vec::new();
        for row in rows {
            if sees(self, caller, &row).await? {
                out.push(self.rollout_info(row.id).await?);
            }
        }
        Ok(out)
    }

    async fn rollout_line(&self, row: &RolloutRow, action: &str, actor: &Actor, details: String) {
        let written = async {
            let mut conn = self.store().conn().await?;
            history::append_account(
                &mut conn,
                AccountLine {
                    company: Some(row.company_id),
                    action,
                    actor: actor.as_str(),
                    details: &details,
                    address: None,
                },
                self.now(),
            )
            .await
        };
        if let Err(e) = written.await {
            warn!(rollout = row.id, error = %e, "rollout history line not written");
        }
    }

    /// Pauses, resumes or cancels a rollout (see [`Steer`]). Pausing and cancelling stop new updates;
    /// those under way finish. Resuming a rollout paused over its failure threshold accepts its stage's
    /// failures and goes on with the next stage (or is done after the last).
    pub async fn steer_rollout(
        &self,
        caller: &Caller,
        id: i64,
        steer: Steer,
        actor: &Actor,
    ) -> Result<RolloutInfo, RolloutError> {
        let info = self.rollout(caller, id).await?;
        let r = &info.row;
        if !steer.applies_to(r.state) {
            return Err(RolloutError::State(match steer {
                Steer::Pause => format!(
                    "rollout {id} is {}, not running, so it cannot be paused",
                    r.state.as_str()
                ),
                Steer::Resume => format!(
                    "rollout {id} is {}, not paused, so there is nothing to resume",
                    r.state.as_str()
                ),
                Steer::Cancel => format!("rollout {id} is {} already", r.state.as_str()),
            }));
        }
        let pause_reason = format!("paused by {}", actor.as_str());
        let to = match steer {
            Steer::Pause => (RolloutState::Paused, r.stage, Some(pause_reason.as_str())),
            Steer::Resume => {
                let states = states_in_order(&info);
                let step = rollout::next_step(
                    &Progress {
                        stages: &r.stages,
                        stage: r.stage,
                        max_failure_pct: r.max_failure_pct,
                        states: &states,
                    },
                    true,
                );
                match step {
                    Step::Advance { next } => (RolloutState::Running, next, None),
                    Step::Done => (RolloutState::Done, r.stage, None),
                    _ => (RolloutState::Running, r.stage, None),
                }
            }
            Steer::Cancel => (RolloutState::Cancelled, r.stage, r.pause_reason.as_deref()),
        };
        let mut conn = self.store().conn().await?;
        if !store::transition(&mut conn, id, (r.state, r.stage), to, self.now()).await? {
            return Err(RolloutError::State(format!(
                "rollout {id} changed meanwhile; look at it again"
            )));
        }
        drop(conn);
        let (action, text) = match steer {
            Steer::Pause => ("rollout-paused", format!("rollout {id} paused")),
            Steer::Resume => ("rollout-resumed", format!("rollout {id} resumed")),
            Steer::Cancel => (
                "rollout-cancelled",
                format!("rollout {id} cancelled; updates under way finish"),
            ),
        };
        self.rollout_line(r, action, actor, text).await;
        if steer == Steer::Resume {
            self.drive_rollouts().await?;
        }
        self.rollout_info(id).await
    }

    /// The agent's update attempts, newest first.
    pub async fn agent_updates(
        &self,
        agent: &AgentId,
        limit: u32,
    ) -> Result<Vec<UpdateRow>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(store::updates_of_agent(&mut conn, agent.as_str(), limit).await?)
    }

    /// The agent's reported target, whether it can update itself, and its latest update attempt.
    pub async fn update_facts(&self, agent: &AgentId) -> Result<UpdateFacts, OpError> {
        let mut conn = self.store().conn().await?;
        let (target, updatable) = store::agent_target(&mut conn, agent.as_str())
            .await?
            .unwrap_or((None, false));
        let latest = store::updates_of_agent(&mut conn, agent.as_str(), 1)
            .await?
            .into_iter()
            .next();
        Ok(UpdateFacts {
            target,
            updatable,
            latest,
        })
    }

    /// Fails attempts silent for [`UPDATE_TIMEOUT`], then moves every running rollout on: issues its
    /// stage's updates, advances, pauses or finishes it. Returns how many commands it sent.
    pub async fn drive_rollouts(&self) -> Result<usize, OpError> {
        self.fail_silent_updates().await?;
        let ids = {
            let mut conn = self.store().conn().await?;
            store::running(&mut conn).await?
        };
        let mut issued = 0;
        for id in ids {
            match self.drive_one(id).await {
                Ok(n) => issued += n,
                Err(e) => {
                    warn!(rollout = id, error = %e, "rollout not driven; retrying at the next tick")
                }
            }
        }
        Ok(issued)
    }

    async fn fail_silent_updates(&self) -> Result<(), OpError> {
        let window = chrono::Duration::from_std(UPDATE_TIMEOUT).unwrap_or(chrono::Duration::MAX);
        let silent = {
            let mut conn = self.store().conn().await?;
            store::unfinished_before(&mut conn, self.now() - window).await?
        };
        let minutes = UPDATE_TIMEOUT.as_secs() / 60;
        for u in silent {
            let reason = format!("no answer from the agent within {minutes} minutes");
            self.set_update_state(
                &u,
                UpdateState::Failed,
                None,
                Some(&reason),
                Some(NO_ANSWER),
            )
            .await?;
            info!(agent = %u.agent_id, update = u.id, version = %u.version, "update failed: no answer from the agent");
        }
        Ok(())
    }

    async fn drive_one(&self, id: i64) -> Result<usize, RolloutError> {
        let mut issued = 0;
        // Each pass moves at most one stage on; a rollout has at most 100 stages.
        for _ in 0..=101 {
            let info = self.rollout_info(id).await?;
            let r = &info.row;
            if r.state != RolloutState::Running {
                return Ok(issued);
            }
            let states = states_in_order(&info);
            let single = matches!(r.scope, RolloutScope::Agent(_));
            let step = rollout::next_step(
                &Progress {
                    stages: &r.stages,
                    stage: r.stage,
                    max_failure_pct: r.max_failure_pct,
                    states: &states,
                },
                single,
            );
            let now = self.now();
            match step {
                Step::Wait => return Ok(issued),
                Step::Issue(positions) => {
                    let order: Vec<&RolloutAgent> = info
                        .agents
                        .iter()
                        .filter(|a| a.position.is_some())
                        .collect();
                    for p in positions {
                        if let Some(a) = order.get(p) {
                            if self.issue(r, a).await? {
                                issued += 1;
                            }
                        }
                    }
                    return Ok(issued);
                }
                Step::Advance { next } => {
                    let mut conn = self.store().conn().await?;
                    if !store::transition(
                        &mut conn,
                        id,
                        (RolloutState::Running, r.stage),
                        (RolloutState::Running, next, None),
                        now,
                    )
                    .await?
                    {
                        return Ok(issued);
                    }
                    info!(
                        rollout = id,
                        stage = next + 1,
                        "rollout advanced to its next stage"
                    );
                }
                Step::Pause { reason, .. } => {
                    let mut conn = self.store().conn().await?;
                    if store::transition(
                        &mut conn,
                        id,
                        (RolloutState::Running, r.stage),
                        (RolloutState::Paused, r.stage, Some(&reason)),
                        now,
                    )
                    .await?
                    {
                        drop(conn);
                        warn!(rollout = id, reason = %reason, "rollout paused");
                        self.rollout_line(
                            r,
                            "rollout-paused",
                            &Actor::system(),
                            format!("rollout {id} paused: {reason}"),
                        )
                        .await;
                    }
                    return Ok(issued);
                }
                Step::Done => {
                    let mut conn = self.store().conn().await?;
                    if store::transition(
                        &mut conn,
                        id,
                        (RolloutState::Running, r.stage),
                        (RolloutState::Done, r.stage, None),
                        now,
                    )
                    .await?
                    {
                        drop(conn);
                        let counts: Vec<String> = info
                            .counts()
                            .iter()
                            .map(|(k, n)| format!("{n} {k}"))
                            .collect();
                        info!(rollout = id, "rollout done");
                        self.rollout_line(
                            r,
                            "rollout-done",
                            &Actor::system(),
                            format!("rollout {id} done: {}", counts.join(", ")),
                        )
                        .await;
                    }
                    return Ok(issued);
                }
            }
        }
        Ok(issued)
    }

    /// Sends the rollout's update to one agent: the attempt row first (once per agent and rollout), then
    /// the command. Whether a command was queued.
    async fn issue(&self, r: &RolloutRow, a: &RolloutAgent) -> Result<bool, RolloutError> {
        let now = self.now();
        let agent = AgentId::parse(&a.agent_id).ok();
        let row = match &agent {
            Some(id) => {
                let mut conn = self.store().conn().await?;
                agents::get(&mut conn, id).await?
            }
            None => None,
        };
        let (Some(agent), Some(row)) = (agent, row) else {
            // Deleted since this pass read the rollout: the deletion took the agent's place in the
            // rollout with it (nothing of a deleted agent is stored again); the next pass counts the
            // stages without it.
            info!(rollout = r.id, agent = %a.agent_id, "agent deleted during the rollout; left out");
            return Ok(false);
        };
        let inserted = {
            let mut conn = self.store().conn().await?;
            store::insert_update(
                &mut conn,
                &NewUpdate {
                    agent_id: agent.as_str(),
                    rollout_id: Some(r.id),
                    release_id: r.release_id,
                    version: &r.version,
                    from_version: row.version.as_deref(),
                    state: UpdateState::Pending,
                    reason: None,
                    code: None,
                    command_id: None,
                    stage: Some(r.stage),
                },
                now,
            )
            .await?
        };
        let Some(update_id) = inserted else {
            debug!(rollout = r.id, agent = %agent, "update already issued");
            return Ok(false);
        };
        let command = self
            .queue_command(
                &agent,
                Command::Update {
                    release_id: r.release_id,
                    version: r.version.clone(),
                },
            )
            .await?;
        let mut conn = self.store().conn().await?;
        store::set_command(&mut conn, update_id, command).await?;
        history::append(
            &mut conn,
            Line {
                agent: &agent,
                agent_name: &row.name,
                action: "update",
                actor: &r.created_by,
                details: &format!(
                    "update {}: sent (rollout {}, stage {} of {}, command {command})",
                    r.version,
                    r.id,
                    r.stage + 1,
                    r.stages.len()
                ),
            },
            now,
        )
        .await?;
        info!(rollout = r.id, agent = %agent, command_id = command, version = %r.version, "update sent");
        Ok(true)
    }

    /// Moves an attempt to `state` and writes the agent's history line.
    async fn set_update_state(
        &self,
        u: &UpdateRow,
        state: UpdateState,
        from_version: Option<&str>,
        reason: Option<&str>,
        code: Option<&str>,
    ) -> Result<(), OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        store::set_state(&mut tx, u.id, state, from_version, reason, code, now).await?;
        if let Ok(agent) = AgentId::parse(&u.agent_id) {
            if let Some(row) = agents::get(&mut tx, &agent).await? {
                history::append(
                    &mut tx,
                    Line {
                        agent: &agent,
                        agent_name: &row.name,
                        action: "update",
                        actor: "agent",
                        details: &step_text(&u.version, state, code, reason),
                    },
                    now,
                )
                .await?;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Applies an `update` report (whatever its data epoch): the attempt it belongs to (by command id,
    /// else the agent's latest at that version; a new one if there is none) moves to the reported state
    /// if that is forward. Then drives the rollouts.
    pub async fn apply_update_report(
        &self,
        agent: &AgentId,
        report: &UpdateReport,
    ) -> Result<(), OpError> {
        let existing = {
            let mut conn = self.store().conn().await?;
            let by_command = match report.command_id {
                Some(c) => store::update_by_command(&mut conn, agent, c).await?,
                None => None,
            };
            match by_command {
                Some(u) => Some(u),
                None => store::latest_for_version(&mut conn, agent, &report.version).await?,
            }
        };
        match existing {
            Some(u) => {
                if moves_to(u.state, u.code.as_deref(), report.state) {
                    self.set_update_state(
                        &u,
                        report.state,
                        Some(&report.from_version),
                        report.reason.as_deref(),
                        report.code.as_deref(),
                    )
                    .await?;
                    info!(agent = %agent, version = %report.version, state = %report.state, "update step");
                } else {
                    debug!(agent = %agent, version = %report.version, state = %report.state,
                        current = %u.state, "update report does not move the attempt on");
                }
            }
            None => {
                // An update the portal did not issue (or whose row is gone): recorded as reported.
                let now = self.now();
                let mut tx = self.store().begin().await?;
                store::insert_update(
                    &mut tx,
                    &NewUpdate {
                        agent_id: agent.as_str(),
                        rollout_id: None,
                        release_id: report.release_id.unwrap_or(0),
                        version: &report.version,
                        from_version: Some(&report.from_version),
                        state: report.state,
                        reason: report.reason.as_deref(),
                        code: report.code.as_deref(),
                        command_id: report.command_id,
                        stage: None,
                    },
                    now,
                )
                .await?;
                if let Some(row) = agents::get(&mut tx, agent).await? {
                    history::append(
                        &mut tx,
                        Line {
                            agent,
                            agent_name: &row.name,
                            action: "update",
                            actor: "agent",
                            details: &step_text(
                                &report.version,
                                report.state,
                                report.code.as_deref(),
                                report.reason.as_deref(),
                            ),
                        },
                        now,
                    )
                    .await?;
                }
                tx.commit().await.map_err(StoreError::from)?;
                info!(agent = %agent, version = %report.version, state = %report.state, "update step of an update the portal has no record of");
            }
        }
        self.drive_after_step(agent).await;
        Ok(())
    }

    /// Applies the acknowledgement of an `update` command to its attempt: failed (with the agent's
    /// message and code), or done: installed if it was not further. Then drives the rollouts.
    pub async fn apply_update_ack(&self, agent: &AgentId, ack: &Ack) -> Result<(), OpError> {
        let existing = {
            let mut conn = self.store().conn().await?;
            store::update_by_command(&mut conn, agent, ack.command_id).await?
        };
        let Some(u) = existing else {
            return Ok(());
        };
        let (state, reason, code) = match &ack.outcome {
            Outcome::Done => (UpdateState::Installed, None, None),
            Outcome::Failed { message, code } => {
                (UpdateState::Failed, Some(message.as_str()), code.as_deref())
            }
        };
        if moves_to(u.state, u.code.as_deref(), state) {
            self.set_update_state(&u, state, None, reason, code).await?;
        }
        self.drive_after_step(agent).await;
        Ok(())
    }

    /// Drives the rollouts after an agent's update step was stored; a failure is logged (the step is
    /// kept, and the sweeper's next tick drives again).
    async fn drive_after_step(&self, agent: &AgentId) {
        if let Err(e) = self.drive_rollouts().await {
            warn!(agent = %agent, error = %e, "rollouts not driven after the update step; the sweeper's next tick will");
        }
    }

    /// The version to confirm healthy to the agent (`PortalNotice::UpdateHealthy`), if its latest attempt
    /// is installed and the agent's hello said it runs that version.
    pub async fn update_to_confirm(&self, agent: &AgentId) -> Result<Option<String>, OpError> {
        let mut conn = self.store().conn().await?;
        let Some(latest) = store::updates_of_agent(&mut conn, agent.as_str(), 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        if latest.state != UpdateState::Installed {
            return Ok(None);
        }
        let running = agents::get(&mut conn, agent).await?.and_then(|a| a.version);
        Ok((running.as_deref() == Some(latest.version.as_str())).then_some(latest.version))
    }
}

/// The update state of each eligible agent, in the rollout's order.
fn states_in_order(info: &RolloutInfo) -> Vec<Option<UpdateState>> {
    info.agents
        .iter()
        .filter(|a| a.position.is_some())
        .map(|a| info.updates.get(&a.agent_id).map(|u| u.state))
        .collect()
}

/// A scope for people: `agent ag-…`, `group 4 and its sub-groups`, `the whole fleet`.
pub fn scope_text(scope: &RolloutScope) -> String {
    match scope {
        RolloutScope::Agent(a) => format!("agent {a}"),
        RolloutScope::Group(g) => format!("group {g} and its sub-groups"),
        RolloutScope::Fleet => "the whole fleet".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UpdateState as S;

    #[test]
    fn attempts_only_move_forward_and_the_portals_give_up_yields_to_the_agent() {
        assert!(moves_to(S::Pending, None, S::Downloading));
        assert!(moves_to(S::Downloading, None, S::Installed));
        assert!(moves_to(S::Installed, None, S::Committed));
        assert!(moves_to(S::Installed, None, S::RolledBack));
        assert!(!moves_to(S::Installed, None, S::Downloading));
        assert!(!moves_to(S::Committed, None, S::Failed));
        assert!(!moves_to(S::Failed, Some("hash-mismatch"), S::Failed));
        assert!(moves_to(S::Failed, Some(NO_ANSWER), S::Committed));
        assert!(!moves_to(S::Failed, Some(NO_ANSWER), S::Pending));
    }

    #[test]
    fn history_steps_read_as_the_issue_shows_them() {
        assert_eq!(
            step_text("1.2.0", S::Downloading, None, None),
            "update 1.2.0: downloading"
        );
        assert_eq!(
            step_text(
                "1.2.0",
                S::RolledBack,
                Some("crashed-at-start"),
                Some("exited 3 times")
            ),
            "update 1.2.0: rolled back (crashed-at-start: exited 3 times)"
        );
    }
}
