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

pub mod account;
pub mod agent;
pub mod agents;
pub mod auth;
pub mod devices;
pub mod layout;
pub mod map;
pub mod owner_form;
pub mod site_form;
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
    ("get", "/agents/{id}/devices", A::AgentsRead),
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
];

/// The pages, ready to merge into the portal's router.
pub fn router(app: App) -> Router {
    use axum::routing::get as g;
    use axum::routing::post as p;
    let s = staff;
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
        .route("/sign-out", post(auth::sign_out))
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
            "/agents/{id}/devices",
            s("/agents/{id}", A::AgentsRead, g(devices::table)),
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
        .with_state(WebState {
            app,
            limiter: Arc::new(SignInLimiter::default()),
        })
}
