//! The live password-strength hint: `POST /account/password/strength` answers how strong a typed password
//! is for the account of a password link (`token`) or of the signed-in session (the same zxcvbn check with
//! the account's own words that the form's submit runs), and `/assets/password-strength.js` shows the answer
//! while the person types. The check on submit stays the one that counts.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::session_of;
use super::WebState;
use crate::app::OpError;
use crate::passwords::MAX_PASSWORD_CHARS;

/// The script, shipped with the portal.
const SCRIPT: &str = include_str!("../../assets/password-strength.js");

#[derive(Debug, Deserialize)]
pub struct Ask {
    pub password: String,
    pub token: Option<String>,
}

/// What the hint shows.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Answer {
    /// Whether the portal would accept it.
    pub ok: bool,
    /// zxcvbn's score, 0..=4 (none for a length refusal).
    pub score: Option<u8>,
    pub message: String,
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({
            "error": "not_found",
            "message": "sign in, or open your password link again"
        })),
    )
        .into_response()
}

/// `POST /account/password/strength`.
pub async fn check(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Result<Json<Ask>, JsonRejection>,
) -> Response {
    let Ok(Json(ask)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "invalid_request",
                "message": "send {\"password\": \"...\", \"token\": \"...\"} as JSON"
            })),
        )
            .into_response();
    };
    if ask.password.chars().count() > MAX_PASSWORD_CHARS * 2 {
        return not_found();
    }
    let user = match ask.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => match state.app.password_link(token).await {
            Ok((user, _)) => user,
            Err(_) => return not_found(),
        },
        None => match session_of(&state, &headers).await {
            Ok(Some((_, session))) => session.user,
            _ => return not_found(),
        },
    };
    let answer = match state.app.check_password_for(&user, &ask.password).await {
        Ok(strength) => Answer {
            ok: true,
            score: Some(strength.score),
            message: format!("Strong enough (strength {} of 4).", strength.score),
        },
        Err(OpError::WeakPassword(weak)) => Answer {
            ok: false,
            score: match &weak {
                crate::passwords::WeakPassword::TooGuessable { score, .. } => Some(*score),
                _ => None,
            },
            message: weak.to_string(),
        },
        Err(e) => return super::auth::internal(e),
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /assets/password-strength.js`.
pub async fn script() -> Response {
    let mut response = SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
