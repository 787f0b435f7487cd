//! The agent page's owner-access settings: the site owner's email, the on/off switch, and a fresh
//! invitation link when the owner has no account yet or the technician asks for one (shown once, on the
//! page that made it). Which devices the owner sees is set on each device's page.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::agent;
use super::auth::Tech;
use super::layout::{when, when_opt, Notice};
use super::WebState;
use crate::api::owner::operator::portal_origin;
use crate::api::owner::Problem;
use crate::app::owner::OwnerChange;
use crate::app::App;

/// The owner-access section of the agent page.
pub async fn section(app: &App, csrf: &str, id: &AgentId) -> Markup {
    let settings = app.owner_settings(id).await.ok();
    let email = settings
        .as_ref()
        .and_then(|s| s.email.clone())
        .unwrap_or_default();
    let enabled = settings.as_ref().is_some_and(|s| s.enabled);
    html! {
        form #owner method="post" action={ "/agents/" (id) "/owner" } {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some(s) = &settings {
                @if s.email.is_some() {
                    p.muted #owner-state {
                        @if s.has_account { "The owner has an account." } @else { "The owner has not accepted an invitation yet." }
                        " Changed " (when_opt(s.updated_at)) "."
                    }
                }
            }
            div.grid {
                div {
                    label for="owner_email" { "Owner's email" }
                    input #owner_email type="email" name="email" value=(email) maxlength="254" required;
                }
                div {
                    label { input type="checkbox" name="enabled" value="yes" checked[enabled]; " Owner access switched on" }
                    label { input type="checkbox" name="invite" value="yes"; " Make a new invitation link (for a forgotten password)" }
                }
            }
            div.actions { button #save-owner type="submit" { "Save owner access" } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct OwnerForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub email: String,
    pub enabled: Option<String>,
    pub invite: Option<String>,
}

/// `POST /agents/{id}/owner`: saves the settings and shows the invitation link when one was made.
pub async fn save(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<OwnerForm>, FormRejection>,
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
    let Some(form) = form else {
        return agent::render(
            &state,
            &tech,
            &id,
            Some(Notice::error(
                "the form arrived incomplete; reload the page and try again",
            )),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let change = OwnerChange {
        email: &form.email,
        enabled: form.enabled.as_deref() == Some("yes"),
        invite: (form.invite.as_deref() == Some("yes")).then_some(true),
    };
    let (status, notice) = match state.app.set_owner(&id, change, &tech.actor()).await {
        Ok((_, Some(invitation))) => (
            StatusCode::OK,
            Notice::ok(format!(
                "Owner access saved. Give the owner this invitation link; it works once, until {}: {}{}",
                when(invitation.expires_at),
                portal_origin(&headers, &state.app),
                invitation.path()
            )),
        ),
        Ok((_, None)) => (StatusCode::OK, Notice::ok("Owner access saved.")),
        Err(e) => {
            let problem = Problem::operator(e);
            (problem.status, Notice::error(problem.message))
        }
    };
    agent::render(&state, &tech, &id, Some(notice), None, status).await
}
