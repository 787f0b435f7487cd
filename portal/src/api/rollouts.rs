//! Over-the-air update rollouts over HTTPS: `POST /rollouts` (a release to one agent, a group with its
//! sub-groups, or the company's whole fleet, in stages), `GET /rollouts`, `GET /rollouts/{id}` (each
//! agent's state and the skipped agents with why), `POST /rollouts/{id}/pause|resume|cancel`, and
//! `GET /agents/{id}/updates` (the agent's update attempts, newest first).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_cloud_link::enrollment::ApiError;
use serde::{Deserialize, Serialize};

use super::auth::Operator;
use super::error::AppError;
use super::views::time;
use super::ApiState;
use crate::app::rollouts::{RolloutError, RolloutInfo, RolloutRequest, Steer};
use crate::app::App;
use crate::rollout::covered;
use crate::store::rollouts::{RolloutScope, UpdateRow};

/// One update attempt as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    pub id: i64,
    pub version: String,
    pub from_version: Option<String>,
    pub state: &'static str,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub release_id: i64,
    pub rollout_id: Option<i64>,
    pub command_id: Option<u64>,
    pub created_at: String,
    /// When it last changed.
    pub at: String,
}

impl From<&UpdateRow> for UpdateView {
    fn from(u: &UpdateRow) -> Self {
        UpdateView {
            id: u.id,
            version: u.version.clone(),
            from_version: u.from_version.clone(),
            state: u.state.as_str(),
            reason: u.reason.clone(),
            code: u.code.clone(),
            release_id: u.release_id,
            rollout_id: u.rollout_id,
            command_id: u.command_id,
            created_at: time(u.created_at),
            at: time(u.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ScopeView {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct RolloutAgentView {
    pub agent_id: String,
    pub name: String,
    pub position: usize,
    /// The stage (1-based) that covers it.
    pub stage: usize,
    /// `not_started` until its stage sends the update.
    pub state: &'static str,
    pub reason: Option<String>,
    pub code: Option<String>,
    pub command_id: Option<u64>,
    pub at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SkippedView {
    pub agent_id: String,
    pub name: String,
    pub reason: String,
}

/// A rollout as the API shows it (`agents` and `skipped_agents` only on `GET /rollouts/{id}` and the
/// answers of the actions).
#[derive(Debug, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub release_id: i64,
    pub version: String,
    pub target: String,
    pub scope: ScopeView,
    pub stages: Vec<u8>,
    pub max_failure_pct: u8,
    /// The current stage, 1-based.
    pub stage: usize,
    pub state: &'static str,
    pub pause_reason: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub eligible: usize,
    pub skipped: usize,
    /// How many eligible agents are in each update state (`not_started` included).
    pub counts: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<RolloutAgentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_agents: Option<Vec<SkippedView>>,
}

impl RolloutView {
    pub fn new(info: &RolloutInfo, detailed: bool) -> Self {
        let r = &info.row;
        let eligible = info.eligible();
        let stage_of = |position: usize| {
            r.stages
                .iter()
                .position(|pct| position < covered(eligible, *pct))
                .map_or(r.stages.len(), |i| i + 1)
        };
        let agents = detailed.then(|| {
            info.agents
                .iter()
                .filter_map(|a| {
                    let position = a.position?;
                    let u = info.updates.get(&a.agent_id);
                    Some(RolloutAgentView {
                        agent_id: a.agent_id.clone(),
                        name: a.agent_name.clone(),
                        position,
                        stage: stage_of(position),
                        state: u.map_or("not_started", |u| u.state.as_str()),
                        reason: u.and_then(|u| u.reason.clone()),
                        code: u.and_then(|u| u.code.clone()),
                        command_id: u.and_then(|u| u.command_id),
                        at: u.map(|u| time(u.updated_at)),
                    })
                })
                .collect()
        });
        let skipped_agents = detailed.then(|| {
            info.agents
                .iter()
                .filter_map(|a| {
                    Some(SkippedView {
                        agent_id: a.agent_id.clone(),
                        name: a.agent_name.clone(),
                        reason: a.skipped_reason.clone()?,
                    })
                })
                .collect()
        });
        let (agent_id, group_id) = match &r.scope {
            RolloutScope::Agent(a) => (Some(a.clone()), None),
            RolloutScope::Group(g) => (None, Some(*g)),
            RolloutScope::Fleet => (None, None),
        };
        RolloutView {
            id: r.id,
            release_id: r.release_id,
            version: r.version.clone(),
            target: r.target.clone(),
            scope: ScopeView {
                kind: r.scope.kind(),
                agent_id,
                group_id,
            },
            stages: r.stages.clone(),
            max_failure_pct: r.max_failure_pct,
            stage: r.stage + 1,
            state: r.state.as_str(),
            pause_reason: r.pause_reason.clone(),
            created_by: r.created_by.clone(),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
            eligible,
            skipped: info.skipped(),
            counts: info
                .counts()
                .into_iter()
                .map(|(k, n)| (k.to_owned(), serde_json::Value::from(n)))
                .collect(),
            agents,
            skipped_agents,
        }
    }
}

/// What a rollout route answers instead of success.
#[derive(Debug)]
pub struct RolloutApiError(pub RolloutError);

impl From<RolloutError> for RolloutApiError {
    fn from(e: RolloutError) -> Self {
        RolloutApiError(e)
    }
}

impl From<AppError> for RolloutApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Op(op) => RolloutApiError(RolloutError::Op(op)),
            other => RolloutApiError(RolloutError::Scope(other.to_string())),
        }
    }
}

impl IntoResponse for RolloutApiError {
    fn into_response(self) -> Response {
        let e = match self.0 {
            RolloutError::Op(op) => return AppError::Op(op).into_response(),
            other => other,
        };
        let (status, code) = match &e {
            RolloutError::Op(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            RolloutError::UnknownRelease(_) | RolloutError::Plan(_) | RolloutError::Scope(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            RolloutError::UnknownRollout(_) => (StatusCode::NOT_FOUND, "not_found"),
            RolloutError::NoEligible(_) => (StatusCode::CONFLICT, "no_eligible_agents"),
            RolloutError::State(_) => (StatusCode::CONFLICT, "invalid_state"),
        };
        (
            status,
            Json(ApiError {
                error: code.to_owned(),
                message: e.to_string(),
            }),
        )
            .into_response()
    }
}

fn rollout_id(raw: &str) -> Result<i64, RolloutApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(RolloutApiError(RolloutError::UnknownRollout(0)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub release_id: Option<i64>,
    pub agent_id: Option<String>,
    pub group_id: Option<i64>,
    #[serde(default)]
    pub fleet: bool,
    pub stages: Option<Vec<i64>>,
    pub max_failure_pct: Option<i64>,
}

/// Checks the body's shape: a release and exactly one scope.
pub fn request_of(body: CreateBody) -> Result<RolloutRequest, RolloutError> {
    let release_id = body.release_id.ok_or_else(|| {
        RolloutError::Scope(
            "release_id: give the id of the release to roll out (GET /api/v1/releases lists them)"
                .into(),
        )
    })?;
    let scope = match (body.agent_id, body.group_id, body.fleet) {
        (Some(a), None, false) => RolloutScope::Agent(
            App::parse_agent_id(&a)
                .map_err(RolloutError::Op)?
                .to_string(),
        ),
        (None, Some(g), false) => RolloutScope::Group(g),
        (None, None, true) => RolloutScope::Fleet,
        _ => {
            return Err(RolloutError::Scope(
                "scope: give exactly one of agent_id, group_id or \"fleet\": true".into(),
            ))
        }
    };
    Ok(RolloutRequest {
        release_id,
        scope,
        stages: body.stages,
        max_failure_pct: body.max_failure_pct,
    })
}

/// `POST /rollouts`: starts a rollout and sends its first stage; 201 with the rollout.
pub async fn create(
    op: Operator,
    State(state): State<ApiState>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<RolloutView>), RolloutApiError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let req = request_of(body)?;
    let info = state
        .app
        .create_rollout(&op.caller, &req, &op.actor)
        .await?;
    Ok((StatusCode::CREATED, Json(RolloutView::new(&info, true))))
}

/// `GET /rollouts`: the rollouts the caller sees, newest first.
pub async fn list(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, RolloutApiError> {
    let list: Vec<RolloutView> = state
        .app
        .rollouts(&op.caller)
        .await?
        .iter()
        .map(|i| RolloutView::new(i, false))
        .collect();
    Ok(Json(serde_json::json!({ "rollouts": list })))
}

/// `GET /rollouts/{id}`.
pub async fn get(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, RolloutApiError> {
    let info = state.app.rollout(&op.caller, rollout_id(&id)?).await?;
    Ok(Json(RolloutView::new(&info, true)))
}

/// `POST /rollouts/{id}/pause`, `…/resume` and `…/cancel`.
async fn steer(
    op: Operator,
    state: ApiState,
    id: &str,
    steer: Steer,
) -> Result<Json<RolloutView>, RolloutApiError> {
    let info = state
        .app
        .steer_rollout(&op.caller, rollout_id(id)?, steer, &op.actor)
        .await?;
    Ok(Json(RolloutView::new(&info, true)))
}

pub async fn pause(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, RolloutApiError> {
    steer(op, state, &id, Steer::Pause).await
}

pub async fn resume(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, RolloutApiError> {
    steer(op, state, &id, Steer::Resume).await
}

pub async fn cancel(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, RolloutApiError> {
    steer(op, state, &id, Steer::Cancel).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesQuery {
    pub limit: Option<String>,
}

/// `GET /agents/{id}/updates[?limit=N]`: the agent's update attempts, newest first (50 by default).
pub async fn agent_updates(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<UpdatesQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Query(q) = query.map_err(AppError::from_query)?;
    let limit = super::agents::number("limit", q.limit.as_deref(), 50, 500)?;
    let id = App::parse_agent_id(&id)?;
    state.app.agent(&id).await?;
    let updates: Vec<UpdateView> = state
        .app
        .agent_updates(&id, limit)
        .await?
        .iter()
        .map(UpdateView::from)
        .collect();
    Ok(Json(serde_json::json!({ "updates": updates })))
}
