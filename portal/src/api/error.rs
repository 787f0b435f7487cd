//! The one error type of the HTTP API: every failure becomes `{ "error": code, "message": text }` with the
//! right status (an invalid site configuration adds `fields: [{ field, message }]`). Mistakes of the caller are 4xx naming what to fix; internal failures are a generic 500 (or
//! 503 for the broker) with the details only in the log.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_cloud_link::enrollment::ApiError;
use tracing::error;

use crate::app::OpError;
use crate::lifecycle::LifecycleError;

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("a valid API token is required: send `Authorization: Bearer TOKEN` (make one with `outpost-portal token new`)")]
    Unauthorized,
    #[error("too many activation attempts from this address; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("there is no such route; see GET /api/v1/openapi.json")]
    NoRoute,
    #[error("your role may not do this ({}); ask a company admin", .0.as_str())]
    Forbidden(crate::access::Action),
}

impl AppError {
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A body that is not the JSON expected; serde's message names the field.
    pub fn from_json(rejection: JsonRejection) -> Self {
        AppError::bad_request("body", rejection.body_text())
    }

    pub fn from_query(rejection: QueryRejection) -> Self {
        AppError::bad_request("query", rejection.body_text())
    }

    /// The status and machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use OpError as O;
        match self {
            AppError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::Op(op) => match op {
                O::UnknownAgent(_) | O::UnknownCommand { .. } => {
                    (StatusCode::NOT_FOUND, "not_found")
                }
                O::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
                O::MalformedCode(_) => (StatusCode::BAD_REQUEST, "malformed_code"),
                O::UnknownCode => (StatusCode::NOT_FOUND, "unknown_code"),
                O::CodeUsedUp => (StatusCode::CONFLICT, "code_used_up"),
                O::CodeExpired => (StatusCode::GONE, "code_expired"),
                O::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
                O::AgentDeleted => (StatusCode::GONE, "agent_deleted"),
                O::AgentConnected => (StatusCode::CONFLICT, "agent_connected"),
                O::BadDeviceId(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                O::UnknownDevice { .. } | O::UnknownOutlet { .. } => {
                    (StatusCode::NOT_FOUND, "not_found")
                }
                O::NoOutlet { .. } => (StatusCode::CONFLICT, "no_outlet"),
                O::ActionUnsupported { .. } => (StatusCode::CONFLICT, "action_unsupported"),
                O::AgentOffline(_) => (StatusCode::CONFLICT, "agent_offline"),
                O::InvalidSite(_) => (StatusCode::BAD_REQUEST, "invalid_site"),
                O::ExportTooLarge { .. } => (StatusCode::BAD_REQUEST, "export_too_large"),
                O::Export(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                O::Lifecycle(LifecycleError::InvalidState { .. }) => {
                    (StatusCode::CONFLICT, "invalid_state")
                }
                O::Lifecycle(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                O::Broker(_) => (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"),
                O::Store(_) | O::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                O::BadSignIn => (StatusCode::UNAUTHORIZED, "bad_sign_in"),
                O::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                O::UnknownUser(_)
                | O::UnknownGroup(_)
                | O::UnknownToken(_)
                | O::UnknownGrant(_) => (StatusCode::NOT_FOUND, "not_found"),
                O::LinkUnknown => (StatusCode::NOT_FOUND, "link_unknown"),
                O::LinkExpired => (StatusCode::GONE, "link_expired"),
                O::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                O::NoCompany => (StatusCode::NOT_FOUND, "not_found"),
                O::WeakPassword(_) => (StatusCode::BAD_REQUEST, "weak_password"),
                O::Mail(_) => (StatusCode::BAD_GATEWAY, "mail_failed"),
            },
        }
    }

    /// What the caller reads; internal details stay in the log.
    fn public_message(&self) -> String {
        match self {
            AppError::Op(OpError::Store(_))
            | AppError::Op(OpError::Export(_))
            | AppError::Op(OpError::Internal(_)) => {
                "the portal failed internally; try again, and see the portal's log if it persists"
                    .into()
            }
            AppError::Op(OpError::Broker(_)) => {
                "the message broker did not accept the change; try again shortly".into()
            }
            AppError::Op(OpError::Lifecycle(e @ LifecycleError::NotInFuture(_)))
            | AppError::Op(OpError::Lifecycle(e @ LifecycleError::TooFarAhead(_))) => {
                format!("until: {e}")
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            error!(error = %self, code, "request failed");
        }
        let mut response = match &self {
            // The site form's errors: every bad field, so a page can show each next to its input.
            AppError::Op(OpError::InvalidSite(invalid)) => {
                let body = serde_json::json!({
                    "error": code,
                    "message": self.public_message(),
                    "fields": invalid.0,
                });
                (status, Json(body)).into_response()
            }
            _ => {
                let body = Json(ApiError {
                    error: code.to_owned(),
                    message: self.public_message(),
                });
                (status, body).into_response()
            }
        };
        let headers = response.headers_mut();
        match &self {
            AppError::RateLimited(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            AppError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::Op(OpError::BadCredentials) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"outpost\""),
                );
            }
            _ => {}
        }
        response
    }
}
