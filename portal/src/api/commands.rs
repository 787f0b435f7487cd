//! Operator routes on commands: send one (`ping`) and wait for its acknowledgement, list them, read one.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_cloud_link::protocol::Command;
use serde::Deserialize;

use super::agents::number;
use super::auth::Operator;
use super::error::AppError;
use super::views::CommandView;
use super::ApiState;
use crate::app::commands::MAX_WAIT;
use crate::app::{App, OpError};

#[derive(Debug, Deserialize)]
pub struct CommandBody {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    pub wait_ms: Option<String>,
}

/// `POST /agents/{id}/commands?wait_ms=N`: `200` once acknowledged, `202` if still pending after the wait.
pub async fn create(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    let id = App::parse_agent_id(&id)?;
    let Query(query) = query.map_err(AppError::from_query)?;
    let max_ms = u32::try_from(MAX_WAIT.as_millis()).unwrap_or(u32::MAX);
    let wait_ms = number("wait_ms", query.wait_ms.as_deref(), 0, max_ms)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let cmd = match body.kind.as_str() {
        "ping" => Command::Ping,
        other => {
            return Err(AppError::bad_request(
                "type",
                format!("{other:?} cannot be sent here; only \"ping\" (rename with PATCH /agents/{{id}}, clean up with POST /agents/{{id}}/cleanup)"),
            ))
        }
    };
    let row = state
        .app
        .run_command(&id, cmd, Duration::from_millis(u64::from(wait_ms)))
        .await?;
    let status = if row.status == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CommandView::from(&row))))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct CommandList {
    pub commands: Vec<CommandView>,
}

/// `GET /agents/{id}/commands?limit=N`: the most recent commands, newest first (default 50, at most 500).
pub async fn list(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CommandList>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Query(query) = query.map_err(AppError::from_query)?;
    let limit = number("limit", query.limit.as_deref(), 50, 500)?.max(1);
    let rows = state.app.recent_commands(&id, limit).await?;
    Ok(Json(CommandList {
        commands: rows.iter().map(CommandView::from).collect(),
    }))
}

pub async fn get(
    _: Operator,
    State(state): State<ApiState>,
    Path((id, cid)): Path<(String, String)>,
) -> Result<Json<CommandView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let cid: u64 = cid.parse().map_err(|_| OpError::UnknownCommand {
        agent: id.to_string(),
        command: 0,
    })?;
    let row = state.app.command(&id, cid).await?;
    Ok(Json(CommandView::from(&row)))
}
