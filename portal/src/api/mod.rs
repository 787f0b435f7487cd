//! The HTTPS API under `/api/v1` (axum): the routes of ARCHITECTURE.md, one [`error::AppError`] for every
//! failure, bearer tokens for operators, HTTP Basic for agents, a per-address limit on activation.
//!
//! - [`agent_facing`]: `POST /activate`, `GET /agent/status`; [`releases`]: signed agent releases (the
//!   staff list and removal, the agents' manifest and binary downloads).
//! - [`agents`]: operator routes on agents (the list, its CSV export); [`sites`]: an agent's site
//!   configuration; [`commands`]: commands; [`devices`]: an agent's device inventory
//!   and device events; [`control`]: blocking, unblocking and powering a device, its outlet binding;
//!   [`account`]: history, codes, dev clock; [`renewals`]: renewal decisions; [`rollouts`]: update
//!   rollouts and agents' update attempts; [`settings`]: agent settings pushed from the portal and their
//!   schema; [`diagnostics`]: restart, the agent's logs and health.
//! - [`owner`]: owner access (the operator's owner settings and device flags, the owner's JSON API under
//!   `/owner`, and the owner's pages under `/owner` outside the API prefix).
//! - [`auth`], [`rate_limit`], [`error`], [`views`] (JSON shapes), [`openapi`] (the served document).

pub mod account;
pub mod agent_facing;
pub mod agents;
pub mod auth;
pub mod branding;
pub mod commands;
pub mod control;
pub mod devices;
pub mod diagnostics;
pub mod error;
pub mod groups;
pub mod openapi;
pub mod owner;
pub mod people;
pub mod rate_limit;
pub mod releases;
pub mod renewals;
pub mod rollouts;
pub mod settings;
pub mod sites;
pub mod views;

use std::sync::Arc;

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::access::Action;
use crate::app::App;
pub use auth::Access;
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

/// Builds the router and records every (method, path, access) it serves, so the OpenAPI test can
/// compare and the roles test can walk every route. With a state, every staff route gets its
/// [`auth::guard`].
struct Routes {
    router: Router<ApiState>,
    table: Vec<(&'static str, &'static str, Access)>,
    state: Option<ApiState>,
}

impl Routes {
    fn add<H, T>(
        mut self,
        method: &'static str,
        path: &'static str,
        access: Access,
        wrap: fn(H) -> MethodRouter<ApiState>,
        handler: H,
    ) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let mut route = wrap(handler);
        if let (Some(state), Access::Staff(action)) = (&self.state, access) {
            let required = auth::Required {
                action,
                agent_scoped: path.starts_with("/agents/{id}"),
            };
            route = route.route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), required),
                auth::guard,
            ));
        }
        self.router = self.router.route(path, route);
        self.table.push((method, path, access));
        self
    }
}

fn build(options: ApiOptions, state: Option<ApiState>) -> Routes {
    use routing::{delete, get, patch, post, put};
    use Access::{Agent, Owner, Public, Staff};
    use Action as A;
    let routes = Routes {
        router: Router::new(),
        table: Vec::new(),
        state,
    }
    .add("get", "/openapi.json", Public, get, openapi::document)
    .add("post", "/activate", Public, post, agent_facing::activate)
    .add("get", "/agent/status", Agent, get, agent_facing::status)
    .add(
        "get",
        "/agent/releases/{id}/manifest",
        Agent,
        get,
        releases::manifest,
    )
    .add(
        "get",
        "/agent/releases/{id}/binary",
        Agent,
        get,
        releases::binary,
    )
    .add("get", "/agents", Staff(A::AgentsRead), get, agents::list)
    .add(
        "get",
        "/agents.csv",
        Staff(A::AgentsRead),
        get,
        agents::export_csv,
    )
    .add(
        "get",
        "/agents/{id}",
        Staff(A::AgentsRead),
        get,
        agents::get,
    )
    .add(
        "patch",
        "/agents/{id}",
        Staff(A::AgentsEdit),
        patch,
        agents::rename,
    )
    .add(
        "delete",
        "/agents/{id}",
        Staff(A::AgentsLifecycle),
        delete,
        agents::delete,
    )
    .add(
        "post",
        "/agents/{id}/cleanup",
        Staff(A::AgentsLifecycle),
        post,
        agents::cleanup,
    )
    .add(
        "post",
        "/agents/{id}/deactivate",
        Staff(A::AgentsLifecycle),
        post,
        agents::deactivate,
    )
    .add(
        "post",
        "/agents/{id}/reactivate",
        Staff(A::AgentsLifecycle),
        post,
        agents::reactivate,
    )
    .add(
        "post",
        "/agents/{id}/extend",
        Staff(A::AgentsLifecycle),
        post,
        agents::extend,
    )
    .add(
        "post",
        "/agents/{id}/renewal",
        Staff(A::RenewalsDecide),
        post,
        renewals::decide,
    )
    .add(
        "get",
        "/agents/{id}/history",
        Staff(A::AgentsRead),
        get,
        agents::history,
    )
    .add(
        "get",
        "/agents/{id}/data",
        Staff(A::AgentsRead),
        get,
        agents::data,
    )
    .add(
        "get",
        "/agents/{id}/site",
        Staff(A::AgentsRead),
        get,
        sites::get,
    )
    .add(
        "put",
        "/agents/{id}/site",
        Staff(A::AgentsEdit),
        put,
        sites::put,
    )
    .add(
        "get",
        "/agents/{id}/devices",
        Staff(A::AgentsRead),
        get,
        devices::list,
    )
    .add(
        "get",
        "/agents/{id}/events",
        Staff(A::AgentsRead),
        get,
        devices::events,
    )
    .add(
        "get",
        "/agents/{id}/devices/{device}",
        Staff(A::AgentsRead),
        get,
        devices::get,
    )
    .add(
        "post",
        "/agents/{id}/devices/{device}/block",
        Staff(A::AgentsControl),
        post,
        control::block,
    )
    .add(
        "post",
        "/agents/{id}/devices/{device}/unblock",
        Staff(A::AgentsControl),
        post,
        control::unblock,
    )
    .add(
        "post",
        "/agents/{id}/devices/{device}/power",
        Staff(A::AgentsControl),
        post,
        control::power,
    )
    .add(
        "put",
        "/agents/{id}/devices/{device}/power-outlet",
        Staff(A::AgentsEdit),
        put,
        control::put_outlet,
    )
    .add(
        "get",
        "/agents/{id}/devices/{device}/power-outlet",
        Staff(A::AgentsRead),
        get,
        control::get_outlet,
    )
    .add(
        "delete",
        "/agents/{id}/devices/{device}/power-outlet",
        Staff(A::AgentsEdit),
        delete,
        control::delete_outlet,
    )
    .add(
        "post",
        "/agents/{id}/commands",
        Staff(A::AgentsControl),
        post,
        commands::create,
    )
    .add(
        "get",
        "/agents/{id}/commands",
        Staff(A::AgentsRead),
        get,
        commands::list,
    )
    .add(
        "get",
        "/agents/{id}/commands/{cid}",
        Staff(A::AgentsRead),
        get,
        commands::get,
    )
    .add(
        "put",
        "/agents/{id}/owner",
        Staff(A::AgentsEdit),
        put,
        owner::operator::put_owner,
    )
    .add(
        "get",
        "/agents/{id}/owner",
        Staff(A::AgentsRead),
        get,
        owner::operator::get_owner,
    )
    .add(
        "put",
        "/agents/{id}/devices/{device}/owner-flags",
        Staff(A::AgentsEdit),
        put,
        owner::operator::put_flags,
    )
    .add(
        "get",
        "/agents/{id}/devices/{device}/owner-flags",
        Staff(A::AgentsRead),
        get,
        owner::operator::get_flags,
    )
    .add("get", "/owner/devices", Owner, get, owner::json::devices)
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/block",
        Owner,
        post,
        owner::json::block,
    )
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/unblock",
        Owner,
        post,
        owner::json::unblock,
    )
    .add(
        "post",
        "/owner/agents/{id}/devices/{device}/power",
        Owner,
        post,
        owner::json::power,
    )
    .add(
        "get",
        "/history",
        Staff(A::HistoryRead),
        get,
        account::history,
    )
    .add("get", "/branding", Staff(A::SelfRead), get, branding::get)
    .add(
        "put",
        "/branding",
        Staff(A::BrandingManage),
        put,
        branding::put,
    )
    .add(
        "put",
        "/branding/logo",
        Staff(A::BrandingManage),
        put,
        branding::put_logo,
    )
    .add(
        "delete",
        "/branding/logo",
        Staff(A::BrandingManage),
        delete,
        branding::delete_logo,
    )
    .add(
        "get",
        "/users",
        Staff(A::UsersRead),
        get,
        people::list_users,
    )
    .add(
        "post",
        "/users",
        Staff(A::UsersManage),
        post,
        people::invite,
    )
    .add("get", "/users/me", Staff(A::SelfRead), get, people::me)
    .add(
        "patch",
        "/users/{id}",
        Staff(A::UsersManage),
        patch,
        people::change,
    )
    .add(
        "delete",
        "/users/{id}",
        Staff(A::UsersManage),
        delete,
        people::remove,
    )
    .add(
        "post",
        "/users/{id}/sign-out",
        Staff(A::UsersManage),
        post,
        people::sign_out,
    )
    .add(
        "get",
        "/tokens",
        Staff(A::SelfRead),
        get,
        people::list_tokens,
    )
    .add(
        "post",
        "/tokens",
        Staff(A::SelfEdit),
        post,
        people::create_token,
    )
    .add(
        "delete",
        "/tokens/{id}",
        Staff(A::SelfEdit),
        delete,
        people::revoke_token,
    )
    .add("get", "/groups", Staff(A::GroupsRead), get, groups::list)
    .add(
        "post",
        "/groups",
        Staff(A::GroupsManage),
        post,
        groups::create,
    )
    .add(
        "patch",
        "/groups/{id}",
        Staff(A::GroupsManage),
        patch,
        groups::change,
    )
    .add(
        "delete",
        "/groups/{id}",
        Staff(A::GroupsManage),
        delete,
        groups::delete,
    )
    .add(
        "put",
        "/groups/{id}/users",
        Staff(A::GroupsManage),
        put,
        groups::set_users,
    )
    .add(
        "put",
        "/agents/{id}/group",
        Staff(A::AgentsMove),
        put,
        groups::move_agent,
    )
    .add(
        "get",
        "/support-grants",
        Staff(A::GrantsManage),
        get,
        groups::list_grants,
    )
    .add(
        "post",
        "/support-grants",
        Staff(A::GrantsManage),
        post,
        groups::create_grant,
    )
    .add(
        "delete",
        "/support-grants/{id}",
        Staff(A::GrantsManage),
        delete,
        groups::delete_grant,
    )
    .add(
        "post",
        "/activation-codes",
        Staff(A::CodesCreate),
        post,
        account::create_code,
    )
    .add(
        "get",
        "/releases",
        Staff(A::ReleasesRead),
        get,
        releases::list,
    )
    .add(
        "delete",
        "/releases/{id}",
        Staff(A::ReleasesManage),
        delete,
        releases::remove,
    )
    .add(
        "get",
        "/rollouts",
        Staff(A::UpdatesRead),
        get,
        rollouts::list,
    )
    .add(
        "post",
        "/rollouts",
        Staff(A::UpdatesManage),
        post,
        rollouts::create,
    )
    .add(
        "get",
        "/rollouts/{id}",
        Staff(A::UpdatesRead),
        get,
        rollouts::get,
    )
    .add(
        "post",
        "/rollouts/{id}/pause",
        Staff(A::UpdatesManage),
        post,
        rollouts::pause,
    )
    .add(
        "post",
        "/rollouts/{id}/resume",
        Staff(A::UpdatesManage),
        post,
        rollouts::resume,
    )
    .add(
        "post",
        "/rollouts/{id}/cancel",
        Staff(A::UpdatesManage),
        post,
        rollouts::cancel,
    )
    .add(
        "get",
        "/agents/{id}/updates",
        Staff(A::UpdatesRead),
        get,
        rollouts::agent_updates,
    )
    .add(
        "get",
        "/agent-settings/schema",
        Staff(A::AgentsRead),
        get,
        settings::schema,
    )
    .add(
        "get",
        "/agents/{id}/settings",
        Staff(A::AgentsRead),
        get,
        settings::get,
    )
    .add(
        "put",
        "/agents/{id}/settings",
        Staff(A::AgentsControl),
        put,
        settings::put,
    )
    .add(
        "post",
        "/agents/{id}/restart",
        Staff(A::AgentsControl),
        post,
        diagnostics::restart,
    )
    .add(
        "get",
        "/agents/{id}/logs",
        Staff(A::AgentsRead),
        get,
        diagnostics::logs,
    )
    .add(
        "get",
        "/agents/{id}/health",
        Staff(A::AgentsRead),
        get,
        diagnostics::health,
    );
    if options.dev_clock {
        routes.add(
            "put",
            "/dev/clock",
            Staff(A::UsersManage),
            put,
            account::set_clock,
        )
    } else {
        routes
    }
}

async fn no_route() -> AppError {
    AppError::NoRoute
}

/// The whole API, mounted at [`PREFIX`].
pub fn router(app: App, limiter: Arc<ActivationLimiter>, options: ApiOptions) -> Router {
    let state = ApiState {
        app: app.clone(),
        limiter,
    };
    let api = build(options, Some(state.clone()))
        .router
        .fallback(no_route);
    let owner_pages = owner::pages::router(app.clone());
    let web_pages = crate::web::router(app);
    Router::new()
        .nest(PREFIX, api)
        .fallback(no_route)
        .with_state(state)
        .merge(owner_pages)
        .merge(web_pages)
}

/// Every (lower-case method, path under [`PREFIX`]) the router serves with these options.
pub fn route_table(options: ApiOptions) -> Vec<(&'static str, &'static str)> {
    build(options, None)
        .table
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// Every route with who may call it: what the roles test walks.
pub fn access_table(options: ApiOptions) -> Vec<(&'static str, &'static str, Access)> {
    build(options, None).table
}
