//! The HTTPS API under `/api/v1` (axum): the routes of ARCHITECTURE.md, one [`error::AppError`] for every
//! failure, bearer tokens for operators, HTTP Basic for agents, a per-address limit on activation.
//!
//! - [`agent_facing`]: `POST /activate`, `GET /agent/status`.
//! - [`agents`]: operator routes on agents (the list, its CSV export); [`sites`]: an agent's site
//!   configuration; [`commands`]: commands; [`devices`]: an agent's device inventory
//!   and device events; [`control`]: blocking, unblocking and powering a device, its outlet binding;
//!   [`account`]: history, codes, dev clock.
//! - [`owner`]: owner access (the operator's owner settings and device flags, the owner's JSON API under
//!   `/owner`, and the owner's pages under `/owner` outside the API prefix).
//! - [`auth`], [`rate_limit`], [`error`], [`views`] (JSON shapes), [`openapi`] (the served document).

pub mod account;
pub mod agent_facing;
pub mod agents;
pub mod auth;
pub mod commands;
pub mod control;
pub mod devices;
pub mod error;
pub mod openapi;
pub mod owner;
pub mod rate_limit;
pub mod sites;
pub mod views;

use std::sync::Arc;

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::app::App;
use error::AppError;
use rate_limit::ActivationLimiter;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub app: App,
    pub limiter: Arc<ActivationLimiter>,
}

/// Options of the router.
#[derive(Debug, Clone, Copy)]
pub struct ApiOptions {
    /// Serve `PUT /dev/clock`.
    pub dev_clock: bool,
}

/// Builds the router and records every (method, path) it serves, so the OpenAPI test can compare.
struct Routes {
    router: Router<ApiState>,
    table: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add<H, T>(
        mut self,
        method: &'static str,
        path: &'static str,
        wrap: fn(H) -> MethodRouter<ApiState>,
        handler: H,
    ) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        self.router = self.router.route(path, wrap(handler));
        self.table.push((method, path));
        self
    }
}

fn build(options: ApiOptions) -> Routes {
    use routing::{delete, get, patch, post, put};
    let routes = Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add("get", "/openapi.json", get, openapi::document)
    .add("post", "/activate", post, agent_facing::activate)
    .add("get", "/agent/status", get, agent_facing::status)
    .add("get", "/agents", get, agents::list)
    .add("get", "/agents.csv", get, agents::export_csv)
    .add("get", "/agents/{id}", get, agents::get)
    .add("patch", "/agents/{id}", patch, agents::rename)
    .add("delete", "/agents/{id}", delete, agents::delete)
    .add("post", "/agents/{id}/cleanup", post, agents::cleanup)
    .add("post", "/agents/{id}/deactivate", post, agents::deactivate)
    .add("post", "/agents/{id}/reactivate", post, agents::reactivate)
    .add("post", "/agents/{id}/extend", post, agents::extend)
    .add("get", "/agents/{id}/history", get, agents::history)
    .add("get", "/agents/{id}/data", get, agents::data)
    .add("get", "/agents/{id}/site", get, sites::get)
    .add("put", "/agents/{id}/site", put, sites::put)
    .add("get", "/agents/{id}/devices", get, devices::list)
    .add("get", "/agents/{id}/events", get, devices::events)
    .add("get", "/agents/{id}/devices/{device}", get, devices::get)
    .add(
        "post",
        "/agents/{id}/devices/{device}/block",
        post,
        control::block,
    )
    .add(
        "post",
        "/agents/{id}/devices/{device}/unblock",
        post,
        control::unblock,
    )
    .add(
        "post",
        "/agents/{id}/devices/{device}/power",
        post,
        control::power,
    )
    .add(
        "put",
        "/agents/{id}/devices/{device}/power-outlet",
        put,
        control::put_outlet,
    )
    .add(
        "get",
        "/agents/{id}/devices/{device}/power-outlet",
        get,
        control::get_outlet,
    )
    .add(
        "delete",
        "/agents/{id}/devices/{device}/power-outlet",
        delete,
        control::delete_outlet,
    )
    .add("post", "/agents/{id}/commands", post, commands::create)
    .add("get", "/agents/{id}/commands", get, commands::list)
    .add("get", "/agents/{id}/commands/{cid}", get, commands::get)
    .add("put", "/agents/{id}/owner", put, owner::operator::put_owner)
    .add("get", "/agents/{id}/owner", get, owner::operator::get_owner)
    .add(
        "put",
        "/agents/{id}/devices/{device}/owner-flags",
        put,
        owner::operator::put_flags,
    )
    .add(
        "get",
        "/agents/{id}/devices/{device}/owner-flags",
        get,
        owner::operator::get_flags,
    )
    .add("get", "/owner/devices", get, owner::json::devices)
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/block",
        post,
        owner::json::block,
    )
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/unblock",
        post,
        owner::json::unblock,
    )
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/power",
        post,
        owner::json::power,
    )
    .add("get", "/history", get, account::history)
    .add("post", "/activation-codes", post, account::create_code);
    if options.dev_clock {
        routes.add("put", "/dev/clock", put, account::set_clock)
    } else {
        routes
    }
}

async fn no_route() -> AppError {
    AppError::NoRoute
}

/// The whole API, mounted at [`PREFIX`].
pub fn router(app: App, limiter: Arc<ActivationLimiter>, options: ApiOptions) -> Router {
    let api = build(options).router.fallback(no_route);
    let owner_pages = owner::pages::router(app.clone());
    let web_pages = crate::web::router(app.clone());
    Router::new()
        .nest(PREFIX, api)
        .fallback(no_route)
        .with_state(ApiState { app, limiter })
        .merge(owner_pages)
        .merge(web_pages)
}

/// Every (lower-case method, path under [`PREFIX`]) the router serves with these options.
pub fn route_table(options: ApiOptions) -> Vec<(&'static str, &'static str)> {
    build(options).table
}
