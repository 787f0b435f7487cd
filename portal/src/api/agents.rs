//! Operator routes on agents: the list (search, filters, sort, pages) and its CSV export, get, rename,
//! cleanup, delete, the lifecycle actions, history, data.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;

use super::auth::Operator;
use super::error::AppError;
use super::views::{AgentData, AgentList, AgentView, History, HistoryEntry, ReportView};
use super::ApiState;
use crate::app::App;
use crate::export;
use crate::lifecycle::Action;
use crate::listing::{AgentQuery, QueryError};

/// Parses an optional non-negative number from the query, naming the field if it is not one.
pub fn number(field: &str, raw: Option<&str>, default: u32, max: u32) -> Result<u32, AppError> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(AppError::bad_request(
                field,
                format!("{s:?} is not a whole number between 0 and {max}"),
            )),
        },
    }
}

/// `GET /agents`: the agents list (see [`AgentQuery::parse`] for the parameters).
pub async fn list(
    op: Operator,
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AgentList>, AppError> {
    let Query(pairs) = query.map_err(AppError::from_query)?;
    let query = AgentQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(bad_query)?;
    let (items, total) = state.app.search_agents(&query, &op.caller.scope).await?;
    let mut agents = Vec::with_capacity(items.len());
    for item in &items {
        agents.push(view(&state.app, item).await?);
    }
    Ok(Json(AgentList { agents, total }))
}

/// The agent as the API shows it, with its update facts.
pub async fn view(app: &App, item: &crate::listing::AgentListItem) -> Result<AgentView, AppError> {
    Ok(AgentView::new(item)
        .with_update(app.update_facts(&item.agent.id).await?)
        .with_settings_version(app.running_settings_version(&item.agent.id).await?))
}

fn bad_query(e: QueryError) -> AppError {
    AppError::bad_request(e.param, e.message)
}

/// `GET /agents.csv`: every agent the list shows under the same search, filters and sort (no pages), as
/// an RFC 4180 attachment named after today's date (UTC).
pub async fn export_csv(
    op: Operator,
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(pairs) = query.map_err(AppError::from_query)?;
    let query = AgentQuery::parse_filter(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(bad_query)?;
    let body = export::export_agents(&state.app, &query, &op.caller.scope).await?;
    let filename = format!(
        "attachment; filename=\"outpost-agents-{}.csv\"",
        state.app.now().format("%Y%m%d")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}

pub async fn get(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let item = state.app.agent_item(&id).await?;
    let location = state.app.location(&id).await?;
    Ok(Json(view(&state.app, &item).await?.with_location(location)))
}

#[derive(Debug, Deserialize)]
pub struct RenameBody {
    pub name: String,
}

pub async fn rename(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<RenameBody>, JsonRejection>,
) -> Result<Json<AgentView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    state.app.rename(&id, &body.name, &op.actor).await?;
    Ok(Json(
        view(&state.app, &state.app.agent_item(&id).await?).await?,
    ))
}

pub async fn cleanup(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let id = App::parse_agent_id(&id)?;
    let (command_id, data_epoch) = state.app.cleanup(&id, &op.actor).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "command_id": command_id, "data_epoch": data_epoch })),
    ))
}

pub async fn delete(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = App::parse_agent_id(&id)?;
    state.app.delete(&id, &op.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn lifecycle(
    op: Operator,
    state: ApiState,
    id: String,
    action: Action,
) -> Result<Json<AgentView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    state.app.lifecycle(&id, action, &op.actor).await?;
    Ok(Json(
        view(&state.app, &state.app.agent_item(&id).await?).await?,
    ))
}

pub async fn deactivate(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, AppError> {
    lifecycle(op, state, id, Action::Deactivate).await
}

pub async fn reactivate(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, AppError> {
    lifecycle(op, state, id, Action::Reactivate).await
}

#[derive(Debug, Deserialize)]
pub struct ExtendBody {
    pub until: String,
}

/// Reads `until`: RFC 3339, or `YYYY-MM-DD` meaning the start of that day (UTC).
pub fn parse_until(raw: &str) -> Result<DateTime<Utc>, AppError> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            AppError::bad_request(
                "until",
                format!(
                    "{raw:?} is not a date; give RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD"
                ),
            )
        })
}

pub async fn extend(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ExtendBody>, JsonRejection>,
) -> Result<Json<AgentView>, AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let until = parse_until(&body.until)?;
    lifecycle(op, state, id, Action::Extend { until }).await
}

pub async fn history(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<History>, AppError> {
    let entries = state.app.agent_history(&App::parse_agent_id(&id)?).await?;
    Ok(Json(History {
        entries: entries.iter().map(HistoryEntry::from).collect(),
    }))
}

pub async fn data(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentData>, AppError> {
    let (data_epoch, reports) = state.app.agent_data(&App::parse_agent_id(&id)?).await?;
    Ok(Json(AgentData {
        data_epoch,
        reports: reports.iter().map(ReportView::from).collect(),
    }))
}
