//! The technicians' web pages, served by the portal itself outside `/api/v1`: sign-in, the agents list
//! (search, filters, sorting, pages, CSV export), the multi-site map, the agent page (facts, site and
//! customer configuration, lifecycle actions, history) and the agent's devices (table, device page,
//! block/unblock/power, owner-access flags), the team, account and two-factor pages, branding.
//! Server-rendered with `maud`; the only script is the optional password-strength hint. Every
//! state-changing form carries the session's CSRF token.
//!
//! - [`auth`]: the session cookie, the [`auth::Tech`] extractor, sign-in and sign-out; [`backoff`]:
//!   growing waits after failed sign-ins; [`time_prefs`]: times in the user's format and zone.
//! - [`account`]: password links, forgot password, the account page; [`two_factor`]: 2FA setup, the
//!   sign-in code, trusted devices; [`strength`]: the live password-strength hint; [`branding`]: the
//!   company's name, contacts and logo.
//! - [`layout`]: the page frame, stylesheet and shared pieces.
//! - [`agents`]: the list, its CSV export and the map page; [`map`]: the SVG world map.
//! - [`agent`]: one agent; [`site_form`]: its site configuration form and place on the map;
//!   [`owner_form`]: its owner-access settings; [`renewal`]: its renewal decision page (yearly and
//!   quarterly plans) and the renewal badge.
//! - [`devices`]: the agent's devices.
//! - [`settings`]: the agent's portal-managed settings (state and form); [`diagnostics`]: restart, the
//!   agent's recent log lines and health, fetched live.
//! - [`rollouts`]: update rollouts (list, pause, resume, cancel, start one).
//! - [`team`]: the company's users and invitations; [`groups`]: groups and moving agents between them;
//!   [`grants`]: support access grants; [`tokens`]: the caller's API tokens; [`history`]: the account
//!   history with filters and its CSV.

pub mod account;
pub mod agent;
pub mod agents;
pub mod auth;
pub mod backoff;
pub mod branding;
pub mod devices;
pub mod diagnostics;
pub mod grants;
pub mod groups;
pub mod history;
pub mod layout;
pub mod map;
pub mod owner_form;
pub mod renewal;
pub mod rollouts;
pub mod settings;
pub mod site_form;
pub mod strength;
pub mod team;
pub mod time_prefs;
pub mod tokens;
pub mod two_factor;

use std::sync::Arc;

use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};

use crate::access::Action;
use crate::access::Action as A;
use crate::api::auth::Required;
use crate::api::owner::session::SignInLimiter;
use crate::app::App;

/// What the pages reach.
#[derive(Clone)]
pub struct WebState {
    pub app: App,
    pub limiter: Arc<SignInLimiter>,
    pub backoff: Arc<backoff::FailureBackoff>,
}

async fn home() -> axum::response::Response {
    auth::redirect("/agents", None)
}

/// A page route that needs `action` (and, for `/agents/{id}...`, the agent in the caller's scope): the
/// [`auth::Tech`] extractor checks both.
fn staff(path: &str, action: Action, route: MethodRouter<WebState>) -> MethodRouter<WebState> {
    route.route_layer(Extension(Required {
        action,
        agent_scoped: path.starts_with("/agents/{id}"),
    }))
}

/// Every staff page with its action: what the roles test walks.
pub const PAGES: &[(&str, &str, Action)] = &[
    ("get", "/agents", A::AgentsRead),
    ("get", "/agents.csv", A::AgentsRead),
    ("get", "/map", A::AgentsRead),
    ("get", "/agents/{id}", A::AgentsRead),
    ("post", "/agents/{id}/site", A::AgentsEdit),
    ("post", "/agents/{id}/owner", A::AgentsEdit),
    ("post", "/agents/{id}/rename", A::AgentsEdit),
    ("post", "/agents/{id}/extend", A::AgentsLifecycle),
    ("post", "/agents/{id}/deactivate", A::AgentsLifecycle),
    ("post", "/agents/{id}/reactivate", A::AgentsLifecycle),
    ("get", "/agents/{id}/cleanup", A::AgentsLifecycle),
    ("post", "/agents/{id}/cleanup", A::AgentsLifecycle),
    ("get", "/agents/{id}/delete", A::AgentsLifecycle),
    ("post", "/agents/{id}/delete", A::AgentsLifecycle),
    ("get", "/agents/{id}/renewal", A::RenewalsDecide),
    ("post", "/agents/{id}/renewal", A::RenewalsDecide),
    ("get", "/agents/{id}/devices", A::AgentsRead),
    ("get", "/agents/{id}/settings", A::AgentsRead),
    ("post", "/agents/{id}/settings", A::AgentsControl),
    ("post", "/agents/{id}/restart", A::AgentsControl),
    ("get", "/agents/{id}/logs", A::AgentsRead),
    ("get", "/agents/{id}/health", A::AgentsRead),
    ("get", "/agents/{id}/devices/{device}", A::AgentsRead),
    (
        "post",
        "/agents/{id}/devices/{device}/block",
        A::AgentsControl,
    ),
    (
        "post",
        "/agents/{id}/devices/{device}/unblock",
        A::AgentsControl,
    ),
    (
        "post",
        "/agents/{id}/devices/{device}/power",
        A::AgentsControl,
    ),
    (
        "post",
        "/agents/{id}/devices/{device}/owner-flags",
        A::AgentsEdit,
    ),
    ("get", "/account", A::SelfRead),
    ("post", "/account/preferences", A::SelfEdit),
    ("post", "/account/password/change", A::SelfEdit),
    ("post", "/account/email/change", A::SelfEdit),
    ("post", "/account/sign-out-everywhere", A::SelfEdit),
    ("get", "/account/security", A::SelfRead),
    ("post", "/account/two-factor/start", A::SelfEdit),
    ("post", "/account/two-factor/confirm", A::SelfEdit),
    ("post", "/account/two-factor/disable", A::SelfEdit),
    ("post", "/account/two-factor/devices/remove", A::SelfEdit),
    ("get", "/team", A::UsersRead),
    ("post", "/team/invite", A::UsersManage),
    ("post", "/team/{id}/role", A::UsersManage),
    ("post", "/team/{id}/two-factor", A::UsersManage),
    ("post", "/team/{id}/sign-out", A::UsersManage),
    ("get", "/team/{id}/remove", A::UsersManage),
    ("post", "/team/{id}/remove", A::UsersManage),
    ("get", "/groups", A::GroupsRead),
    ("post", "/groups/new", A::GroupsManage),
    ("get", "/groups/{id}", A::GroupsRead),
    ("post", "/groups/{id}/edit", A::GroupsManage),
    ("post", "/groups/{id}/users", A::GroupsManage),
    ("post", "/groups/{id}/delete", A::GroupsManage),
    ("post", "/agents/{id}/group", A::AgentsMove),
    ("get", "/support-grants", A::GrantsManage),
    ("post", "/support-grants/new", A::GrantsManage),
    ("post", "/support-grants/{id}/delete", A::GrantsManage),
    ("get", "/account/tokens", A::SelfRead),
    ("post", "/account/tokens/new", A::SelfEdit),
    ("post", "/account/tokens/{id}/revoke", A::SelfEdit),
    ("get", "/history", A::HistoryRead),
    ("get", "/history.csv", A::HistoryRead),
    ("get", "/branding", A::BrandingManage),
    ("post", "/branding", A::BrandingManage),
    ("post", "/branding/logo", A::BrandingManage),
    ("post", "/branding/logo/delete", A::BrandingManage),
    ("get", "/rollouts", A::UpdatesRead),
    ("post", "/rollouts/new", A::UpdatesManage),
    ("post", "/rollouts/{id}/pause", A::UpdatesManage),
    ("post", "/rollouts/{id}/resume", A::UpdatesManage),
    ("post", "/rollouts/{id}/cancel", A::UpdatesManage),
];

/// The pages, ready to merge into the portal's router.
pub fn router(app: App) -> Router {
    use axum::routing::get as g;
    use axum::routing::post as p;
    let s = staff;
    let state = WebState {
        app,
        limiter: Arc::new(SignInLimiter::default()),
        backoff: Arc::new(backoff::FailureBackoff::default()),
    };
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
        .route("/sign-out", post(auth::sign_out))
        .route("/account/password/strength", post(strength::check))
        .route("/assets/password-strength.js", get(strength::script))
        .route("/agents", s("/agents", A::AgentsRead, g(agents::list)))
        .route(
            "/agents.csv",
            s("/agents.csv", A::AgentsRead, g(agents::csv)),
        )
        .route("/map", s("/map", A::AgentsRead, g(agents::map)))
        .route(
            "/agents/{id}",
            s("/agents/{id}", A::AgentsRead, g(agent::show)),
        )
        .route(
            "/agents/{id}/site",
            s("/agents/{id}", A::AgentsEdit, p(site_form::save)),
        )
        .route(
            "/agents/{id}/owner",
            s("/agents/{id}", A::AgentsEdit, p(owner_form::save)),
        )
        .route(
            "/agents/{id}/rename",
            s("/agents/{id}", A::AgentsEdit, p(agent::rename)),
        )
        .route(
            "/agents/{id}/extend",
            s("/agents/{id}", A::AgentsLifecycle, p(agent::extend)),
        )
        .route(
            "/agents/{id}/deactivate",
            s("/agents/{id}", A::AgentsLifecycle, p(agent::deactivate)),
        )
        .route(
            "/agents/{id}/reactivate",
            s("/agents/{id}", A::AgentsLifecycle, p(agent::reactivate)),
        )
        .route(
            "/agents/{id}/cleanup",
            s(
                "/agents/{id}",
                A::AgentsLifecycle,
                g(agent::confirm_cleanup).post(agent::cleanup),
            ),
        )
        .route(
            "/agents/{id}/delete",
            s(
                "/agents/{id}",
                A::AgentsLifecycle,
                g(agent::confirm_delete).post(agent::delete),
            ),
        )
        .route(
            "/agents/{id}/renewal",
            s(
                "/agents/{id}",
                A::RenewalsDecide,
                g(renewal::show).post(renewal::decide),
            ),
        )
        .route(
            "/agents/{id}/devices",
            s("/agents/{id}", A::AgentsRead, g(devices::table)),
        )
        .route(
            "/agents/{id}/settings",
            s("/agents/{id}", A::AgentsRead, g(settings::show)).merge(s(
                "/agents/{id}",
                A::AgentsControl,
                p(settings::save),
            )),
        )
        .route(
            "/agents/{id}/restart",
            s("/agents/{id}", A::AgentsControl, p(diagnostics::restart)),
        )
        .route(
            "/agents/{id}/logs",
            s("/agents/{id}", A::AgentsRead, g(diagnostics::logs)),
        )
        .route(
            "/agents/{id}/health",
            s("/agents/{id}", A::AgentsRead, g(diagnostics::health)),
        )
        .route(
            "/agents/{id}/devices/{device}",
            s("/agents/{id}", A::AgentsRead, g(devices::device)),
        )
        .route(
            "/agents/{id}/devices/{device}/block",
            s("/agents/{id}", A::AgentsControl, p(devices::block)),
        )
        .route(
            "/agents/{id}/devices/{device}/unblock",
            s("/agents/{id}", A::AgentsControl, p(devices::unblock)),
        )
        .route(
            "/agents/{id}/devices/{device}/power",
            s("/agents/{id}", A::AgentsControl, p(devices::power)),
        )
        .route(
            "/agents/{id}/devices/{device}/owner-flags",
            s("/agents/{id}", A::AgentsEdit, p(devices::set_flags)),
        )
        .route(
            "/account/password",
            g(account::password_form).post(account::set_password),
        )
        .route(
            "/account/forgot",
            g(account::forgot_form).post(account::forgot),
        )
        .route(
            "/account/email",
            g(account::email_form).post(account::confirm_email),
        )
        .route(
            "/sign-in/code",
            g(two_factor::code_form).post(two_factor::code),
        )
        .route(
            "/account/two-factor/setup",
            g(two_factor::setup_form).post(two_factor::setup),
        )
        .route("/account", s("/account", A::SelfRead, g(account::show)))
        .route(
            "/account/preferences",
            s("/account", A::SelfEdit, p(account::save_preferences)),
        )
        .route(
            "/account/password/change",
            s("/account", A::SelfEdit, p(account::change_password)),
        )
        .route(
            "/account/email/change",
            s("/account", A::SelfEdit, p(account::change_email)),
        )
        .route(
            "/account/sign-out-everywhere",
            s("/account", A::SelfEdit, p(account::sign_out_everywhere)),
        )
        .route(
            "/account/security",
            s("/account", A::SelfRead, g(two_factor::security)),
        )
        .route(
            "/account/two-factor/start",
            s("/account", A::SelfEdit, p(two_factor::start)),
        )
        .route(
            "/account/two-factor/confirm",
            s("/account", A::SelfEdit, p(two_factor::confirm)),
        )
        .route(
            "/account/two-factor/disable",
            s("/account", A::SelfEdit, p(two_factor::disable)),
        )
        .route(
            "/account/two-factor/devices/remove",
            s("/account", A::SelfEdit, p(two_factor::remove_device)),
        )
        .route("/team", s("/team", A::UsersRead, g(team::show)))
        .route("/team/invite", s("/team", A::UsersManage, p(team::invite)))
        .route(
            "/team/{id}/role",
            s("/team", A::UsersManage, p(team::set_role)),
        )
        .route(
            "/team/{id}/two-factor",
            s("/team", A::UsersManage, p(team::set_two_factor)),
        )
        .route(
            "/team/{id}/sign-out",
            s("/team", A::UsersManage, p(team::sign_out)),
        )
        .route(
            "/team/{id}/remove",
            s(
                "/team",
                A::UsersManage,
                g(team::confirm_remove).post(team::remove),
            ),
        )
        .route("/groups", s("/groups", A::GroupsRead, g(groups::list)))
        .route(
            "/groups/new",
            s("/groups", A::GroupsManage, p(groups::create)),
        )
        .route("/groups/{id}", s("/groups", A::GroupsRead, g(groups::show)))
        .route(
            "/groups/{id}/edit",
            s("/groups", A::GroupsManage, p(groups::edit)),
        )
        .route(
            "/groups/{id}/users",
            s("/groups", A::GroupsManage, p(groups::set_users)),
        )
        .route(
            "/groups/{id}/delete",
            s("/groups", A::GroupsManage, p(groups::delete)),
        )
        .route(
            "/agents/{id}/group",
            s("/agents/{id}", A::AgentsMove, p(groups::move_agent)),
        )
        .route(
            "/support-grants",
            s("/support-grants", A::GrantsManage, g(grants::list)),
        )
        .route(
            "/support-grants/new",
            s("/support-grants", A::GrantsManage, p(grants::create)),
        )
        .route(
            "/support-grants/{id}/delete",
            s("/support-grants", A::GrantsManage, p(grants::delete)),
        )
        .route(
            "/account/tokens",
            s("/account", A::SelfRead, g(tokens::list)),
        )
        .route(
            "/account/tokens/new",
            s("/account", A::SelfEdit, p(tokens::create)),
        )
        .route(
            "/account/tokens/{id}/revoke",
            s("/account", A::SelfEdit, p(tokens::revoke)),
        )
        .route("/history", s("/history", A::HistoryRead, g(history::show)))
        .route(
            "/history.csv",
            s("/history", A::HistoryRead, g(history::csv)),
        )
        .route(
            "/branding",
            s(
                "/branding",
                A::BrandingManage,
                g(branding::show).post(branding::save),
            ),
        )
        .route(
            "/branding/logo",
            s("/branding", A::BrandingManage, p(branding::upload)),
        )
        .route(
            "/branding/logo/delete",
            s("/branding", A::BrandingManage, p(branding::remove_logo)),
        )
        .route(
            "/rollouts",
            s("/rollouts", A::UpdatesRead, g(rollouts::list)),
        )
        .route(
            "/rollouts/new",
            s("/rollouts", A::UpdatesManage, p(rollouts::create)),
        )
        .route(
            "/rollouts/{id}/pause",
            s("/rollouts", A::UpdatesManage, p(rollouts::pause)),
        )
        .route(
            "/rollouts/{id}/resume",
            s("/rollouts", A::UpdatesManage, p(rollouts::resume)),
        )
        .route(
            "/rollouts/{id}/cancel",
            s("/rollouts", A::UpdatesManage, p(rollouts::cancel)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_prefs::scope,
        ))
        .with_state(state)
}
