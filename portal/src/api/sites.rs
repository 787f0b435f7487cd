//! Operator routes on an agent's site configuration: `GET /agents/{id}/site` and `PUT /agents/{id}/site`
//! (the whole document; a bad field answers `400 invalid_site` listing every bad field).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;

use super::auth::Operator;
use super::error::AppError;
use super::ApiState;
use crate::app::App;
use crate::site::{SiteConfig, SiteInput};

pub async fn get(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SiteConfig>, AppError> {
    let site = state.app.site(&App::parse_agent_id(&id)?).await?;
    Ok(Json(site))
}

pub async fn put(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<SiteInput>, JsonRejection>,
) -> Result<Json<SiteConfig>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Json(input) = body.map_err(AppError::from_json)?;
    let site = state.app.set_site(&id, &input, &op.actor).await?;
    Ok(Json(site))
}
