//! Agent settings routes: `GET /agent-settings/schema` (the settings document's JSON Schema),
//! `GET /agents/{id}/settings` (the record) and `PUT /agents/{id}/settings` `{settings, base_version?}`
//! (a new version, checked, stored and sent to the agent).
//!
//! A refused document answers `422` `{"error": "invalid_settings", "field": PATH, "message": TEXT}` naming
//! the setting (`discovery.retries`, `interfaces[1].vlan`, an unknown field); a `base_version` that is not
//! the stored version answers `409` `conflict` (someone else changed the settings meanwhile).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::auth::Operator;
use super::error::AppError;
use super::views::time;
use super::ApiState;
use crate::app::settings::PutSettingsError;
use crate::app::{App, OpError};
use crate::store::settings::SettingsRow;

/// A refusal of the agent, as the record shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsErrorView {
    pub code: Option<String>,
    pub message: String,
}

/// `GET /agents/{id}/settings`.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    /// 0 while none was stored.
    pub version: u64,
    /// The settings of `version` (`{}` while none was stored: every value is the agent's local one).
    pub settings: Value,
    /// `none` (no settings stored), `pending` (not acknowledged yet), `applied` or `refused`.
    pub state: String,
    /// The last version the agent applied.
    pub applied_version: Option<u64>,
    /// Settings `applied_version` sets that the agent's local file pins (kept at their local values).
    pub pinned: Vec<String>,
    /// The agent restarts (restarted) to apply `applied_version`.
    pub restart: bool,
    /// Why the agent refused `version`.
    pub error: Option<SettingsErrorView>,
    /// The version the agent's latest hello says it runs with.
    pub running_version: Option<u64>,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

impl SettingsView {
    pub fn of(row: Option<&SettingsRow>) -> Self {
        let stored = row.filter(|r| r.version > 0);
        Self {
            version: stored.map_or(0, |r| r.version),
            settings: stored
                .and_then(|r| r.settings.clone())
                .unwrap_or_else(|| Value::Object(Default::default())),
            state: stored
                .and_then(|r| r.state.clone())
                .unwrap_or_else(|| "none".into()),
            applied_version: row.and_then(|r| r.applied_version),
            pinned: row.map(|r| r.pinned.clone()).unwrap_or_default(),
            restart: row.is_some_and(|r| r.restart),
            error: stored.and_then(|r| {
                r.error_message.clone().map(|message| SettingsErrorView {
                    code: r.error_code.clone(),
                    message,
                })
            }),
            running_version: row.and_then(|r| r.running_version),
            updated_at: stored.and_then(|r| r.updated_at).map(time),
            updated_by: stored.and_then(|r| r.updated_by.clone()),
        }
    }
}

/// A failure of `PUT /agents/{id}/settings`.
pub enum PutError {
    App(AppError),
    Put(PutSettingsError),
}

impl IntoResponse for PutError {
    fn into_response(self) -> Response {
        match self {
            PutError::App(e) => e.into_response(),
            PutError::Put(PutSettingsError::Op(op)) => AppError::Op(op).into_response(),
            PutError::Put(PutSettingsError::Invalid(e)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({
                    "error": "invalid_settings",
                    "field": e.field,
                    "message": e.to_string(),
                })),
            )
                .into_response(),
            PutError::Put(stale @ PutSettingsError::Stale { .. }) => {
                AppError::Op(OpError::Conflict(stale.to_string())).into_response()
            }
        }
    }
}

impl From<AppError> for PutError {
    fn from(e: AppError) -> Self {
        PutError::App(e)
    }
}

impl From<PutSettingsError> for PutError {
    fn from(e: PutSettingsError) -> Self {
        PutError::Put(e)
    }
}

/// `GET /agent-settings/schema`: the JSON Schema of the settings document.
pub async fn schema(_: Operator) -> Json<Value> {
    Json(outpost_cloud_link::settings::schema())
}

/// `GET /agents/{id}/settings`.
pub async fn get(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SettingsView>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let row = state.app.agent_settings(&id).await?;
    Ok(Json(SettingsView::of(row.as_ref())))
}

/// Reads `{settings: {...}, base_version?: N}`; anything else is refused naming the field.
pub fn read_body(body: &Value) -> Result<(Value, Option<u64>), PutSettingsError> {
    let invalid = |field: &str, problem: String| {
        PutSettingsError::Invalid(outpost_cloud_link::settings::SettingsError {
            field: field.into(),
            problem,
        })
    };
    let Some(obj) = body.as_object() else {
        return Err(invalid(
            "body",
            "must be a JSON object {\"settings\": {...}, \"base_version\": N}".into(),
        ));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "settings" | "base_version"))
    {
        return Err(invalid(
            k,
            format!("unknown field `{k}`: the body has `settings` and optionally `base_version`"),
        ));
    }
    let settings = obj.get("settings").cloned().ok_or_else(|| {
        invalid(
            "settings",
            "missing: send {\"settings\": {...}} (an empty object leaves every setting to the agent's local file)".into(),
        )
    })?;
    let base = match obj.get("base_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            invalid(
                "base_version",
                format!("{v} is not a version number (GET /api/v1/agents/{{id}}/settings says the current one)"),
            )
        })?),
    };
    Ok((settings, base))
}

/// `PUT /agents/{id}/settings`: `200` with the record.
pub async fn put(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<SettingsView>, PutError> {
    let id = App::parse_agent_id(&id).map_err(AppError::from)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let (settings, base) = read_body(&body)?;
    let row = state
        .app
        .put_settings(&id, &settings, base, &op.actor)
        .await?;
    Ok(Json(SettingsView::of(Some(&row))))
}
