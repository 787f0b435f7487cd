//! The routes agents call without a bearer token: `POST /activate` and `GET /agent/status`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outpost_cloud_link::enrollment::{ActivateResponse, AgentStatus};
use serde::Deserialize;
use tracing::info;

use super::auth::{AuthenticatedAgent, PeerAddr};
use super::error::AppError;
use super::ApiState;
use crate::app::ActivationRequest;

/// [`outpost_cloud_link::enrollment::ActivateRequest`], read leniently so a bad platform gets an error
/// naming the field.
#[derive(Debug, Deserialize)]
pub struct ActivateBody {
    pub code: String,
    #[serde(default)]
    pub mac: Option<String>,
    pub hostname: String,
    pub version: String,
    #[serde(default)]
    pub local_ip: Option<String>,
    pub platform: String,
}

/// `POST /activate`: rate limit first, then the body and the code.
pub async fn activate(
    State(state): State<ApiState>,
    PeerAddr(peer): PeerAddr,
    body: Result<Json<ActivateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ActivateResponse>), AppError> {
    if let Err(wait) = state.limiter.check(peer) {
        info!(peer = ?peer, retry_after_ms = wait.as_millis() as u64, "activation attempt rate-limited");
        return Err(AppError::RateLimited(wait));
    }
    let Json(body) = body.map_err(AppError::from_json)?;
    let platform = body
        .platform
        .parse()
        .map_err(|e| AppError::bad_request("platform", format!("{e}")))?;
    let request = ActivationRequest {
        code: body.code,
        mac: body.mac.filter(|m| !m.trim().is_empty()),
        hostname: body.hostname,
        version: body.version,
        local_ip: body.local_ip.filter(|ip| !ip.trim().is_empty()),
        platform,
    };
    let done = state
        .app
        .activate(request, peer.map(|ip| ip.to_string()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ActivateResponse {
            agent_id: done.agent_id.to_string(),
            name: done.name,
            broker: done.broker,
            secret: done.secret,
            ca_pem: done.ca_pem,
            epoch: done.epoch,
            public_ip: done.public_ip,
        }),
    ))
}

/// `GET /agent/status` with HTTP Basic `agent_id:secret`.
pub async fn status(AuthenticatedAgent(agent): AuthenticatedAgent) -> Json<AgentStatus> {
    Json(AgentStatus {
        agent_id: agent.id.to_string(),
        name: agent.name,
        status: agent.subscription.status.as_str().to_owned(),
        epoch: agent.data_epoch,
    })
}
