//! The technicians' web pages, served by the portal itself outside `/api/v1`: sign-in, the agents list
//! (search, filters, sorting, pages, CSV export), the multi-site map, the agent page (facts, site and
//! customer configuration, lifecycle actions, history) and the agent's devices (table, device page,
//! block/unblock/power, owner-access flags). Server-rendered with `maud`, no JavaScript; every
//! state-changing form carries the session's CSRF token.
//!
//! - [`auth`]: the session cookie, the [`auth::Tech`] extractor, sign-in and sign-out.
//! - [`layout`]: the page frame, stylesheet and shared pieces.
//! - [`agents`]: the list, its CSV export and the map page; [`map`]: the SVG world map.
//! - [`agent`]: one agent; [`site_form`]: its site configuration form and place on the map;
//!   [`owner_form`]: its owner-access settings.
//! - [`devices`]: the agent's devices.

pub mod agent;
pub mod agents;
pub mod auth;
pub mod devices;
pub mod layout;
pub mod map;
pub mod owner_form;
pub mod site_form;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::api::owner::session::SignInLimiter;
use crate::app::App;

/// What the pages reach.
#[derive(Clone)]
pub struct WebState {
    pub app: App,
    pub limiter: Arc<SignInLimiter>,
}

async fn home() -> axum::response::Response {
    auth::redirect("/agents", None)
}

/// The pages, ready to merge into the portal's router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
        .route("/sign-out", post(auth::sign_out))
        .route("/agents", get(agents::list))
        .route("/agents.csv", get(agents::csv))
        .route("/map", get(agents::map))
        .route("/agents/{id}", get(agent::show))
        .route("/agents/{id}/site", post(site_form::save))
        .route("/agents/{id}/owner", post(owner_form::save))
        .route("/agents/{id}/rename", post(agent::rename))
        .route("/agents/{id}/extend", post(agent::extend))
        .route("/agents/{id}/deactivate", post(agent::deactivate))
        .route("/agents/{id}/reactivate", post(agent::reactivate))
        .route(
            "/agents/{id}/cleanup",
            get(agent::confirm_cleanup).post(agent::cleanup),
        )
        .route(
            "/agents/{id}/delete",
            get(agent::confirm_delete).post(agent::delete),
        )
        .route("/agents/{id}/devices", get(devices::table))
        .route("/agents/{id}/devices/{device}", get(devices::device))
        .route("/agents/{id}/devices/{device}/block", post(devices::block))
        .route(
            "/agents/{id}/devices/{device}/unblock",
            post(devices::unblock),
        )
        .route("/agents/{id}/devices/{device}/power", post(devices::power))
        .route(
            "/agents/{id}/devices/{device}/owner-flags",
            post(devices::set_flags),
        )
        .with_state(WebState {
            app,
            limiter: Arc::new(SignInLimiter::default()),
        })
}
