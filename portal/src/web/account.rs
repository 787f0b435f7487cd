//! The account pages: setting a password from an invitation or reset link, "forgot password" (one answer
//! for every address), and the signed-in person's own account (name, time format and zone, open
//! sessions and signing out of all of them, changing the password, changing the email address through a
//! link mailed to the new one, and confirming that link).

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{end_cookie, redirect, Tech};
use super::layout::{html_response, page, problem_page, when, Notice};
use super::WebState;
use crate::api::auth::PeerAddr;
use crate::api::error::AppError;
use crate::api::owner::session::cross_site;
use crate::api::owner::Problem;
use crate::app::account::TIME_FORMATS;
use crate::app::OpError;
use crate::passwords::MIN_PASSWORD_CHARS;
use crate::store::users::LinkPurpose;

/// What "forgot password" answers, whatever the address.
pub const FORGOT_ANSWER: &str =
    "If an account exists for that address, we sent it a link to choose a \
    new password; it works for 30 minutes. Check your mail (and its spam folder).";

/// The page's answer to a failure; a mail that could not be sent is explained (it names no secret).
fn problem_of(e: OpError) -> Problem {
    let mail = matches!(e, OpError::Mail(_)).then(|| e.to_string());
    let mut problem = Problem::from(AppError::from(e));
    if let Some(message) = mail {
        problem.message = message;
    }
    problem
}

fn cross_site_page() -> Response {
    problem_page(
        Problem {
            status: StatusCode::FORBIDDEN,
            code: "csrf".into(),
            message: "this form came from another site; open the link from your mail again".into(),
        },
        None,
        ("/sign-in", "Sign in"),
    )
}

/// A link that cannot be used: what happened and where to get a new one.
fn link_problem(e: OpError, purpose_hint: &str) -> Response {
    let problem = problem_of(e);
    match problem.code.as_str() {
        "link_unknown" | "link_expired" => {
            problem_page(problem, None, ("/account/forgot", purpose_hint))
        }
        _ => problem_page(problem, None, ("/sign-in", "Sign in")),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub password: String,
}

fn password_hint() -> Markup {
    html! {
        p.muted {
            "At least " (MIN_PASSWORD_CHARS) " characters, and hard to guess: a few unrelated words make a \
             long password that is easy to remember. Not your name, email or company."
        }
    }
}

fn set_password_page(token: &str, heading: &str, email: &str, notice: Option<&Notice>) -> String {
    let body = html! {
        h1 { (heading) }
        p { "For the account " strong { (email) } "." }
        (password_hint())
        form method="post" action="/account/password" {
            input type="hidden" name="token" value=(token);
            // Lets password managers save the new password under the right account.
            input type="hidden" name="username" value=(email) autocomplete="username";
            div.grid {
                div.wide {
                    label for="password" { "New password" }
                    input #password type="password" name="password" autocomplete="new-password"
                        minlength=(MIN_PASSWORD_CHARS) required autofocus data-strength;
                    p #strength .muted aria-live="polite" {}
                }
            }
            div.actions { button #set-password type="submit" { "Set the password" } }
        }
        script src="/assets/password-strength.js" defer {}
    };
    page(heading, None, notice, body)
}

fn heading_of(purpose: LinkPurpose) -> &'static str {
    match purpose {
        LinkPurpose::Invite => "Welcome: choose your password",
        _ => "Choose a new password",
    }
}

/// `GET /account/password?token=`: the form of an invitation or reset link.
pub async fn password_form(State(state): State<WebState>, Query(q): Query<TokenQuery>) -> Response {
    match state.app.password_link(&q.token).await {
        Ok((user, purpose)) => html_response(
            StatusCode::OK,
            set_password_page(
                &q.token,
                heading_of(purpose),
                user.email.as_deref().unwrap_or(&user.username),
                None,
            ),
        ),
        Err(e) => link_problem(e, "Ask for a new link"),
    }
}

/// `POST /account/password`: sets the password; a weak one shows the form again with the advice.
pub async fn set_password(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<SetPasswordForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return cross_site_page();
    }
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let address = peer.map(|p| p.to_string());
    let (user, purpose) = match state.app.password_link(&form.token).await {
        Ok(found) => found,
        Err(e) => return link_problem(e, "Ask for a new link"),
    };
    match state
        .app
        .set_password_from_link(&form.token, &form.password, address.as_deref())
        .await
    {
        Ok(_) => redirect("/sign-in", None),
        Err(OpError::WeakPassword(weak)) => html_response(
            StatusCode::BAD_REQUEST,
            set_password_page(
                &form.token,
                heading_of(purpose),
                user.email.as_deref().unwrap_or(&user.username),
                Some(&Notice::error(weak.to_string())),
            ),
        ),
        Err(e) => link_problem(e, "Ask for a new link"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    pub email: String,
}

fn forgot_page(notice: Option<&Notice>) -> String {
    let body = html! {
        h1 { "Forgot your password?" }
        @if notice.is_none() {
            p { "Type the email address of your account; we mail you a link to choose a new password." }
            form method="post" action="/account/forgot" {
                div.grid {
                    div.wide {
                        label for="email" { "Email" }
                        input #email type="email" name="email" autocomplete="username" required autofocus;
                    }
                }
                div.actions { button #send-link type="submit" { "Send the link" } }
            }
        }
        p { a href="/sign-in" { "Back to sign-in" } }
    };
    page("Forgot your password?", None, notice, body)
}

/// `GET /account/forgot`.
pub async fn forgot_form() -> Response {
    html_response(StatusCode::OK, forgot_page(None))
}

/// `POST /account/forgot`: the same answer for every address, known, unknown or rate-limited.
pub async fn forgot(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<ForgotForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return cross_site_page();
    }
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if state.limiter.check(peer, &form.email).is_ok() {
        let address = peer.map(|p| p.to_string());
        if let Err(e) = state
            .app
            .request_password_reset(&form.email, address.as_deref())
            .await
        {
            tracing::error!(error = %e, "password reset request failed");
        }
    } else {
        tracing::info!("password reset request rate-limited");
    }
    html_response(
        StatusCode::OK,
        forgot_page(Some(&Notice::ok(FORGOT_ANSWER))),
    )
}

/// `GET /account/email?token=`: asks to confirm the new address (a mail scanner opening the link changes
/// nothing).
pub async fn email_form(State(state): State<WebState>, Query(q): Query<TokenQuery>) -> Response {
    match state.app.email_link(&q.token).await {
        Ok((user, email)) => {
            let body = html! {
                h1 { "Confirm your new email address" }
                p { "The account " strong { (user.username) } " will use " strong { (email) }
                    " from now on, to sign in and for mail." }
                form method="post" action="/account/email" {
                    input type="hidden" name="token" value=(q.token);
                    div.actions { button #confirm-email type="submit" { "Use this address" } }
                }
            };
            html_response(
                StatusCode::OK,
                page("Confirm your new email address", None, None, body),
            )
        }
        Err(e) => link_problem(e, "Sign in"),
    }
}

/// `POST /account/email`: makes the link's address the account's.
pub async fn confirm_email(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TokenQuery>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return cross_site_page();
    }
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let address = peer.map(|p| p.to_string());
    match state
        .app
        .confirm_email_change(&form.token, address.as_deref())
        .await
    {
        Ok((_, email)) => {
            let body = html! {
                h1 { "Email address changed" }
                p { "Your account now uses " strong { (email) } "; sign in with it from now on." }
                p { a href="/account" { "Your account" } }
            };
            html_response(
                StatusCode::OK,
                page("Email address changed", None, None, body),
            )
        }
        Err(e) => link_problem(e, "Sign in"),
    }
}

/// The account page with an optional notice.
async fn account_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let user = &tech.session.user;
    let sessions = match state.app.sessions_of(user.id).await {
        Ok(s) => s,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let csrf = tech.csrf();
    let body = html! {
        h1 { "Your account" }
        dl.facts {
            dt { "Name" } dd { (user.name) }
            dt { "Username" } dd { (user.username) " " span.muted { "(never changes)" } }
            dt { "Email" } dd { (user.email.as_deref().unwrap_or("—")) }
            dt { "Role" } dd { (user.role.label()) }
            dt { "Two-factor sign-in" } dd {
                @if user.has_2fa() { "on" } @else { "off" } " · " a href="/account/security" { "Security" } " · " a href="/account/tokens" { "API tokens" }
            }
        }
        h2 { "Preferences" }
        form method="post" action="/account/preferences" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid {
                div {
                    label for="name" { "Name" }
                    input #name type="text" name="name" value=(user.name) maxlength="100" required;
                }
                div {
                    label for="time_format" { "Time format" }
                    select #time_format name="time_format" {
                        @for f in TIME_FORMATS {
                            option value=(f) selected[user.time_format == f] {
                                @if f == "24h" { "24-hour (15:04)" } @else { "12-hour (3:04 PM)" }
                            }
                        }
                    }
                }
                div {
                    label for="time_zone" { "Time zone" }
                    input #time_zone type="text" name="time_zone" value=(user.time_zone)
                        list="time-zones" placeholder="Europe/Rome, UTC or +02:00" required;
                    datalist #time-zones {
                        option value="UTC" {}
                        @for name in crate::time_zone::names() { option value=(name) {} }
                    }
                }
            }
            div.actions { button #save-preferences type="submit" { "Save" } }
        }
        h2 { "Open sessions" }
        div.scroll { table {
            thead { tr { th { "Browser" } th { "Address" } th { "Since" } th { "Last seen" } } }
            tbody {
                @for s in &sessions {
                    tr {
                        td { (s.browser) @if s.token_hash == tech.session.row.token_hash { " " span.badge.on { "this session" } } }
                        td { (s.address.as_deref().unwrap_or("—")) }
                        td { (when(s.created_at)) }
                        td { (when(s.last_seen)) }
                    }
                }
            }
        } }
        form method="post" action="/account/sign-out-everywhere" {
            input type="hidden" name="csrf" value=(csrf);
            div.actions { button.danger #sign-out-everywhere type="submit" { "Sign out of all sessions" } }
        }
        h2 { "Change your password" }
        (password_hint())
        form method="post" action="/account/password/change" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid {
                div {
                    label for="current_password" { "Current password" }
                    input #current_password type="password" name="current_password"
                        autocomplete="current-password" required;
                }
                div {
                    label for="new_password" { "New password" }
                    input #new_password type="password" name="new_password" autocomplete="new-password"
                        minlength=(MIN_PASSWORD_CHARS) required data-strength;
                    p #strength .muted aria-live="polite" {}
                }
            }
            div.actions { button #change-password type="submit" { "Change the password" } }
        }
        script src="/assets/password-strength.js" defer {}
        h2 { "Change your email address" }
        p.muted { "We mail a link to the new address; your address changes once you open it." }
        form method="post" action="/account/email/change" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid {
                div.wide {
                    label for="new_email" { "New email address" }
                    input #new_email type="email" name="email" autocomplete="email" required;
                }
            }
            div.actions { button #change-email type="submit" { "Send the link" } }
        }
    };
    html_response(
        status,
        page("Your account", Some(tech.viewer()), notice.as_ref(), body),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

/// `GET /account`.
pub async fn show(State(state): State<WebState>, tech: Tech, Query(q): Query<OkQuery>) -> Response {
    let notice = match q.ok.as_deref() {
        Some("preferences") => Some(Notice::ok("Saved.")),
        Some("password") => Some(Notice::ok(
            "Password changed; your other sessions were signed out.",
        )),
        Some("email") => Some(Notice::ok(
            "We mailed a link to the new address; your address changes once you open it.",
        )),
        _ => None,
    };
    account_page(&state, &tech, notice, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub time_format: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub new_password: String,
    #[serde(default)]
    pub email: String,
}

/// What each account form does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Preferences,
    Password,
    Email,
    SignOutEverywhere,
}

async fn change(
    state: WebState,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<AccountForm>, FormRejection>,
    what: Change,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(refused) = tech.refuse_post(&headers, form.csrf.as_deref()) {
        return refused;
    }
    let address = peer.0.map(|p| p.to_string());
    let address = address.as_deref();
    let user = &tech.session.user;
    let app = &state.app;
    let result = match what {
        Change::Preferences => app
            .set_preferences(
                user,
                &form.name,
                &form.time_format,
                &form.time_zone,
                address,
            )
            .await
            .map(|()| "preferences"),
        Change::Password => app
            .change_password(
                user,
                &form.current_password,
                &form.new_password,
                tech.token(),
                address,
            )
            .await
            .map(|_| "password"),
        Change::Email => app
            .request_email_change(user, &form.email, address)
            .await
            .map(|_| "email"),
        Change::SignOutEverywhere => {
            return match app.sign_out_everywhere(&tech.caller, user, address).await {
                Ok(_) => redirect("/sign-in", Some(end_cookie())),
                Err(e) => problem_page(
                    problem_of(e),
                    Some(tech.viewer()),
                    ("/account", "Your account"),
                ),
            };
        }
    };
    match result {
        Ok(key) => redirect(&format!("/account?ok={key}"), None),
        Err(e) => {
            let problem = problem_of(e);
            account_page(
                &state,
                &tech,
                Some(Notice::error(problem.message)),
                problem.status,
            )
            .await
        }
    }
}

macro_rules! change_route {
    ($name:ident, $what:expr) => {
        pub async fn $name(
            State(state): State<WebState>,
            tech: Tech,
            peer: PeerAddr,
            headers: HeaderMap,
            form: Result<Form<AccountForm>, FormRejection>,
        ) -> Response {
            change(state, tech, peer, headers, form, $what).await
        }
    };
}

change_route!(save_preferences, Change::Preferences);
change_route!(change_password, Change::Password);
change_route!(change_email, Change::Email);
change_route!(sign_out_everywhere, Change::SignOutEverywhere);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_password_page_escapes_and_carries_the_token() {
        let html = set_password_page(
            "tok\"en",
            heading_of(LinkPurpose::Invite),
            "a<b>@example.com",
            Some(&Notice::error("weak")),
        );
        assert!(html.contains("value=\"tok&quot;en\""), "{html}");
        assert!(html.contains("a&lt;b&gt;@example.com"));
        assert!(html.contains("Welcome: choose your password"));
        assert!(html.contains("role=\"alert\">weak"));
        assert!(
            set_password_page("t", heading_of(LinkPurpose::Reset), "x", None)
                .contains("Choose a new password")
        );
    }

    #[test]
    fn the_forgot_answer_hides_the_form_and_names_the_lifetime() {
        let answered = forgot_page(Some(&Notice::ok(FORGOT_ANSWER)));
        assert!(answered.contains("30 minutes"));
        assert!(!answered.contains("action=\"/account/forgot\""));
        assert!(forgot_page(None).contains("action=\"/account/forgot\""));
    }
}
