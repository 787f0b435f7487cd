//! The operator's owner-access routes (bearer token):
//!
//! - `PUT /agents/{id}/owner` `{ email, enabled, invite? }` → `200 { agent_id, email, enabled, has_account,
//!   updated_at, invitation? }`: `invitation` `{ url, expires_at }` is a fresh single-use link, made when
//!   the email has no account yet or `invite` is `true` (never with `invite: false`). The link's host is the
//!   one the request was sent to (`Host`).
//! - `GET /agents/{id}/owner` → the same without `invitation` (`email: null` when none is set).
//! - `PUT /agents/{id}/devices/{device}/owner-flags` `{ visible, power, block }` → `200` the flags and what
//!   the agent can do with the device; `409 vlan_tagged_unblockable` / `blocking_unsupported_platform` for
//!   `block: true` on a device the agent cannot block. `GET` the same (all `false` when never set).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header::HOST;
use axum::http::HeaderMap;
use axum::Json;
use outpost_cloud_link::control::DeviceRef;
use outpost_cloud_link::AgentId;
use serde::{Deserialize, Serialize};

use super::Problem;
use crate::api::auth::Operator;
use crate::api::error::AppError;
use crate::api::views::time;
use crate::api::ApiState;
use crate::app::owner::{DeviceFlags, OwnerChange, OwnerSettings};
use crate::app::owner_auth::NewInvitation;
use crate::app::{App, OpError};
use crate::store::owners::Flags;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    pub email: String,
    pub enabled: bool,
    #[serde(default)]
    pub invite: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct InvitationView {
    /// `https://<portal>/owner/invite/<token>`: give it to the owner; it works once, until `expires_at`.
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct OwnerView {
    pub agent_id: String,
    pub email: Option<String>,
    pub enabled: bool,
    /// The owner has set a password (accepted an invitation).
    pub has_account: bool,
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<InvitationView>,
}

impl OwnerView {
    fn new(agent: &AgentId, s: &OwnerSettings, invitation: Option<InvitationView>) -> Self {
        Self {
            agent_id: agent.to_string(),
            email: s.email.clone(),
            enabled: s.enabled,
            has_account: s.has_account,
            updated_at: s.updated_at.map(time),
            invitation,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsBody {
    pub visible: bool,
    pub power: bool,
    pub block: bool,
}

#[derive(Debug, Serialize)]
pub struct FlagsView {
    pub device: String,
    pub visible: bool,
    pub power: bool,
    pub block: bool,
    /// What the agent can do with the device (from the device control view).
    pub blocked: bool,
    pub blockable: bool,
    pub unblockable_reason: Option<&'static str>,
    /// The outlet type bound to the device, if any; the owner sees power buttons only with one.
    pub power_outlet: Option<&'static str>,
}

impl From<&DeviceFlags> for FlagsView {
    fn from(f: &DeviceFlags) -> Self {
        Self {
            device: f.device.id(),
            visible: f.flags.visible,
            power: f.flags.power,
            block: f.flags.block,
            blocked: f.control.blocked,
            blockable: f.control.blockable,
            unblockable_reason: f.control.unblockable_reason,
            power_outlet: f.control.power_outlet.as_ref().map(|b| b.outlet.kind()),
        }
    }
}

/// `https://` and the host the operator reached the portal at (the invitation is opened the same way);
/// without a usable `Host`, the broker's host name.
pub(crate) fn portal_origin(headers: &HeaderMap, app: &App) -> String {
    let usable = |h: &&str| {
        !h.is_empty()
            && h.len() <= 261
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(usable)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let broker = &app.settings().broker_address;
            broker
                .rsplit_once(':')
                .map_or(broker.as_str(), |(host, _)| host)
                .to_owned()
        });
    format!("https://{host}")
}

fn invitation_view(origin: &str, i: &NewInvitation) -> InvitationView {
    InvitationView {
        url: format!("{origin}{}", i.path()),
        expires_at: time(i.expires_at),
    }
}

fn target(id: &str, device: &str) -> Result<(AgentId, DeviceRef), Problem> {
    let id = App::parse_agent_id(id)?;
    let device = device.parse().map_err(OpError::from)?;
    Ok((id, device))
}

/// `PUT /agents/{id}/owner`
pub async fn put_owner(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<OwnerBody>, JsonRejection>,
) -> Result<Json<OwnerView>, Problem> {
    let id = App::parse_agent_id(&id)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let change = OwnerChange {
        email: &body.email,
        enabled: body.enabled,
        invite: body.invite,
    };
    let (settings, invitation) = state
        .app
        .set_owner(&id, change, &op.actor)
        .await
        .map_err(Problem::operator)?;
    let origin = portal_origin(&headers, &state.app);
    let invitation = invitation.as_ref().map(|i| invitation_view(&origin, i));
    Ok(Json(OwnerView::new(&id, &settings, invitation)))
}

/// `GET /agents/{id}/owner`
pub async fn get_owner(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<OwnerView>, Problem> {
    let id = App::parse_agent_id(&id)?;
    let settings = state
        .app
        .owner_settings(&id)
        .await
        .map_err(Problem::operator)?;
    Ok(Json(OwnerView::new(&id, &settings, None)))
}

/// `PUT /agents/{id}/devices/{device}/owner-flags`
pub async fn put_flags(
    op: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
    body: Result<Json<FlagsBody>, JsonRejection>,
) -> Result<Json<FlagsView>, Problem> {
    let (id, device) = target(&id, &device)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let flags = Flags {
        visible: body.visible,
        power: body.power,
        block: body.block,
    };
    let set = state
        .app
        .set_owner_flags(&id, &device, flags, &op.actor)
        .await
        .map_err(Problem::operator)?;
    Ok(Json(FlagsView::from(&set)))
}

/// `GET /agents/{id}/devices/{device}/owner-flags`
pub async fn get_flags(
    _: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
) -> Result<Json<FlagsView>, Problem> {
    let (id, device) = target(&id, &device)?;
    let flags = state
        .app
        .owner_flags(&id, &device)
        .await
        .map_err(Problem::operator)?;
    Ok(Json(FlagsView::from(&flags)))
}
