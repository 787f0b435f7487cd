//! The company's branding over the API: `GET`/`PUT /branding` (name and contact details) and
//! `PUT`/`DELETE /branding/logo` (the body is the PNG or JPEG file itself); and the public, unguessable
//! `/branding/logo/{key}` the owner pages show.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::{Operator, PeerAddr};
use super::error::AppError;
use super::ApiState;
use crate::app::branding::logo_path;
use crate::app::App;
use crate::branding::Details;
use crate::store::branding::BrandingRow;

/// The branding as the API shows it.
#[derive(Debug, Serialize)]
pub struct BrandingView {
    #[serde(flatten)]
    pub details: Details,
    /// Where the logo is served (none without a logo).
    pub logo: Option<String>,
    pub logo_updated_at: Option<String>,
}

impl From<BrandingRow> for BrandingView {
    fn from(b: BrandingRow) -> Self {
        Self {
            details: b.details,
            logo: b.logo_key.as_deref().map(logo_path),
            logo_updated_at: b.logo_updated_at.map(super::views::time),
        }
    }
}

fn address(peer: Option<std::net::IpAddr>) -> Option<String> {
    peer.map(|p| p.to_string())
}

pub async fn get(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<BrandingView>, AppError> {
    Ok(Json(state.app.my_branding(&op.caller).await?.into()))
}

pub async fn put(
    op: Operator,
    PeerAddr(peer): PeerAddr,
    State(state): State<ApiState>,
    body: Result<Json<Details>, JsonRejection>,
) -> Result<Json<BrandingView>, AppError> {
    let Json(details) = body.map_err(AppError::from_json)?;
    let saved = state
        .app
        .set_branding(&op.caller, &details, address(peer).as_deref())
        .await?;
    Ok(Json(saved.into()))
}

pub async fn put_logo(
    op: Operator,
    PeerAddr(peer): PeerAddr,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BrandingView>, AppError> {
    let body = body.map_err(|e| AppError::bad_request("logo", e.body_text()))?;
    let saved = state
        .app
        .set_logo(&op.caller, body.to_vec(), address(peer).as_deref())
        .await?;
    Ok(Json(saved.into()))
}

pub async fn delete_logo(
    op: Operator,
    PeerAddr(peer): PeerAddr,
    State(state): State<ApiState>,
) -> Result<StatusCode, AppError> {
    state
        .app
        .delete_logo(&op.caller, address(peer).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /branding/logo/{key}`: the re-encoded PNG (public: the key is random and changes with each upload).
pub async fn logo(app: &App, key: &str) -> Response {
    match app.logo(key).await {
        Ok(Some(png)) => {
            let mut response = png.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400, immutable"),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'"),
            );
            response
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}
