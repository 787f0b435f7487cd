//! Operator routes controlling one device (`{device}` is `MAC` or `MAC@VLAN`):
//! `POST …/block`, `POST …/unblock`, `POST …/power` `{ action }` (each waiting up to `wait_ms` for the
//! agent's acknowledgement), and the device's outlet binding (`PUT`/`GET`/`DELETE …/power-outlet`).
//!
//! A command the agent acknowledged answers `200` with its outcome, failed ones included (`status:
//! "failed"` and the agent's `code`): the request itself worked, and scripts read `code`. A command still
//! pending when the wait ends (or with `wait_ms=0`) answers `202`; poll `GET /agents/{id}/commands/{cid}`.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_cloud_link::control::{DeviceRef, OutletBinding, PowerAction};
use serde::Deserialize;

use super::agents::number;
use super::auth::Operator;
use super::error::AppError;
use super::views::{CommandView, OutletView};
use super::ApiState;
use crate::app::commands::MAX_WAIT;
use crate::app::control::ControlAction;
use crate::app::{App, OpError};
use crate::store::commands::CommandRow;

/// How long a control route waits for the acknowledgement unless told otherwise.
pub const DEFAULT_WAIT_MS: u32 = 30_000;

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    pub wait_ms: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PowerBody {
    pub action: Option<String>,
}

fn target(id: &str, device: &str) -> Result<(outpost_cloud_link::AgentId, DeviceRef), AppError> {
    let id = App::parse_agent_id(id)?;
    let device = device.parse().map_err(OpError::from)?;
    Ok((id, device))
}

fn wait(query: Result<Query<WaitQuery>, QueryRejection>) -> Result<Duration, AppError> {
    let Query(query) = query.map_err(AppError::from_query)?;
    let max_ms = u32::try_from(MAX_WAIT.as_millis()).unwrap_or(u32::MAX);
    let ms = number("wait_ms", query.wait_ms.as_deref(), DEFAULT_WAIT_MS, max_ms)?;
    Ok(Duration::from_millis(u64::from(ms)))
}

/// `200` once acknowledged (done or failed), `202` while pending.
fn answer(row: &CommandRow) -> (StatusCode, Json<CommandView>) {
    let status = if row.status == "pending" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(CommandView::from(row)))
}

async fn control(
    op: Operator,
    state: &ApiState,
    (id, device): (String, String),
    query: Result<Query<WaitQuery>, QueryRejection>,
    action: ControlAction,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    let (id, device) = target(&id, &device)?;
    let wait = wait(query)?;
    let row = state
        .app
        .control_device(&id, &device, action, &op.actor, wait)
        .await?;
    Ok(answer(&row))
}

/// `POST /agents/{id}/devices/{device}/block?wait_ms=N`
pub async fn block(
    op: Operator,
    State(state): State<ApiState>,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    control(op, &state, path, query, ControlAction::Block).await
}

/// `POST /agents/{id}/devices/{device}/unblock?wait_ms=N`
pub async fn unblock(
    op: Operator,
    State(state): State<ApiState>,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    control(op, &state, path, query, ControlAction::Unblock).await
}

/// The `action` of a power request body, or the `400` naming what it accepts (operator and owner API).
pub fn power_action(raw: Option<&str>) -> Result<PowerAction, AppError> {
    match raw {
        Some(name) => PowerAction::parse(name).ok_or_else(|| {
            AppError::bad_request(
                "action",
                format!("{name:?} is not a power action; give on, off or cycle"),
            )
        }),
        None => Err(AppError::bad_request(
            "action",
            "is missing; give on, off or cycle",
        )),
    }
}

/// `POST /agents/{id}/devices/{device}/power?wait_ms=N` `{ "action": "on" | "off" | "cycle" }`
pub async fn power(
    op: Operator,
    State(state): State<ApiState>,
    Path(path): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<PowerBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let action = power_action(body.action.as_deref())?;
    control(op, &state, path, query, ControlAction::Power(action)).await
}

/// serde's message without the offending value (it may be a secret put in the wrong field):
/// `invalid type: string "…", expected u32` becomes `invalid type, expected u32`.
fn without_values(message: &str) -> String {
    for marker in ["invalid type", "invalid value", "invalid length"] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start..];
            let tail = rest.find(", expected").map(|i| &rest[i..]).unwrap_or("");
            return format!("{}{marker}{tail}", &message[..start]);
        }
    }
    message.to_owned()
}

/// `PUT /agents/{id}/devices/{device}/power-outlet` with an `OutletBinding`: `200` with it, redacted.
pub async fn put_outlet(
    op: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<OutletView>, AppError> {
    let (id, device) = target(&id, &device)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let binding: OutletBinding = serde_json::from_value(body).map_err(|e| {
        AppError::bad_request(
            "body",
            format!(
                "not an outlet binding: {}; send {{\"outlet\": {{\"type\": \"poe_snmp\" | \"apc_pdu\" | \"shelly\" | \"tasmota\" | \"wake_on_lan\", …}}, \"cycle_delay_secs\": N}}",
                without_values(&e.to_string())
            ),
        )
    })?;
    let info = state
        .app
        .set_outlet(&id, &device, binding, &op.actor)
        .await?;
    Ok(Json(OutletView::new(&device, &info)))
}

/// `GET /agents/{id}/devices/{device}/power-outlet`: the binding, secrets redacted.
pub async fn get_outlet(
    _: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
) -> Result<Json<OutletView>, AppError> {
    let (id, device) = target(&id, &device)?;
    let info = state.app.outlet(&id, &device).await?;
    Ok(Json(OutletView::new(&device, &info)))
}

/// `DELETE /agents/{id}/devices/{device}/power-outlet`: `204`.
pub async fn delete_outlet(
    op: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let (id, device) = target(&id, &device)?;
    state.app.remove_outlet(&id, &device, &op.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_lose_their_values() {
        assert_eq!(
            without_values("outlet: invalid type: string \"s3cret\", expected u32"),
            "outlet: invalid type, expected u32"
        );
        assert_eq!(
            without_values("missing field `host`"),
            "missing field `host`"
        );
    }
}
