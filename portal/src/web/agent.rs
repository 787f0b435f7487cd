//! One agent in the technician pages: its facts (the "Edit Agent" box: activation date, package version,
//! local IP, MAC, public IP, platform, location; for yearly and quarterly plans the renewal date, its flag
//! and a link to the renewal page), the site and customer configuration form, the lifecycle
//! actions (rename, extend, deactivate, reactivate, cleanup, delete: the last two ask first, and delete
//! explains that the agent must be disconnected, which the server enforces too), its updates (version,
//! target, whether it can update itself, the latest attempt with the reason when it failed or rolled back,
//! and the last few attempts), a link to its settings page, its Diagnostics (restart, recent log lines,
//! health: `super::diagnostics`) and the agent's history.
//! Every action redirects back with a notice, or shows the server's refusal.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{confirm_page, html_response, page, when, when_opt, Notice};
use super::WebState;
use super::{owner_form, site_form};
use crate::access::Action as Can;
use crate::api::agents::parse_until;
use crate::api::error::AppError;
use crate::api::owner::Problem;
use crate::app::App;
use crate::lifecycle::{Action, Status};
use crate::listing::{display_status, renewal_flag, renews_at};

/// The notices a redirect back to the agent page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "renamed" => "Renamed; the agent takes the new name the next time it is connected.",
        "extended" => "Subscription extended.",
        "deactivated" => "Deactivation requested.",
        "reactivated" => "Agent reactivated.",
        "cleanup" => "Cleanup started: the agent's data is wiped; its name, subscription and site configuration stay.",
        "site" => "Site configuration saved.",
        "moved" => "Moved to the chosen group.",
        "restart" => "Restart sent: the agent restarts now (or when it next connects) and is back in a few seconds.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct AgentQuery {
    pub ok: Option<String>,
}

pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
    Query(query): Query<AgentQuery>,
) -> Response {
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let notice = query.ok.as_deref().and_then(done_notice).map(Notice::ok);
    render(&state, &tech, &id, notice, None, StatusCode::OK).await
}

/// The whole agent page; `site_input` re-shows a refused site form with its field errors.
pub async fn render(
    state: &WebState,
    tech: &Tech,
    id: &AgentId,
    notice: Option<Notice>,
    site_input: Option<site_form::Refused>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let row = match app.agent(id).await {
        Ok(row) => row,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let history = app.agent_history(id).await.unwrap_or_default();
    let facts = app.update_facts(id).await.unwrap_or_default();
    let attempts = app.agent_updates(id, 5).await.unwrap_or_default();
    let stored = match app.site(id).await {
        Ok(stored) => stored,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let site = match site_input {
        Some(refused) => site_form::form(tech.csrf(), id, &refused.input, &refused.errors),
        None => site_form::form(
            tech.csrf(),
            id,
            &site_form::FormInput::from_config(&stored),
            &[],
        ),
    };
    let location = site_form::location_markup(app, id, stored.pin).await;
    let owner = owner_form::section(app, tech.csrf(), id).await;
    let group = super::groups::agent_section(app, tech, &row).await;
    let online = app.is_online(&row);
    let base = format!("/agents/{id}");
    let csrf = tech.csrf();
    let s = &row.subscription;
    // A supervisor sees every form greyed out (the server refuses their posts anyway).
    let edit = tech.may(Can::AgentsEdit);
    let lifecycle = tech.may(Can::AgentsLifecycle);
    let renews = renews_at(&row);
    let flag = renewal_flag(&row, app.now());
    let body = html! {
        p { a href="/agents" { "← Agents" } }
        h1 { (row.name) " "
            @if online { span.badge.on { "online" } } @else { span.badge.off { "offline" } } }
        p.actions {
            a.button href={ (base) "/devices" } { "Devices" }
            a.button.quiet #settings-link href={ (base) "/settings" } { "Settings" }
            @if s.plan.renews() && tech.may(Can::RenewalsDecide) {
                a.button.quiet #renewal href={ (base) "/renewal" } { "Renewal…" }
            }
        }
        h2 { "Agent" }
        dl.facts #facts {
            dt { "Agent id" } dd { code { (row.id) } }
            dt { "Status" } dd #status { (display_status(&row).label()) }
            dt { "Plan" } dd #plan { (s.plan.label()) }
            @if s.plan.renews() {
                @if let Some(t) = renews {
                    dt { "Renews" } dd #renews { (when(t))
                        @if let Some(f) = flag { " " (super::renewal::badge(f, Some(t))) }
                    }
                } @else if let Some(t) = s.expires_at {
                    dt { "Period ends" } dd #expires { (when(t)) }
                }
            } @else if let Some(t) = s.expires_at { dt { "Expires" } dd #expires { (when(t)) } }
            @if let Some(t) = s.deactivates_at { dt { "Deactivates" } dd { (when(t)) } }
            dt { "Activated" } dd { (when(row.activated_at)) }
            dt { "Package version" } dd { (row.version.as_deref().unwrap_or("—")) }
            dt { "Platform" } dd { (row.platform.as_deref().unwrap_or("—")) }
            dt { "Host name" } dd { (row.hostname.as_deref().unwrap_or("—")) }
            dt { "Local IP" } dd { (row.local_ip.as_deref().unwrap_or("—")) }
            dt { "MAC" } dd { (row.mac.as_deref().unwrap_or("—")) }
            dt { "Public IP" } dd #public-ip { (row.public_ip.as_deref().unwrap_or("—")) }
            dt { "Last seen" } dd { (when_opt(row.last_seen)) }
            dt { "Location" } dd #location { (location) }
        }
        @if !(edit && lifecycle) {
            p.muted #read-only { "Your role (" (tech.caller.role.label()) ") may look but not change some or all of this agent." }
        }
        h2 { "Updates" }
        (updates_section(row.version.as_deref(), &facts, &attempts))
        h2 { "Name" }
        fieldset.plain disabled[!edit] { form method="post" action={ (base) "/rename" } {
            input type="hidden" name="csrf" value=(csrf);
            div.grid { div {
                label for="name" { "Agent name" }
                input #name type="text" name="name" value=(row.name) maxlength="100" required;
            } }
            div.actions { button #rename type="submit" { "Rename" } }
        } }
        (group)
        h2 { "Site and customer" }
        fieldset.plain disabled[!edit] { (site) }
        h2 { "Owner access" }
        fieldset.plain disabled[!edit] { (owner) }
        h2 { "Subscription" }
        fieldset.plain disabled[!lifecycle] {
        form method="post" action={ (base) "/extend" } {
            input type="hidden" name="csrf" value=(csrf);
            div.grid { div {
                label for="until" { "Extend until" }
                input #until type="date" name="until" required;
            } }
            div.actions { button #extend type="submit" { "Extend" } }
        }
        div.actions {
            @if matches!(s.status, Status::Active) {
                form.inline method="post" action={ (base) "/deactivate" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.quiet #deactivate type="submit" { "Deactivate" }
                }
            } @else {
                form.inline method="post" action={ (base) "/reactivate" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.quiet #reactivate type="submit" { "Reactivate" }
                }
            }
        }
        }
        (super::diagnostics::section(tech, id))
        h2 { "Data" }
        @if lifecycle {
            div.actions {
                a.button.quiet #cleanup href={ (base) "/cleanup" } { "Clean up…" }
                a.button.quiet #delete href={ (base) "/delete" } { "Delete…" }
            }
        }
        p.muted { "Delete works only while the agent is disconnected." }
        h2 { "History" }
        (history_table(&history))
    };
    html_response(
        status,
        page(&row.name, Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// What a state reads as on the page.
fn update_label(state: outpost_cloud_link::update::UpdateState) -> &'static str {
    use outpost_cloud_link::update::UpdateState as S;
    match state {
        S::Pending => "sent, waiting for the agent",
        S::Downloading => "downloading",
        S::Installed => "installed, waiting for the new version to check in",
        S::Committed => "committed",
        S::RolledBack => "rolled back",
        S::Failed => "failed",
    }
}

/// The agent's version, target, whether it can update, its latest update attempt (with why it failed or
/// rolled back) and its last few attempts.
fn updates_section(
    version: Option<&str>,
    facts: &crate::app::rollouts::UpdateFacts,
    attempts: &[crate::store::rollouts::UpdateRow],
) -> Markup {
    html! {
        dl.facts #updates {
            dt { "Version" } dd #update-version { (version.unwrap_or("—")) }
            dt { "Target" } dd #update-target { (facts.target.as_deref().unwrap_or("— (not reported: the agent predates updates)")) }
            dt { "Can update itself" } dd #updatable {
                @if facts.updatable { "yes" } @else { "no (not started by outpost-agent launch)" }
            }
            dt { "Latest update" } dd #update-state {
                @if let Some(u) = &facts.latest {
                    (u.version) ": " (update_label(u.state))
                    @if u.state.is_failure() {
                        " — "
                        @if let Some(code) = &u.code { code { (code) } " " }
                        (u.reason.as_deref().unwrap_or(""))
                    }
                    " (" (when(u.updated_at)) ")"
                } @else { "none" }
            }
        }
        @if !attempts.is_empty() {
            div.scroll { table #update-attempts {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Version" } th scope="col" { "From" }
                    th scope="col" { "State" } th scope="col" { "Why" } th scope="col" { "Rollout" }
                } }
                tbody { @for u in attempts { tr {
                    td { (when(u.created_at)) }
                    td { (u.version) }
                    td { (u.from_version.as_deref().unwrap_or("—")) }
                    td { (u.state.as_str()) }
                    td {
                        @if let Some(code) = &u.code { code { (code) } " " }
                        (u.reason.as_deref().unwrap_or(""))
                    }
                    td { @if let Some(r) = u.rollout_id { a href={ "/rollouts#rollout-" (r) } { (r) } } @else { "—" } }
                } } }
            } }
        }
    }
}

fn history_table(entries: &[crate::store::history::Entry]) -> Markup {
    html! {
        @if entries.is_empty() { p.muted { "Nothing yet." } }
        @else {
            div.scroll { table #history {
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Who" } th scope="col" { "Details" } } }
                tbody { @for e in entries.iter().rev() { tr {
                    td { (when(e.at)) } td { (e.action) } td { (e.actor) } td { (e.details) }
                } } }
            } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LifecycleForm {
    pub csrf: Option<String>,
    pub name: Option<String>,
    pub until: Option<String>,
    pub confirm: Option<String>,
}

/// What a lifecycle form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Rename,
    Extend,
    Deactivate,
    Reactivate,
    Cleanup,
    Delete,
}

async fn lifecycle(
    state: WebState,
    tech: Tech,
    headers: HeaderMap,
    id: String,
    form: Result<Form<LifecycleForm>, FormRejection>,
    verb: Verb,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let field = |get: fn(&LifecycleForm) -> Option<&String>| {
        form.as_ref()
            .and_then(get)
            .map(String::as_str)
            .unwrap_or("")
    };
    let confirmed = field(|f| f.confirm.as_ref()) == "yes";
    let actor = tech.actor();
    let app = &state.app;
    let result: Result<&str, AppError> = match verb {
        Verb::Rename => app
            .rename(&id, field(|f| f.name.as_ref()), &actor)
            .await
            .map(|_| "renamed")
            .map_err(AppError::from),
        Verb::Extend => match parse_until(field(|f| f.until.as_ref())) {
            Ok(until) => app
                .lifecycle(&id, Action::Extend { until }, &actor)
                .await
                .map(|_| "extended")
                .map_err(AppError::from),
            Err(e) => Err(e),
        },
        Verb::Deactivate => app
            .lifecycle(&id, Action::Deactivate, &actor)
            .await
            .map(|_| "deactivated")
            .map_err(AppError::from),
        Verb::Reactivate => app
            .lifecycle(&id, Action::Reactivate, &actor)
            .await
            .map(|_| "reactivated")
            .map_err(AppError::from),
        Verb::Cleanup if confirmed => app
            .cleanup(&id, &actor)
            .await
            .map(|_| "cleanup")
            .map_err(AppError::from),
        Verb::Delete if confirmed => match app.delete(&id, &actor).await {
            Ok(()) => return redirect("/agents?ok=deleted", None),
            Err(e) => Err(AppError::from(e)),
        },
        Verb::Cleanup | Verb::Delete => return redirect(&format!("/agents/{id}"), None),
    };
    match result {
        Ok(key) => redirect(&format!("/agents/{id}?ok={key}"), None),
        Err(e) => {
            let problem = Problem::from(e);
            render(
                &state,
                &tech,
                &id,
                Some(Notice::error(problem.message)),
                None,
                problem.status,
            )
            .await
        }
    }
}

macro_rules! lifecycle_route {
    ($name:ident, $verb:expr) => {
        pub async fn $name(
            State(state): State<WebState>,
            tech: Tech,
            headers: HeaderMap,
            Path(id): Path<String>,
            form: Result<Form<LifecycleForm>, FormRejection>,
        ) -> Response {
            lifecycle(state, tech, headers, id, form, $verb).await
        }
    };
}

lifecycle_route!(rename, Verb::Rename);
lifecycle_route!(extend, Verb::Extend);
lifecycle_route!(deactivate, Verb::Deactivate);
lifecycle_route!(reactivate, Verb::Reactivate);
lifecycle_route!(cleanup, Verb::Cleanup);
lifecycle_route!(delete, Verb::Delete);

/// `GET /agents/{id}/cleanup`: what a cleanup does, and the button that does it.
pub async fn confirm_cleanup(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
) -> Response {
    confirm(state, tech, id, Verb::Cleanup).await
}

/// `GET /agents/{id}/delete`: what a deletion does, that the agent must be disconnected, and the button.
pub async fn confirm_delete(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
) -> Response {
    confirm(state, tech, id, Verb::Delete).await
}

async fn confirm(state: WebState, tech: Tech, id: String, verb: Verb) -> Response {
    let row = match App::parse_agent_id(&id) {
        Ok(id) => state.app.agent(&id).await,
        Err(e) => Err(e),
    };
    let row = match row {
        Ok(row) => row,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let base = format!("/agents/{}", row.id);
    let online = state.app.is_online(&row);
    let (title, explanation, button) = match verb {
        Verb::Cleanup => (
            format!("Clean up {}?", row.name),
            html! {
                p { "A cleanup wipes everything the agent collected: its devices, events, blocks and outlet bindings, on the agent and in the portal. It cannot be undone." }
                p { "The agent keeps its name, its subscription and this site's customer configuration." }
            },
            "Clean up",
        ),
        _ => (
            format!("Delete {}?", row.name),
            html! {
                p { "Deleting removes the agent, its data and its site configuration from the portal for good; the agent can only come back with a new activation code." }
                p { strong { "The agent must be disconnected first" } " (stop it at the site, or deactivate it and wait until it is offline); the portal refuses to delete a connected agent." }
                @if online { p.notice.error role="alert" { "This agent is connected right now, so the portal will refuse." } }
            },
            "Delete",
        ),
    };
    let action = format!(
        "{base}/{}",
        if verb == Verb::Cleanup {
            "cleanup"
        } else {
            "delete"
        }
    );
    html_response(
        StatusCode::OK,
        confirm_page(
            tech.viewer(),
            &title,
            explanation,
            &action,
            &[],
            button,
            &base,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_redirect_notice_is_known() {
        for key in [
            "renamed",
            "extended",
            "deactivated",
            "reactivated",
            "cleanup",
            "site",
            "moved",
            "restart",
        ] {
            assert!(done_notice(key).is_some(), "{key}");
        }
        assert!(done_notice("<script>").is_none());
    }
}
