//! The owner's pages under `/owner` (outside `/api/v1`): invitation, sign-in and sign-out, the device list,
//! and the buttons' form posts. Server-rendered, no JavaScript; a successful sign-in or invitation
//! redirects (`303`) to `/owner`, an action re-renders the list with its outcome on top, and turning a
//! device off or restarting it asks first.
//!
//! Refusals answer the page with the status the JSON API would use (`401`, `403`, `404`, `409`, `410`,
//! `429`), so scripts and tests can tell them apart.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use outpost_cloud_link::control::PowerAction;
use serde::Deserialize;

use super::html::{self, Notice};
use super::session::{self, SignInLimiter, SignedIn};
use super::Problem;
use crate::api::auth::PeerAddr;
use crate::app::control::ControlAction;
use crate::app::owner::{action_label, OwnerError};
use crate::app::App;
use crate::store::commands::CommandRow;

/// How long an action's page waits for the agent's answer before saying it is still on its way.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// What the pages reach.
#[derive(Clone)]
pub struct PagesState {
    pub app: App,
    pub limiter: Arc<SignInLimiter>,
}

/// The pages, ready to merge into the portal's router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/owner", get(home))
        .route("/owner/sign-in", get(sign_in_form).post(sign_in))
        .route("/owner/sign-out", post(sign_out))
        .route(
            "/owner/invite/{token}",
            get(invite_form).post(accept_invite),
        )
        .route("/owner/devices/{agent}/{device}/block", post(block))
        .route("/owner/devices/{agent}/{device}/unblock", post(unblock))
        .route("/owner/devices/{agent}/{device}/power", post(power))
        .route("/branding/logo/{key}", get(logo))
        .with_state(PagesState {
            app,
            limiter: Arc::new(SignInLimiter::default()),
        })
}

/// A company's logo, shown on the owner pages (public under its random key).
async fn logo(
    State(state): State<PagesState>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> axum::response::Response {
    crate::api::branding::logo(&state.app, &key).await
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub confirm: String,
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub csrf: Option<String>,
    pub action: Option<String>,
    pub confirm: Option<String>,
}

fn redirect(to: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static(to));
    if let Some(cookie) = cookie {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

/// A refusal as a page: the problem's status, its sentence, and a way on.
fn problem_page(problem: Problem, signed_in: bool) -> Response {
    let link = if signed_in {
        ("/owner", "Back to your devices")
    } else {
        ("/owner/sign-in", "Sign in")
    };
    html::respond(
        problem.status,
        html::message_page("Something went wrong", &problem.message, link),
    )
}

fn bad_form(signed_in: bool) -> Response {
    problem_page(
        Problem {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request".into(),
            message: "the form arrived incomplete; reload the page and try again".into(),
        },
        signed_in,
    )
}

fn owner_problem(e: OwnerError, signed_in: bool) -> Response {
    problem_page(Problem::owner(e), signed_in)
}

/// `GET /owner`: the device list, or a redirect to sign in.
pub async fn home(State(state): State<PagesState>, headers: HeaderMap) -> Response {
    match session::signed_in(&state.app, &headers).await {
        Ok(Some(session)) => render_home(&state.app, &session, None, StatusCode::OK).await,
        Ok(None) => redirect("/owner/sign-in", None),
        Err(e) => owner_problem(e, false),
    }
}

async fn render_home(
    app: &App,
    session: &SignedIn,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    match app.owner_sites(&session.owner).await {
        Ok(sites) => html::respond(
            status,
            html::home_page(
                &session.owner.email,
                &session.csrf(),
                &sites,
                notice.as_ref(),
            ),
        ),
        Err(e) => owner_problem(e, true),
    }
}

/// `GET /owner/sign-in`
pub async fn sign_in_form(State(state): State<PagesState>, headers: HeaderMap) -> Response {
    if let Ok(Some(_)) = session::signed_in(&state.app, &headers).await {
        return redirect("/owner", None);
    }
    html::respond(StatusCode::OK, html::sign_in_page("", None))
}

/// `POST /owner/sign-in` (email, password): `303` to `/owner` with the session cookie; `401` with the
/// same sentence for an unknown email and a wrong password; `429` past the rate limit.
pub async fn sign_in(
    State(state): State<PagesState>,
    PeerAddr(addr): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form(false);
    };
    if session::cross_site(&headers) {
        return owner_problem(OwnerError::Csrf, false);
    }
    if let Err(wait) = state.limiter.check(addr, &form.email) {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let notice = Notice::error(format!(
            "too many sign-in attempts; wait {secs} s and try again"
        ));
        let mut response = html::respond(
            StatusCode::TOO_MANY_REQUESTS,
            html::sign_in_page(&form.email, Some(&notice)),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    match state.app.owner_sign_in(&form.email, &form.password).await {
        Ok(session) => redirect("/owner", Some(session::start_cookie(&session.token))),
        Err(e @ OwnerError::BadSignIn) => html::respond(
            StatusCode::UNAUTHORIZED,
            html::sign_in_page(&form.email, Some(&Notice::error(e.to_string()))),
        ),
        Err(e) => owner_problem(e, false),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /owner/sign-out` (csrf): ends the session, `303` to the sign-in page.
pub async fn sign_out(
    State(state): State<PagesState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let session = match session::signed_in(&state.app, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return redirect("/owner/sign-in", Some(session::end_cookie())),
        Err(e) => return owner_problem(e, false),
    };
    let Ok(Form(form)) = form else {
        return bad_form(true);
    };
    if let Err(e) = session::check_post(&session, &headers, form.csrf.as_deref()) {
        return owner_problem(e, true);
    }
    match state.app.owner_sign_out(session.token()).await {
        Ok(()) => redirect("/owner/sign-in", Some(session::end_cookie())),
        Err(e) => owner_problem(e, true),
    }
}

/// `GET /owner/invite/{token}`: the form to set a password; `404`/`410` for a link that cannot be used.
pub async fn invite_form(State(state): State<PagesState>, Path(token): Path<String>) -> Response {
    match state.app.invitation(&token).await {
        Ok(info) => html::respond(StatusCode::OK, html::invite_page(&token, &info, None)),
        Err(e) => owner_problem(e, false),
    }
}

/// `POST /owner/invite/{token}` (password, confirm): uses the link, sets the password, signs in (`303` to
/// `/owner`). The token in the path is the proof; the request must not come from another site.
pub async fn accept_invite(
    State(state): State<PagesState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<InviteForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form(false);
    };
    if session::cross_site(&headers) {
        return owner_problem(OwnerError::Csrf, false);
    }
    match state
        .app
        .accept_invitation(&token, &form.password, &form.confirm)
        .await
    {
        Ok(session) => redirect("/owner", Some(session::start_cookie(&session.token))),
        Err(e @ OwnerError::Password(_)) => match state.app.invitation(&token).await {
            Ok(info) => html::respond(
                StatusCode::BAD_REQUEST,
                html::invite_page(&token, &info, Some(&Notice::error(e.to_string()))),
            ),
            Err(e) => owner_problem(e, false),
        },
        Err(e) => owner_problem(e, false),
    }
}

/// A signed-in, same-site form post carrying the session's CSRF token; otherwise the page to answer.
async fn checked_post(
    state: &PagesState,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<SignedIn, Response> {
    let session = match session::signed_in(&state.app, headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(redirect("/owner/sign-in", None)),
        Err(e) => return Err(owner_problem(e, false)),
    };
    session::check_post(&session, headers, csrf).map_err(|e| owner_problem(e, true))?;
    Ok(session)
}

/// `POST /owner/devices/{agent}/{device}/block` (csrf)
pub async fn block(
    State(state): State<PagesState>,
    Path((agent, device)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(
        &state,
        &headers,
        form,
        (&agent, &device),
        Some(ControlAction::Block),
    )
    .await
}

/// `POST /owner/devices/{agent}/{device}/unblock` (csrf)
pub async fn unblock(
    State(state): State<PagesState>,
    Path((agent, device)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(
        &state,
        &headers,
        form,
        (&agent, &device),
        Some(ControlAction::Unblock),
    )
    .await
}

/// `POST /owner/devices/{agent}/{device}/power` (csrf, action = on | off | cycle, confirm = yes for off
/// and cycle; without it the answer is the confirmation page).
pub async fn power(
    State(state): State<PagesState>,
    Path((agent, device)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(&state, &headers, form, (&agent, &device), None).await
}

/// Runs one button: `action` is `None` for power (read from the form).
async fn act(
    state: &PagesState,
    headers: &HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
    (agent, device): (&str, &str),
    action: Option<ControlAction>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form(true);
    };
    let session = match checked_post(state, headers, form.csrf.as_deref()).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let app = &state.app;
    let action = match action {
        Some(action) => action,
        None => match form.action.as_deref().and_then(PowerAction::parse) {
            Some(power) => ControlAction::Power(power),
            None => {
                let notice = Notice::error("that power button is not known; reload the page");
                return render_home(app, &session, Some(notice), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let view = match app.owned_device_view(&session.owner, agent, device).await {
        Ok(view) => view,
        Err(e) => return refused(app, &session, e).await,
    };
    if let ControlAction::Power(power @ (PowerAction::Off | PowerAction::Cycle)) = action {
        if form.confirm.as_deref() != Some("yes") && view.power.contains(&power) {
            return html::respond(
                StatusCode::OK,
                html::confirm_power_page(&session.csrf(), agent, &view, power),
            );
        }
    }
    let label = action_label(&action);
    match app
        .owner_act(&session.owner, agent, device, action, PAGE_WAIT)
        .await
    {
        Ok(row) => {
            let notice = outcome_notice(&view.name, &label, &row);
            render_home(app, &session, Some(notice), StatusCode::OK).await
        }
        Err(e) => refused(app, &session, e).await,
    }
}

/// The list again, with why the action was refused on top, answered with the refusal's status.
async fn refused(app: &App, session: &SignedIn, e: OwnerError) -> Response {
    let problem = Problem::owner(e);
    render_home(
        app,
        session,
        Some(Notice::error(problem.message)),
        problem.status,
    )
    .await
}

fn outcome_notice(name: &str, label: &str, row: &CommandRow) -> Notice {
    match row.status.as_str() {
        "done" => Notice::ok(format!("{name}: {label} done.")),
        "failed" => Notice::error(format!(
            "{name}: {label} failed: {}",
            row.message
                .as_deref()
                .unwrap_or("the agent gave no reason")
        )),
        _ => Notice::ok(format!(
            "{name}: {label} sent; the site's agent has not answered yet. Reload this page in a moment to see the result."
        )),
    }
}
