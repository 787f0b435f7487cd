//! `POST /agents/{id}/renewal`: a person's decision on the renewal of a yearly or quarterly agent
//! (`{"decision": "confirm" | "deactivate"}`); answers the agent as `GET /agents/{id}` shows it.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Operator;
use super::error::AppError;
use super::views::AgentView;
use super::ApiState;
use crate::app::App;
use crate::lifecycle::Decision;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `confirm` or `deactivate`.
    pub decision: String,
}

/// Confirms the renewal (the current renewal date; after an automatic renewal, that renewal) or requests
/// the deactivation at the end of the contracted period. 409 `conflict` for a monthly or prepaid agent,
/// or one that is not active.
pub async fn decide(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<Json<AgentView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let choice = body
        .decision
        .trim()
        .parse::<Decision>()
        .map_err(|e| AppError::bad_request("decision", e.to_string()))?;
    state.app.decide_renewal(&id, choice, &op.actor).await?;
    Ok(Json(
        super::agents::view(&state.app, &state.app.agent_item(&id).await?).await?,
    ))
}
