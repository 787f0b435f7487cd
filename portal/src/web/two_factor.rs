//! Two-factor pages: the security page (on/off, remembered devices, recovery codes left), turning TOTP on,
//! renewing and off (each asks for the password), the enrolment page (QR code and the secret as text),
//! recovery codes shown once, the code step of a sign-in (a TOTP or recovery code, "remember this
//! device", a few tries), and the forced setup a session must finish when the company requires it.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::auth::{end_cookie, internal, redirect, safe_next, session_of, Tech};
use super::layout::{html_response, page, problem_page, query_value, when, Nav, Notice, Viewer};
use super::WebState;
use crate::api::auth::PeerAddr;
use crate::api::error::AppError;
use crate::api::owner::session::{cookie, cross_site};
use crate::api::owner::Problem;
use crate::app::sessions::{self, Pending, Session};
use crate::app::two_factor::{
    account_label, pending_secret, SecondFactor, DEVICE_LIFETIME, ISSUER,
};
use crate::app::OpError;
use crate::store::users::UserRow;
use crate::totp::TotpSecret;
use crate::trusted_device::{self, describe_browser};

/// The user of a valid trusted-device cookie whose device the store still knows (its last use becomes
/// now). Anything else, a tampered cookie included, is `None`: the person is asked for the code.
pub async fn trusted_device_user(state: &WebState, headers: &HeaderMap) -> Option<i64> {
    let value = cookie(headers, trusted_device::COOKIE_NAME)?;
    match state.app.trusted_device_user(value).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "could not check a remembered device; asking for the code");
            None
        }
    }
}

/// The `Set-Cookie` of a remembered device.
pub fn device_cookie(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        trusted_device::COOKIE_NAME,
        DEVICE_LIFETIME.num_seconds()
    ))
    .ok()
}

/// The `Set-Cookie` that forgets a remembered device in this browser.
pub fn forget_device_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "outpost_device=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
    )
}

fn problem_of(e: OpError) -> Problem {
    Problem::from(AppError::from(e))
}

fn address(peer: &PeerAddr) -> Option<String> {
    peer.0.map(|p| p.to_string())
}

fn browser(headers: &HeaderMap) -> String {
    describe_browser(
        headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Whether a form of a session still at a sign-in step may go ahead: same site, and its CSRF token.
fn pending_post_ok(headers: &HeaderMap, token: &str, given: Option<&str>) -> bool {
    !cross_site(headers) && given.is_some_and(|g| sessions::csrf_matches(token, g))
}

fn csrf_refused(viewer: Option<Viewer<'_>>) -> Response {
    problem_page(
        Problem {
            status: StatusCode::FORBIDDEN,
            code: "csrf".into(),
            message:
                "this form is out of date or came from another site; reload the page and try again"
                    .into(),
        },
        viewer,
        ("/sign-in", "Sign in"),
    )
}

/// The enrolment step: the QR code, the secret as text, and the field for the first code.
fn enrol_page(
    viewer: Viewer<'_>,
    user: &UserRow,
    secret: &TotpSecret,
    action: &str,
    notice: Option<&Notice>,
) -> Result<String, OpError> {
    let svg = secret
        .qr_svg(ISSUER, &account_label(user))
        .map_err(|e| OpError::Internal(e.to_string()))?;
    let body = html! {
        h1 { "Set up two-factor sign-in" }
        ol {
            li { "Open an authenticator app on your phone (for example one from your phone's maker, \
                  Aegis, FreeOTP or 1Password) and add an account." }
            li { "Scan this QR code, or type the key below." }
            li { "Type the 6-digit code the app then shows." }
        }
        figure.qr { (PreEscaped(svg)) }
        p { "Key: " code #secret { (secret.display_groups()) } }
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(viewer.csrf);
            div.grid {
                div {
                    label for="code" { "Code from the app" }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9 ]{6,7}" maxlength="7" required autofocus;
                }
            }
            div.actions { button #confirm-2fa type="submit" { "Turn on" } }
        }
    };
    Ok(page(
        "Set up two-factor sign-in",
        Some(viewer),
        notice,
        body,
    ))
}

/// The recovery codes, shown this once.
fn codes_page(viewer: Viewer<'_>, codes: &[String], next: &str) -> String {
    let body = html! {
        h1 { "Two-factor sign-in is on" }
        p { strong { "Save these recovery codes now" } ": they are shown only this once. Each one signs you \
            in once instead of a code from the app, for when you lose your phone. Keep them somewhere safe, \
            for example in a password manager or printed." }
        ul #recovery-codes { @for c in codes { li { code.recovery { (c) } } } }
        p { a.button href=(next) { "I saved them; continue" } }
    };
    page("Two-factor sign-in is on", Some(viewer), None, body)
}

fn password_field() -> Markup {
    html! {
        div.grid {
            div {
                label for="password" { "Your password" }
                input #password type="password" name="password" autocomplete="current-password" required;
            }
        }
    }
}

async fn security_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let user = &tech.session.user;
    let (devices, left) = match (
        state.app.trusted_devices(user.id).await,
        state.app.recovery_codes_left(user.id).await,
    ) {
        (Ok(d), Ok(l)) => (d, l),
        (Err(e), _) | (_, Err(e)) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/account", "Your account"),
            )
        }
    };
    let csrf = tech.csrf();
    let on = user.has_2fa();
    let body = html! {
        h1 { "Security" }
        p { a href="/account" { "Your account" } }
        h2 { "Two-factor sign-in" }
        p #two-factor-status {
            @if on {
                span.badge.on { "on" } " since " (user.totp_enabled_at.map(when).unwrap_or_default())
                ". Signing in asks for a code from your authenticator app."
            } @else {
                span.badge.off { "off" } " Signing in needs only your password."
                @if user.require_2fa { " Your company requires two-factor sign-in: set it up now." }
                @if user.totp_secret.is_some() { " A setup was started but not confirmed." }
            }
        }
        @if on {
            p #recovery-left { "Recovery codes left: " (left) "." }
            h3 { "Renew" }
            p.muted { "A new secret for a new phone or app: the current one stops working at once, and \
                       two-factor sign-in is off until you confirm a code of the new one." }
            form method="post" action="/account/two-factor/start" {
                input type="hidden" name="csrf" value=(csrf);
                (password_field())
                div.actions { button #renew-2fa type="submit" { "Renew" } }
            }
            h3 { "Turn off" }
            form method="post" action="/account/two-factor/disable" {
                input type="hidden" name="csrf" value=(csrf);
                (password_field())
                div.actions { button.danger #disable-2fa type="submit" { "Turn off two-factor sign-in" } }
            }
        } @else {
            form method="post" action="/account/two-factor/start" {
                input type="hidden" name="csrf" value=(csrf);
                (password_field())
                div.actions { button #start-2fa type="submit" { "Turn on two-factor sign-in" } }
            }
        }
        h2 { "Remembered devices" }
        @if devices.is_empty() {
            p.muted { "No device is remembered: every sign-in asks for the code." }
        } @else {
            div.scroll { table #devices {
                thead { tr { th { "Browser" } th { "Remembered" } th { "Last used" } th {} } }
                tbody {
                    @for d in &devices {
                        tr {
                            td { (d.browser) }
                            td { (when(d.created_at)) }
                            td { (when(d.last_used)) }
                            td {
                                form.inline method="post" action="/account/two-factor/devices/remove" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="device" value=(d.id_hash);
                                    button.quiet type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    html_response(
        status,
        page("Security", Some(tech.viewer()), notice.as_ref(), body),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

/// `GET /account/security`.
pub async fn security(
    State(state): State<WebState>,
    tech: Tech,
    Query(q): Query<OkQuery>,
) -> Response {
    let notice = match q.ok.as_deref() {
        Some("disabled") => Some(Notice::ok("Two-factor sign-in is off.")),
        Some("removed") => Some(Notice::ok("The device is no longer remembered.")),
        _ => None,
    };
    security_page(&state, &tech, notice, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
pub struct TwoFactorForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub remember: Option<String>,
    pub next: Option<String>,
}

fn wrong_password() -> Notice {
    Notice::error("the password is wrong; type it again")
}

/// `POST /account/two-factor/start`: after the password, a fresh secret (turning on, or renewing).
pub async fn start(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(refused) = tech.refuse_post(&headers, form.csrf.as_deref()) {
        return refused;
    }
    let user = &tech.session.user;
    match state.app.password_matches(user, &form.password).await {
        Ok(true) => {}
        Ok(false) => {
            return security_page(
                &state,
                &tech,
                Some(wrong_password()),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => return internal(e),
    }
    let secret = match state
        .app
        .begin_two_factor(user, address(&peer).as_deref())
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    match enrol_page(
        tech.viewer(),
        user,
        &secret,
        "/account/two-factor/confirm",
        None,
    ) {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => internal(e),
    }
}

/// `POST /account/two-factor/confirm`: the first code turns two-factor sign-in on.
pub async fn confirm(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(refused) = tech.refuse_post(&headers, form.csrf.as_deref()) {
        return refused;
    }
    confirm_for(
        &state,
        &tech.session,
        tech.token(),
        tech.viewer(),
        &form.code,
        &peer,
        "/account/two-factor/confirm",
        "/account/security",
    )
    .await
}

/// Confirms the pending secret of the session's user; on success the session is complete too (it
/// matters for the forced setup) and the recovery codes are shown.
#[allow(clippy::too_many_arguments)]
async fn confirm_for(
    state: &WebState,
    session: &Session,
    token: &str,
    viewer: Viewer<'_>,
    code: &str,
    peer: &PeerAddr,
    action: &str,
    next: &str,
) -> Response {
    let user = &session.user;
    match state
        .app
        .confirm_two_factor(user.id, code, address(peer).as_deref())
        .await
    {
        Ok(Ok(codes)) => {
            if let Err(e) = state.app.complete_session(token).await {
                return internal(e);
            }
            html_response(StatusCode::OK, codes_page(viewer, &codes, next))
        }
        Ok(Err(refused)) => {
            let notice = Notice::error(refused.to_string());
            match pending_secret(user) {
                Ok(Some(secret)) => {
                    match enrol_page(viewer, user, &secret, action, Some(&notice)) {
                        Ok(html) => html_response(StatusCode::BAD_REQUEST, html),
                        Err(e) => internal(e),
                    }
                }
                Ok(None) => problem_page(
                    Problem {
                        status: StatusCode::CONFLICT,
                        code: "nothing_to_confirm".into(),
                        message: refused.to_string(),
                    },
                    Some(viewer),
                    ("/account/security", "Security"),
                ),
                Err(e) => internal(e),
            }
        }
        Err(e) => internal(e),
    }
}

/// `POST /account/two-factor/disable`: after the password.
pub async fn disable(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(refused) = tech.refuse_post(&headers, form.csrf.as_deref()) {
        return refused;
    }
    let user = &tech.session.user;
    match state.app.password_matches(user, &form.password).await {
        Ok(true) => {}
        Ok(false) => {
            return security_page(
                &state,
                &tech,
                Some(wrong_password()),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => return internal(e),
    }
    match state
        .app
        .disable_two_factor(user, address(&peer).as_deref())
        .await
    {
        Ok(()) => redirect(
            "/account/security?ok=disabled",
            Some(forget_device_cookie()),
        ),
        Err(e) => internal(e),
    }
}

/// `POST /account/two-factor/devices/remove`.
pub async fn remove_device(
    State(state): State<WebState>,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(refused) = tech.refuse_post(&headers, form.csrf.as_deref()) {
        return refused;
    }
    match state
        .app
        .remove_trusted_device(&tech.session.user, &form.device, address(&peer).as_deref())
        .await
    {
        Ok(()) => redirect("/account/security?ok=removed", None),
        Err(e) => {
            let problem = problem_of(e);
            security_page(
                &state,
                &tech,
                Some(Notice::error(problem.message)),
                problem.status,
            )
            .await
        }
    }
}

/// Where a session that is not waiting for `wanted` goes instead.
fn elsewhere(session: Option<&Session>, wanted: Pending, next: &str) -> Option<Response> {
    match session.map(|s| s.pending) {
        None => Some(redirect("/sign-in", None)),
        Some(p) if p == wanted => None,
        Some(Pending::Nothing) => Some(redirect(next, None)),
        Some(Pending::Code) => Some(redirect(
            &format!("/sign-in/code?next={}", query_value(next)),
            None,
        )),
        Some(Pending::Setup) => Some(redirect("/account/two-factor/setup", None)),
    }
}

fn code_page(viewer: Viewer<'_>, next: &str, notice: Option<&Notice>) -> String {
    let body = html! {
        h1 { "Two-factor sign-in" }
        p { "Type the 6-digit code your authenticator app shows, or one of your recovery codes." }
        form method="post" action="/sign-in/code" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="next" value=(next);
            div.grid {
                div.wide {
                    label for="code" { "Code" }
                    input #code type="text" name="code" autocomplete="one-time-code" maxlength="20"
                        required autofocus;
                }
                div.wide {
                    label {
                        input #remember type="checkbox" name="remember" value="yes";
                        " Remember this device for 30 days (only on a browser you alone use)"
                    }
                }
            }
            div.actions { button #verify-code type="submit" { "Sign in" } }
        }
    };
    page("Two-factor sign-in", Some(viewer), notice, body)
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

/// `GET /sign-in/code`.
pub async fn code_form(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let found = match session_of(&state, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Some(away) = elsewhere(found.as_ref().map(|(_, s)| s), Pending::Code, next) {
        return away;
    }
    let Some((token, session)) = found else {
        return redirect("/sign-in", None);
    };
    let csrf = sessions::csrf_token(&token);
    let viewer = Viewer {
        name: &session.user.name,
        csrf: &csrf,
        nav: Nav::NONE,
    };
    html_response(StatusCode::OK, code_page(viewer, next, None))
}

/// `POST /sign-in/code`: a TOTP or recovery code completes the sign-in; too many wrong ones end it.
pub async fn code(
    State(state): State<WebState>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let next = safe_next(form.next.as_deref()).to_owned();
    let found = match session_of(&state, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Some(away) = elsewhere(found.as_ref().map(|(_, s)| s), Pending::Code, &next) {
        return away;
    }
    let Some((token, session)) = found else {
        return redirect("/sign-in", None);
    };
    let csrf = sessions::csrf_token(&token);
    let viewer = Viewer {
        name: &session.user.name,
        csrf: &csrf,
        nav: Nav::NONE,
    };
    if !pending_post_ok(&headers, &token, form.csrf.as_deref()) {
        return csrf_refused(Some(viewer));
    }
    let addr = address(&peer);
    let refused = match state
        .app
        .check_second_factor(&session, &form.code, addr.as_deref())
        .await
    {
        Ok(Ok(how)) => {
            if let Err(e) = state.app.complete_session(&token).await {
                return internal(e);
            }
            let mut response = redirect(&next, None);
            if let SecondFactor::RecoveryCode { left } = how {
                tracing::info!(
                    user = session.user.id,
                    left,
                    "signed in with a recovery code"
                );
            }
            if form.remember.as_deref() == Some("yes") {
                match state
                    .app
                    .remember_device(&session.user, &browser(&headers))
                    .await
                {
                    Ok(value) => {
                        if let Some(c) = device_cookie(&value) {
                            response.headers_mut().append(SET_COOKIE, c);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not remember the device"),
                }
            }
            return response;
        }
        Ok(Err(refused)) => refused,
        Err(e) => return internal(e),
    };
    match state
        .app
        .second_factor_failed(&token, &session.user, &refused, addr.as_deref())
        .await
    {
        Ok(0) => problem_page(
            Problem {
                status: StatusCode::UNAUTHORIZED,
                code: "too_many_codes".into(),
                message: "too many wrong codes; this sign-in has ended. Sign in again with your \
                          password, and use a recovery code if your authenticator app is lost"
                    .into(),
            },
            None,
            ("/sign-in", "Sign in again"),
        )
        .map_headers(end_cookie()),
        Ok(left) => {
            let notice = Notice::error(format!(
                "{refused} ({left} {} left)",
                if left == 1 { "try" } else { "tries" }
            ));
            html_response(
                StatusCode::UNAUTHORIZED,
                code_page(viewer, &next, Some(&notice)),
            )
        }
        Err(e) => internal(e),
    }
}

/// Adds a `Set-Cookie` to a response.
trait WithCookie {
    fn map_headers(self, cookie: HeaderValue) -> Response;
}

impl WithCookie for Response {
    fn map_headers(mut self, cookie: HeaderValue) -> Response {
        self.headers_mut().append(SET_COOKIE, cookie);
        self
    }
}

/// `GET /account/two-factor/setup`: the setup a session must finish when the company requires two-factor
/// sign-in (the secret made on the first visit is shown again on the next ones).
pub async fn setup_form(
    State(state): State<WebState>,
    peer: PeerAddr,
    headers: HeaderMap,
) -> Response {
    let found = match session_of(&state, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Some(away) = elsewhere(
        found.as_ref().map(|(_, s)| s),
        Pending::Setup,
        "/account/security",
    ) {
        return away;
    }
    let Some((token, session)) = found else {
        return redirect("/sign-in", None);
    };
    let user = &session.user;
    let secret = match pending_secret(user) {
        Ok(Some(secret)) => secret,
        Ok(None) => match state
            .app
            .begin_two_factor(user, address(&peer).as_deref())
            .await
        {
            Ok(secret) => secret,
            Err(e) => return internal(e),
        },
        Err(e) => return internal(e),
    };
    let csrf = sessions::csrf_token(&token);
    let viewer = Viewer {
        name: &user.name,
        csrf: &csrf,
        nav: Nav::NONE,
    };
    let notice = Notice::ok("Your company requires two-factor sign-in: set it up to continue.");
    match enrol_page(
        viewer,
        user,
        &secret,
        "/account/two-factor/setup",
        Some(&notice),
    ) {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => internal(e),
    }
}

/// `POST /account/two-factor/setup`: the forced setup's first code; completes the session.
pub async fn setup(
    State(state): State<WebState>,
    peer: PeerAddr,
    headers: HeaderMap,
    form: Result<Form<TwoFactorForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let found = match session_of(&state, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Some(away) = elsewhere(
        found.as_ref().map(|(_, s)| s),
        Pending::Setup,
        "/account/security",
    ) {
        return away;
    }
    let Some((token, session)) = found else {
        return redirect("/sign-in", None);
    };
    let csrf = sessions::csrf_token(&token);
    let viewer = Viewer {
        name: &session.user.name,
        csrf: &csrf,
        nav: Nav::NONE,
    };
    if !pending_post_ok(&headers, &token, form.csrf.as_deref()) {
        return csrf_refused(Some(viewer));
    }
    confirm_for(
        &state,
        &session,
        &token,
        viewer,
        &form.code,
        &peer,
        "/account/two-factor/setup",
        "/agents",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_cookie_carries_every_attribute() {
        let c = device_cookie("abc.1.2.mac").unwrap();
        let c = c.to_str().unwrap();
        for attr in [
            "outpost_device=abc.1.2.mac",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=2592000",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(device_cookie("bad\nvalue").is_none());
        assert!(forget_device_cookie()
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
    }

    #[test]
    fn the_code_page_offers_remembering_and_keeps_next() {
        let html = code_page(
            Viewer {
                name: "Ana",
                csrf: "c",
                nav: Nav::NONE,
            },
            "/agents?q=\"x",
            None,
        );
        assert!(html.contains("name=\"remember\""), "{html}");
        assert!(html.contains("value=\"/agents?q=&quot;x\""), "{html}");
        assert!(html.contains("name=\"csrf\" value=\"c\""));
    }
}
