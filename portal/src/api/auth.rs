//! Who is calling and whether they may: every staff route declares the [`Action`] it does ([`Access`]);
//! [`guard`] resolves the bearer token (`Authorization: Bearer TOKEN`) to a [`Caller`], answers 401
//! without one, 403 `forbidden` when the role (or a read-only token) may not do the action, and 404 for
//! an agent outside the caller's scope, as if it did not exist. Agents authenticate with HTTP Basic
//! (`agent_id:secret`); [`PeerAddr`] is the address used by rate limits and the history.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::AppError;
use super::ApiState;
use crate::access::{Action, Caller};
use crate::app::{Actor, OpError};
use crate::store::agents::AgentRow;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the OpenAPI document, activation).
    Public,
    /// An agent with its own credentials (checked by the handler's [`AuthenticatedAgent`]).
    Agent,
    /// A signed-in site owner (checked by the owner handlers' session).
    Owner,
    /// A user (by API token) whose role may do the action; agent routes also need the agent in scope.
    Staff(Action),
}

/// The staff check of one route, put in front of its handler by the router.
#[derive(Debug, Clone, Copy)]
pub struct Required {
    pub action: Action,
    /// The route's `{id}` is an agent id (checked against the caller's scope).
    pub agent_scoped: bool,
}

/// The bearer token of a request, if it has one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Resolves the caller, checks the table and the scope, and hands the [`Caller`] to the handler.
pub async fn guard(
    State((state, required)): State<(ApiState, Required)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match check(&state, required, &mut parts).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn check(
    state: &ApiState,
    required: Required,
    parts: &mut Parts,
) -> Result<Caller, AppError> {
    let token = bearer(parts).ok_or(AppError::Unauthorized)?.to_owned();
    let caller = state
        .app
        .token_caller(&token)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if required.agent_scoped {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NoRoute)?;
        if let Some((_, id)) = params.iter().find(|(name, _)| *name == "id") {
            if !state.app.sees_agent(&caller, id).await? {
                return Err(OpError::UnknownAgent(id.to_owned()).into());
            }
        }
    }
    if !caller.may(required.action) {
        return Err(AppError::Forbidden(required.action));
    }
    Ok(caller)
}

/// A user who passed the route's [`guard`]; `actor` is how the history names them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub actor: Actor,
    pub caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        // Only the guard puts a caller here: a route without one refuses everyone.
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(AppError::Unauthorized)?;
        Ok(Operator {
            actor: Actor::user(&caller),
            caller,
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
