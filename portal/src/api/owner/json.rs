//! The owner's JSON API under `/api/v1/owner` (for an owner app): the session cookie of the pages
//! (`401 no_session` without one), and on every `POST` the session's CSRF token in `X-CSRF-Token` (`403
//! csrf_failed`; `GET /owner/devices` hands it out as `csrf_token`).
//!
//! - `GET /owner/devices` → `{ email, csrf_token, sites: [{ agent_id, name, enabled, online, devices:
//!   [{ id, name, ipv4, online, blocked, can_block, power: ["on", …] }] }] }`
//! - `POST /owner/agents/{id}/devices/{device}/block|unblock?wait_ms=N`, `…/power` `{ "action": … }` →
//!   `200` with the command once acknowledged (done or failed), `202` while pending; `404` for another
//!   site, a hidden or unknown device; `403` when the site is switched off or the flags do not allow it.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use outpost_cloud_link::control::PowerAction;
use serde::{Deserialize, Serialize};

use super::session::{self, SignedIn, CSRF_HEADER};
use super::Problem;
use crate::api::agents::number;
use crate::api::error::AppError;
use crate::api::views::CommandView;
use crate::api::ApiState;
use crate::app::commands::MAX_WAIT;
use crate::app::control::ControlAction;
use crate::app::owner::{OwnerDevice, OwnerError, OwnerSite};

/// How long an action waits for the agent's answer unless `wait_ms` says otherwise.
pub const DEFAULT_WAIT_MS: u32 = 30_000;

#[derive(Debug, Serialize)]
pub struct OwnerDevices {
    pub email: String,
    /// Send it back in `X-CSRF-Token` with every `POST`.
    pub csrf_token: String,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Serialize)]
pub struct SiteView {
    pub agent_id: String,
    pub name: String,
    /// Owner access switched on; a switched-off site lists no devices and refuses every action.
    pub enabled: bool,
    pub online: bool,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// The device id of the action routes.
    pub id: String,
    pub name: String,
    pub ipv4: Option<String>,
    pub online: bool,
    pub blocked: bool,
    /// Block and unblock are allowed.
    pub can_block: bool,
    /// The power actions allowed (none without the flag or an outlet).
    pub power: Vec<PowerAction>,
}

impl From<&OwnerDevice> for DeviceView {
    fn from(d: &OwnerDevice) -> Self {
        Self {
            id: d.device.id(),
            name: d.name.clone(),
            ipv4: d.ipv4.map(|ip| ip.to_string()),
            online: d.online,
            blocked: d.blocked,
            can_block: d.can_block,
            power: d.power.clone(),
        }
    }
}

impl From<&OwnerSite> for SiteView {
    fn from(s: &OwnerSite) -> Self {
        Self {
            agent_id: s.agent_id.to_string(),
            name: s.name.clone(),
            enabled: s.enabled,
            online: s.online,
            devices: s.devices.iter().map(DeviceView::from).collect(),
        }
    }
}

async fn session_of(state: &ApiState, headers: &HeaderMap) -> Result<SignedIn, Problem> {
    session::signed_in(&state.app, headers)
        .await
        .map_err(Problem::owner)?
        .ok_or_else(|| Problem::owner(OwnerError::NoSession))
}

/// `GET /owner/devices`
pub async fn devices(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<OwnerDevices>, Problem> {
    let session = session_of(&state, &headers).await?;
    let sites = state
        .app
        .owner_sites(&session.owner)
        .await
        .map_err(Problem::owner)?;
    Ok(Json(OwnerDevices {
        email: session.owner.email.clone(),
        csrf_token: session.csrf(),
        sites: sites.iter().map(SiteView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    pub wait_ms: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PowerBody {
    pub action: Option<String>,
}

/// The session of a state-changing call: signed in, same site, with the session's CSRF token. Checked
/// before anything else, so a caller without them learns nothing from other errors.
async fn checked_post(state: &ApiState, headers: &HeaderMap) -> Result<SignedIn, Problem> {
    let session = session_of(state, headers).await?;
    let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    session::check_post(&session, headers, csrf).map_err(Problem::owner)?;
    Ok(session)
}

async fn act(
    state: &ApiState,
    session: &SignedIn,
    (agent, device): (String, String),
    query: Result<Query<WaitQuery>, QueryRejection>,
    action: ControlAction,
) -> Result<(StatusCode, Json<CommandView>), Problem> {
    let Query(query) = query.map_err(AppError::from_query)?;
    let max_ms = u32::try_from(MAX_WAIT.as_millis()).unwrap_or(u32::MAX);
    let wait_ms = number("wait_ms", query.wait_ms.as_deref(), DEFAULT_WAIT_MS, max_ms)?;
    let row = state
        .app
        .owner_act(
            &session.owner,
            &agent,
            &device,
            action,
            Duration::from_millis(u64::from(wait_ms)),
        )
        .await
        .map_err(Problem::owner)?;
    let status = if row.status == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CommandView::from(&row))))
}

/// `POST /owner/agents/{id}/devices/{device}/block?wait_ms=N`
pub async fn block(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<CommandView>), Problem> {
    let session = checked_post(&state, &headers).await?;
    act(&state, &session, path, query, ControlAction::Block).await
}

/// `POST /owner/agents/{id}/devices/{device}/unblock?wait_ms=N`
pub async fn unblock(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<CommandView>), Problem> {
    let session = checked_post(&state, &headers).await?;
    act(&state, &session, path, query, ControlAction::Unblock).await
}

/// `POST /owner/agents/{id}/devices/{device}/power?wait_ms=N` `{ "action": "on" | "off" | "cycle" }`
pub async fn power(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<PowerBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CommandView>), Problem> {
    let session = checked_post(&state, &headers).await?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let action = crate::api::control::power_action(body.action.as_deref())?;
    act(&state, &session, path, query, ControlAction::Power(action)).await
}
