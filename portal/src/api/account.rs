//! Account-wide operator routes: the history of every agent, new activation codes, and the dev clock.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::agents::{number, parse_until};
use super::auth::Operator;
use super::error::AppError;
use super::views::{time, History, HistoryEntry};
use super::ApiState;
use crate::app::activation::DEFAULT_CODE_LIFETIME;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

pub async fn history(
    _: Operator,
    State(state): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<History>, AppError> {
    let Query(query) = query.map_err(AppError::from_query)?;
    let limit = number("limit", query.limit.as_deref(), 1000, 10_000)?;
    let offset = number("offset", query.offset.as_deref(), 0, u32::MAX)?;
    let entries = state.app.account_history(limit, offset).await?;
    Ok(Json(History {
        entries: entries.iter().map(HistoryEntry::from).collect(),
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct NewCodeBody {
    pub expires_in_s: Option<u64>,
    pub uses: Option<u32>,
    pub prepaid_months: Option<u32>,
}

pub async fn create_code(
    op: Operator,
    State(state): State<ApiState>,
    body: Result<Json<NewCodeBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let lifetime = match body.expires_in_s {
        None => DEFAULT_CODE_LIFETIME,
        Some(s) => i64::try_from(s)
            .ok()
            .and_then(Duration::try_seconds)
            .filter(|d| *d <= Duration::days(3650))
            .ok_or_else(|| {
                AppError::bad_request("expires_in_s", "at most ten years (315360000 s)")
            })?,
    };
    let new = state
        .app
        .create_code(lifetime, body.uses.unwrap_or(1), body.prepaid_months)
        .await?;
    info!(
        actor = op.actor.as_str(),
        uses = new.uses,
        "activation code issued through the API"
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "code": new.code.display(),
            "expires_at": time(new.expires_at),
            "uses": new.uses,
            "prepaid_months": new.prepaid_months,
        })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ClockBody {
    pub now: String,
}

/// `PUT /dev/clock` (only with `--dev-clock`): moves the portal's clock and sweeps at once.
pub async fn set_clock(
    op: Operator,
    State(state): State<ApiState>,
    body: Result<Json<ClockBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let now = parse_until(&body.now).map_err(|_| {
        AppError::bad_request("now", "give RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD")
    })?;
    let Some(clock) = state.app.dev_clock() else {
        return Err(AppError::NoRoute);
    };
    clock.set(now);
    info!(actor = op.actor.as_str(), now = %now, "dev clock set");
    let applied = state.app.sweep().await?;
    Ok(Json(
        json!({ "now": time(state.app.now()), "transitions": applied }),
    ))
}
