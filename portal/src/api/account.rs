//! Account-wide routes: the company's history (agent and account lines, with filters, as JSON or CSV), new
//! activation codes (with their plan, into the company or one of the caller's groups), and the dev clock.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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
use crate::access::Role;
use crate::app::activation::{CodePlan, DEFAULT_CODE_LIFETIME};
use crate::app::OpError;
use crate::store::history;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
    /// Lines whose action starts with this (`sign-in` also matches `sign-in-failed`).
    pub action: Option<String>,
    /// Lines whose actor contains this (`user:ana`).
    pub actor: Option<String>,
    pub agent: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `GET /history`: the caller's company's history, oldest first, filtered; `?format=csv` as a download.
pub async fn history(
    op: Operator,
    State(state): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(AppError::from_query)?;
    let limit = number("limit", query.limit.as_deref(), 1000, 100_000)?;
    let offset = number("offset", query.offset.as_deref(), 0, u32::MAX)?;
    let time = |field: &str, v: Option<String>| {
        nonempty(v)
            .map(|v| {
                parse_until(&v).map_err(|_| {
                    AppError::bad_request(
                        field,
                        "give RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD",
                    )
                })
            })
            .transpose()
    };
    let filter = history::Filter {
        action: nonempty(query.action),
        actor: nonempty(query.actor),
        agent: nonempty(query.agent),
        since: time("since", query.since)?,
        until: time("until", query.until)?,
    };
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::bad_request(
                "format",
                format!("{other:?} is not a format; use json or csv"),
            ))
        }
    };
    let Some(company) = op.caller.company_id else {
        return Err(AppError::Forbidden(crate::access::Action::HistoryRead));
    };
    let entries = state
        .app
        .account_history(company, &filter, limit, offset)
        .await?;
    if csv {
        let body = crate::export::history_csv(&entries).map_err(OpError::from)?;
        let filename = format!(
            "attachment; filename=\"outpost-history-{}.csv\"",
            state.app.now().format("%Y%m%d")
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, filename),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(History {
        entries: entries.iter().map(HistoryEntry::from).collect(),
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct NewCodeBody {
    pub expires_in_s: Option<u64>,
    pub uses: Option<u32>,
    /// `monthly` (the default), `prepaid` (with `prepaid_months`), `yearly` or `quarterly`.
    pub plan: Option<String>,
    /// Prepaid codes: how many months their agents are paid for (alone, it means `plan: prepaid`).
    pub prepaid_months: Option<u32>,
    /// The group its agents join (a group admin must name one of theirs).
    pub group: Option<i64>,
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
    let plan = CodePlan::parse(body.plan.as_deref(), body.prepaid_months)?;
    let Some(company) = op.caller.company_id else {
        return Err(AppError::Forbidden(crate::access::Action::CodesCreate));
    };
    let group = match body.group {
        Some(g) => {
            let visible = state.app.group_in_scope(&op.caller, g).await?;
            if !visible {
                return Err(OpError::UnknownGroup(g).into());
            }
            Some(g)
        }
        None if op.caller.role != Role::CompanyAdmin => {
            return Err(AppError::bad_request(
                "group",
                "name the group the new agents join (one of yours: GET /api/v1/groups)",
            ))
        }
        None => None,
    };
    let new = state
        .app
        .create_code_with(lifetime, body.uses.unwrap_or(1), plan, (company, group))
        .await?;
    info!(
        actor = op.actor.as_str(),
        uses = new.uses,
        plan = new.plan.as_str(),
        "activation code issued through the API"
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "code": new.code.display(),
            "expires_at": time(new.expires_at),
            "uses": new.uses,
            "plan": new.plan.as_str(),
            "prepaid_months": new.prepaid_months,
            "group": group,
        })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ClockBody {
    pub now: String,
}

/// `PUT /dev/clock` (only with `--dev-clock`): moves the portal's clock and sweeps at once (the
/// subscription sweep, then renewals and their reminders).
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
    let renewals = state.app.sweep_renewals().await?;
    let applied = applied + renewals.renewed;
    Ok(Json(
        json!({ "now": time(state.app.now()), "transitions": applied }),
    ))
}
