//! Who is calling: operators by bearer token (`Authorization: Bearer TOKEN`), agents by HTTP Basic
//! (`agent_id:secret`), and the peer address used by the activation rate limit.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

use super::error::AppError;
use super::ApiState;
use crate::app::{Actor, OpError};
use crate::store::agents::AgentRow;

/// An authenticated operator; its [`Actor`] is `token:<name>`.
#[derive(Debug, Clone)]
pub struct Operator {
    pub actor: Actor,
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthorized)?;
        let name = state
            .app
            .token_name(token)
            .await?
            .ok_or(AppError::Unauthorized)?;
        Ok(Operator {
            actor: Actor::token(&name),
        })
    }
}

/// An agent that proved its identity with its secret.
#[derive(Debug, Clone)]
pub struct AuthenticatedAgent(pub AgentRow);

impl FromRequestParts<ApiState> for AuthenticatedAgent {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let (id, secret) = basic_credentials(parts).ok_or(OpError::BadCredentials)?;
        Ok(AuthenticatedAgent(
            state.app.authenticate_agent(&id, &secret).await?,
        ))
    }
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The caller's address (IPv4-mapped IPv6 shown as IPv4), if the server recorded it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_canonical()),
        ))
    }
}
