//! Diagnostics from the agent's page: the Diagnostics section (a Restart button, links to the logs and
//! health pages), `POST /agents/{id}/restart` (asks first unless the form confirms), and the pages
//! `/agents/{id}/logs` (recent log lines) and `/agents/{id}/health` (uptime, version, target, memory,
//! outbox, interfaces, scan times, devices, settings version), both fetched live from the agent with the
//! same `App` calls as the API, and a clear message when it is offline or does not answer.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::diagnostics::{Health, MAX_LOG_LINES};
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{confirm_page, html_response, page, when_ms, Notice};
use super::WebState;
use crate::access::Action;
use crate::api::owner::Problem;
use crate::app::diagnostics::{DiagnosticsError, DEFAULT_LOG_LINES, DIAGNOSTICS_WAIT};

/// The text next to the Restart button and on its confirmation page.
pub const RESTART_TEXT: &str = "Restarting stops the agent for a few seconds: it reconnects, rescans and \
    keeps its devices, blocks and settings. A restart asked while it is offline is sent when it next connects.";

/// The agent page's Diagnostics section.
pub fn section(tech: &Tech, id: &AgentId) -> Markup {
    let control = tech.may(Action::AgentsControl);
    html! {
        h2 { "Diagnostics" }
        p.actions {
            a.button.quiet #logs href={ "/agents/" (id) "/logs" } { "Recent log lines" }
            a.button.quiet #health href={ "/agents/" (id) "/health" } { "Health" }
            a.button.quiet #settings href={ "/agents/" (id) "/settings" } { "Settings" }
        }
        fieldset.plain disabled[!control] {
            form #restart-form method="post" action={ "/agents/" (id) "/restart" } {
                input type="hidden" name="csrf" value=(tech.csrf());
                input type="hidden" name="confirm" value="yes";
                p.muted { (RESTART_TEXT) }
                div.actions { button.danger #restart type="submit" { "Restart agent" } }
            }
        }
    }
}

fn problem_of(e: DiagnosticsError) -> Problem {
    match e {
        DiagnosticsError::Op(op) => Problem::from(op),
        other => {
            let (status, code) = crate::api::diagnostics::status_and_code(&other)
                .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, "internal"));
            Problem {
                status,
                code: code.into(),
                message: other.to_string(),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RestartForm {
    pub csrf: Option<String>,
    pub confirm: Option<String>,
}

/// `POST /agents/{id}/restart`: with `confirm=yes` queues the restart; without, asks first.
pub async fn restart(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RestartForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let back = format!("/agents/{id}");
    if form.and_then(|f| f.confirm).as_deref() != Some("yes") {
        let explanation = html! { p { (RESTART_TEXT) } };
        return html_response(
            StatusCode::OK,
            confirm_page(
                tech.viewer(),
                "Restart the agent?",
                explanation,
                &format!("/agents/{id}/restart"),
                &[],
                "Restart agent",
                &back,
            ),
        );
    }
    match state.app.restart_agent(&id, &tech.actor()).await {
        Ok(_) => redirect(&format!("/agents/{id}?ok=restart"), None),
        Err(e) => tech.problem(e, (&back, "Back to the agent")),
    }
}

/// A diagnostics page: its title, and the body or the reason there is none.
async fn diagnostics_page(
    state: &WebState,
    tech: &Tech,
    id: &AgentId,
    title: &str,
    content: Result<Markup, DiagnosticsError>,
) -> Response {
    let name = state
        .app
        .agent(id)
        .await
        .map(|a| a.name)
        .unwrap_or_else(|_| id.to_string());
    let (status, inner, notice) = match content {
        Ok(m) => (StatusCode::OK, m, None),
        Err(e) => {
            let p = problem_of(e);
            let hint = match p.code.as_str() {
                "agent_offline" => "The agent is offline: these come live from the agent. Try again once it is connected.",
                "agent_timeout" => "The agent did not answer in time. Reload the page to ask again.",
                _ => "",
            };
            let body = html! {
                @if !hint.is_empty() { p #diagnostics-problem { (hint) } }
            };
            (p.status, body, Some(Notice::error(p.message)))
        }
    };
    let body = html! {
        p { a href={ "/agents/" (id) } { "← " (name) } }
        h1 { (title) " of " (name) }
        (inner)
    };
    html_response(
        status,
        page(
            &format!("{title} of {name}"),
            Some(tech.viewer()),
            notice.as_ref(),
            body,
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    pub lines: Option<String>,
}

/// `GET /agents/{id}/logs?lines=N`.
pub async fn logs(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let lines = q
        .lines
        .as_deref()
        .and_then(|l| l.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_LOG_LINES)
        .clamp(1, MAX_LOG_LINES);
    let content = state
        .app
        .agent_logs(&id, lines, DIAGNOSTICS_WAIT)
        .await
        .map(|logs| {
            html! {
                form method="get" action={ "/agents/" (id) "/logs" } {
                    label for="lines" { "Lines " }
                    input #lines type="number" name="lines" min="1" max=(MAX_LOG_LINES) value=(lines);
                    " " button.quiet type="submit" { "Fetch again" }
                }
                p.muted { (logs.lines.len()) " line" @if logs.lines.len() != 1 { "s" }
                    @if logs.omitted > 0 { ", " (logs.omitted) " older ones not shown" } ", oldest first." }
                div.scroll { pre #log-lines { @for l in &logs.lines { (l) "\n" } } }
            }
        });
    diagnostics_page(&state, &tech, &id, "Recent log lines", content).await
}

/// The health snapshot as a table.
pub fn health_markup(h: &Health) -> Markup {
    let mib = h.rss_bytes as f64 / (1024.0 * 1024.0);
    let uptime = {
        let s = h.uptime_s;
        format!(
            "{}d {}h {}m {}s",
            s / 86_400,
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        )
    };
    html! {
        dl.facts #health-facts {
            dt { "Uptime" } dd #uptime { (uptime) }
            dt { "Version" } dd #version { (h.version) }
            dt { "Target" } dd #target { (h.target) }
            dt { "Memory (RSS)" } dd #rss { (format!("{mib:.1} MiB")) }
            dt { "Outbox" } dd #outbox { (h.outbox_depth) " queued, " (h.outbox_dropped) " dropped" }
            dt { "Devices" } dd #devices { @match h.devices { Some(n) => { (n) } None => { span.muted { "discovery off" } } } }
            dt { "Settings version" } dd #settings-version { @match h.settings_version {
                Some(v) => { "v" (v) } None => { span.muted { "no portal settings" } } } }
        }
        h2 { "Interfaces" }
        table #interfaces {
            thead { tr { th scope="col" { "Name" } th scope="col" { "MAC" } th scope="col" { "Addresses" } th scope="col" { "Last scan" } } }
            tbody { @for i in &h.interfaces {
                @let scan = h.last_scans.iter().find(|s| s.interface == i.name);
                tr {
                    td { (i.name) }
                    td { (i.mac.as_deref().unwrap_or("—")) }
                    td { (i.addrs.join(", ")) }
                    td { @match scan {
                        Some(s) => { (s.duration_ms) " ms, " (when_ms(s.at_ms)) }
                        None => { span.muted { "none finished yet" } }
                    } }
                }
            } }
        }
        @let others: Vec<_> = h.last_scans.iter().filter(|s| !h.interfaces.iter().any(|i| i.name == s.interface)).collect();
        @if !others.is_empty() {
            h2 { "Other scans" }
            ul { @for s in others { li { (s.interface) ": " (s.duration_ms) " ms, " (when_ms(s.at_ms)) } } }
        }
    }
}

/// `GET /agents/{id}/health`.
pub async fn health(State(state): State<WebState>, tech: Tech, Path(id): Path<String>) -> Response {
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let content = state
        .app
        .agent_health(&id, DIAGNOSTICS_WAIT)
        .await
        .map(|h| health_markup(&h));
    diagnostics_page(&state, &tech, &id, "Health", content).await
}
