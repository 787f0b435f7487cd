//! Owner access over HTTP (the "Violet" app for residential sites).
//!
//! - [`operator`]: the operator's routes under `/api/v1` (bearer token): an agent's owner
//!   (`PUT`/`GET /agents/{id}/owner`) and a device's owner flags (`PUT`/`GET …/devices/{device}/owner-flags`).
//! - [`json`]: the owner's JSON API under `/api/v1/owner/…` (session cookie + CSRF header).
//! - [`pages`]: the owner's server-rendered pages under `/owner` (invitation, sign-in, the device list and
//!   its buttons), outside `/api/v1`.
//! - [`session`]: the session cookie, CSRF and same-origin checks, the sign-in rate limit.
//! - [`html`]: the pages' markup.
//!
//! What an owner may do is decided in `app::owner`; this layer only authenticates and renders.

pub mod html;
pub mod json;
pub mod operator;
pub mod pages;
pub mod session;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_cloud_link::enrollment::ApiError;
use tracing::error;

use super::error::AppError;
use crate::app::owner::OwnerError;
use crate::app::OpError;

/// A failure as owner-access routes answer it: `{ "error": code, "message": sentence }` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// What a person reads for an internal failure; the details go to the log.
const INTERNAL: &str =
    "the portal failed internally; try again, and see the portal's log if it persists";

impl Problem {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A failure of an operator route: the operation errors answer as everywhere else in the API.
    pub fn operator(e: OwnerError) -> Self {
        match e {
            OwnerError::Op(op) => Problem::from(AppError::Op(op)),
            other => Self::common(other),
        }
    }

    /// A failure shown to an owner: sentences for a person at home, never pointing at operator routes.
    pub fn owner(e: OwnerError) -> Self {
        use StatusCode as S;
        let OwnerError::Op(op) = e else {
            return Self::common(e);
        };
        match op {
            OpError::AgentOffline(_) => Self::new(
                S::CONFLICT,
                "agent_offline",
                "the site's Outpost agent is offline, so this cannot run now; try again once it is back online",
            ),
            OpError::ActionUnsupported { .. } => Self::new(
                S::CONFLICT,
                "action_unsupported",
                "this device's power outlet can only turn it on",
            ),
            OpError::NoOutlet { .. } | OpError::UnknownOutlet { .. } => {
                Self::common(OwnerError::NoOutlet)
            }
            OpError::UnknownAgent(_) | OpError::UnknownDevice { .. } | OpError::BadDeviceId(_) => {
                Self::new(
                    S::NOT_FOUND,
                    "not_found",
                    "there is no such device among yours; reload your device list",
                )
            }
            other => {
                let problem = Problem::from(AppError::Op(other));
                if problem.status.is_client_error() {
                    problem
                } else {
                    Self::new(problem.status, &problem.code, INTERNAL)
                }
            }
        }
    }

    fn common(e: OwnerError) -> Self {
        use StatusCode as S;
        let e = match e {
            OwnerError::Op(op) => return Problem::from(AppError::Op(op)),
            other => other,
        };
        let (status, code) = match &e {
            // Answered above.
            OwnerError::Op(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            OwnerError::InvalidEmail(_) | OwnerError::Password(_) => {
                (S::BAD_REQUEST, "invalid_request")
            }
            OwnerError::NotBlockable { code, .. } => {
                return Self::new(S::CONFLICT, code, e.to_string())
            }
            OwnerError::UnknownInvitation => (S::NOT_FOUND, "invitation_unknown"),
            OwnerError::InvitationUsed => (S::GONE, "invitation_used"),
            OwnerError::InvitationExpired => (S::GONE, "invitation_expired"),
            OwnerError::BadSignIn => (S::UNAUTHORIZED, "bad_credentials"),
            OwnerError::NoSession => (S::UNAUTHORIZED, "no_session"),
            OwnerError::Csrf => (S::FORBIDDEN, "csrf_failed"),
            OwnerError::UnknownSite(_) | OwnerError::UnknownDevice(_) => {
                (S::NOT_FOUND, "not_found")
            }
            OwnerError::AccessOff => (S::FORBIDDEN, "owner_access_disabled"),
            OwnerError::NotPermitted(_) => (S::FORBIDDEN, "not_permitted"),
            OwnerError::NoOutlet => (S::CONFLICT, "no_outlet"),
            OwnerError::Internal(detail) => {
                error!(error = %detail, "owner access failed");
                return Self::new(S::INTERNAL_SERVER_ERROR, "internal", INTERNAL);
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        let (status, code) = e.status_and_code();
        if status.is_server_error() {
            error!(error = %e, code, "request failed");
            let message = match &e {
                AppError::Op(OpError::Broker(_)) => {
                    "the message broker did not accept the change; try again shortly"
                }
                _ => INTERNAL,
            };
            return Self::new(status, code, message);
        }
        Self::new(status, code, e.to_string())
    }
}

impl From<OpError> for Problem {
    fn from(e: OpError) -> Self {
        Problem::from(AppError::Op(e))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ApiError {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response();
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        response
    }
}
