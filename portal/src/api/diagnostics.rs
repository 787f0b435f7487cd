//! Diagnostics routes: `POST /agents/{id}/restart` (`202` with the queued command), and the agent's
//! recent log lines (`GET /agents/{id}/logs?lines=N`) and health snapshot (`GET /agents/{id}/health`),
//! asked live: each waits up to 10 s (`wait_ms`, at most 10000) for the agent's answer; `409`
//! `agent_offline` when it is not connected, `504` `agent_timeout` when it does not answer in time, `502`
//! `agent_failed` when it answers with an error.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_cloud_link::diagnostics::{Health, LogLines, MAX_LOG_LINES};
use outpost_cloud_link::enrollment::ApiError;
use serde::Deserialize;

use super::agents::number;
use super::auth::Operator;
use super::error::AppError;
use super::views::CommandView;
use super::ApiState;
use crate::app::diagnostics::{DiagnosticsError, DEFAULT_LOG_LINES, DIAGNOSTICS_WAIT};
use crate::app::App;

/// The status and code of a failure the agent caused (none for the portal's own errors).
pub fn status_and_code(e: &DiagnosticsError) -> Option<(StatusCode, &'static str)> {
    Some(match e {
        DiagnosticsError::Op(_) => return None,
        DiagnosticsError::Offline(_) => (StatusCode::CONFLICT, "agent_offline"),
        DiagnosticsError::NoAnswer { .. } => (StatusCode::GATEWAY_TIMEOUT, "agent_timeout"),
        DiagnosticsError::Failed { .. } => (StatusCode::BAD_GATEWAY, "agent_failed"),
        DiagnosticsError::Unreadable { .. } => (StatusCode::BAD_GATEWAY, "agent_answer_unreadable"),
    })
}

/// A failure of the logs and health routes.
pub enum DiagError {
    App(AppError),
    Diag(DiagnosticsError),
}

impl IntoResponse for DiagError {
    fn into_response(self) -> Response {
        match self {
            DiagError::App(e) => e.into_response(),
            DiagError::Diag(DiagnosticsError::Op(op)) => AppError::Op(op).into_response(),
            DiagError::Diag(other) => {
                let (status, code) = status_and_code(&other)
                    .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, "internal"));
                let body = ApiError {
                    error: code.to_owned(),
                    message: other.to_string(),
                };
                (status, Json(body)).into_response()
            }
        }
    }
}

impl From<AppError> for DiagError {
    fn from(e: AppError) -> Self {
        DiagError::App(e)
    }
}

impl From<DiagnosticsError> for DiagError {
    fn from(e: DiagnosticsError) -> Self {
        DiagError::Diag(e)
    }
}

#[derive(Debug, Deserialize)]
pub struct DiagQuery {
    pub lines: Option<String>,
    pub wait_ms: Option<String>,
}

fn wait(q: &DiagQuery) -> Result<Duration, AppError> {
    let max = u32::try_from(DIAGNOSTICS_WAIT.as_millis()).unwrap_or(u32::MAX);
    let ms = number("wait_ms", q.wait_ms.as_deref(), max, max)?;
    Ok(Duration::from_millis(u64::from(ms)))
}

/// `POST /agents/{id}/restart`: `202` with the queued command.
pub async fn restart(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    let id = App::parse_agent_id(&id)?;
    let row = state.app.restart_agent(&id, &op.actor).await?;
    Ok((StatusCode::ACCEPTED, Json(CommandView::from(&row))))
}

/// `GET /agents/{id}/logs?lines=N&wait_ms=M`: the agent's most recent lines, oldest first.
pub async fn logs(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<DiagQuery>, QueryRejection>,
) -> Result<Json<LogLines>, DiagError> {
    let id = App::parse_agent_id(&id).map_err(AppError::from)?;
    let Query(q) = query.map_err(AppError::from_query)?;
    let lines = number(
        "lines",
        q.lines.as_deref(),
        DEFAULT_LOG_LINES,
        MAX_LOG_LINES,
    )?
    .max(1);
    let wait = wait(&q)?;
    let logs = state.app.agent_logs(&id, lines, wait).await?;
    Ok(Json(logs))
}

/// `GET /agents/{id}/health?wait_ms=M`.
pub async fn health(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<DiagQuery>, QueryRejection>,
) -> Result<Json<Health>, DiagError> {
    let id = App::parse_agent_id(&id).map_err(AppError::from)?;
    let Query(q) = query.map_err(AppError::from_query)?;
    let wait = wait(&q)?;
    let health = state.app.agent_health(&id, wait).await?;
    Ok(Json(health))
}
