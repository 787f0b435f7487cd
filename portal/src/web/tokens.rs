//! The API tokens page (`/account/tokens`): the caller's tokens (a company admin sees the company's),
//! each with its access, expiry and last use and a revoke button, and the form that makes a token
//! acting as the caller (a name, read-only or not, an expiry in days) and shows it once. The same `App`
//! methods as `/api/v1/tokens` do the work: only a hash is stored, and a revoked token fails at once.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{html_response, page, problem_page, when, when_opt, Notice};
use super::team::{address, invalid, parse_id, problem_of, Fields};
use super::WebState;
use crate::access::{Action, Role};
use crate::api::auth::PeerAddr;
use crate::app::users::{TokenView, MAX_TOKEN_DAYS};
use crate::app::OpError;

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

/// A token just made: shown once, with its name.
struct Made<'a> {
    name: &'a str,
    token: &'a str,
}

/// Reads the expiry field: empty is no expiry, else a whole number of days (the app checks the range).
pub fn days_of(raw: &str) -> Result<Option<i64>, OpError> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>().map(Some).map_err(|_| {
        invalid(
            "expires_in_days",
            format!("{raw:?} is not a number of days; give 1 to {MAX_TOKEN_DAYS}, or leave it empty for no expiry"),
        )
    })
}

async fn tokens_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    made: Option<Made<'_>>,
    status: StatusCode,
) -> Response {
    let tokens: Vec<TokenView> = match state.app.tokens(&tech.caller).await {
        Ok(t) => t,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/account", "Your account"),
            )
        }
    };
    let edit = tech.may(Action::SelfEdit);
    let csrf = tech.csrf();
    let body = html! {
        p { a href="/account" { "← Your account" } }
        h1 { "API tokens" }
        @if let Some(m) = &made {
            div.notice #new-token role="status" {
                p { "Token " strong { (m.name) } " made. Copy it now: it is shown only this once." }
                p { code #token-value { (m.token) } }
                p.muted { "Send it as " code { "Authorization: Bearer TOKEN" } " to /api/v1." }
            }
        }
        p.muted {
            "A token acts as the user who made it, with their role (or only reading, when read-only), until it \
             expires or is revoked."
            @if tech.caller.role == Role::CompanyAdmin { " As a company admin you see every token of the company." }
        }
        @if tokens.is_empty() { p.muted #no-tokens { "No tokens." } }
        @else {
            div.scroll { table #tokens {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "User" } th scope="col" { "Access" }
                    th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" }
                    @if edit { th scope="col" { "" } }
                } }
                tbody { @for t in &tokens { tr data-token=(t.id) {
                    td { (t.name) } td { (t.user) }
                    td { @if t.read_only { "read-only" } @else { "full (the user's role)" } }
                    td { (when(t.created_at)) }
                    td { @match t.expires_at { Some(e) => (when(e)), None => "never" } }
                    td { (when_opt(t.last_used)) }
                    @if edit { td { form.inline method="post" action={ "/account/tokens/" (t.id) "/revoke" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button.danger type="submit" { "Revoke" }
                    } } }
                } } }
            } }
        }
        @if edit {
            h2 { "New token" }
            form #new-token-form method="post" action="/account/tokens/new" {
                input type="hidden" name="csrf" value=(csrf);
                div.grid {
                    div { label for="name" { "Name" } input #name type="text" name="name" maxlength="100" required placeholder="billing script"; }
                    div { label for="days" { "Expires after (days; empty: never)" }
                        input #days type="number" name="expires_in_days" min="1" max=(MAX_TOKEN_DAYS); }
                    div.wide { label { input #read-only type="checkbox" name="read_only" value="yes" style="width:auto;min-height:0";
                        " Read-only (it can look but change nothing)" } }
                }
                div.actions { button #create-token type="submit" { "Make the token" } }
            }
        }
    };
    html_response(
        status,
        page("API tokens", Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /account/tokens`.
pub async fn list(State(state): State<WebState>, tech: Tech, Query(q): Query<OkQuery>) -> Response {
    let notice = match q.ok.as_deref() {
        Some("revoked") => Some(Notice::ok("Token revoked; it stopped working at once.")),
        _ => None,
    };
    tokens_page(&state, &tech, notice, None, StatusCode::OK).await
}

async fn refused(state: &WebState, tech: &Tech, e: OpError) -> Response {
    let problem = problem_of(e);
    tokens_page(
        state,
        tech,
        Some(Notice::error(problem.message)),
        None,
        problem.status,
    )
    .await
}

/// `POST /account/tokens/new`: makes a token and shows it, once (no redirect: it is not kept).
pub async fn create(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let days = match days_of(f.get("expires_in_days")) {
        Ok(d) => d,
        Err(e) => return refused(&state, &tech, e).await,
    };
    match state
        .app
        .create_token(
            &tech.caller,
            f.get("name"),
            f.checked("read_only"),
            days,
            address(peer).as_deref(),
        )
        .await
    {
        Ok((view, token)) => {
            let made = Made {
                name: &view.name,
                token: &token,
            };
            tokens_page(&state, &tech, None, Some(made), StatusCode::CREATED).await
        }
        Err(e) => refused(&state, &tech, e).await,
    }
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let result = match parse_id(&id, "token", "API tokens") {
        Ok(id) => {
            state
                .app
                .revoke_token(&tech.caller, id, address(peer).as_deref())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => redirect("/account/tokens?ok=revoked", None),
        Err(e) => refused(&state, &tech, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_empty_or_a_number_of_days() {
        assert_eq!(days_of("").unwrap(), None);
        assert_eq!(days_of("30").unwrap(), Some(30));
        let e = days_of("a month").unwrap_err();
        assert!(
            matches!(
                e,
                OpError::Invalid {
                    field: "expires_in_days",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("no expiry"), "{e}");
    }
}
