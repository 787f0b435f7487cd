//! Users' sign-in for the web pages: the `outpost_session` cookie (`HttpOnly; Secure; SameSite=Strict;
//! Path=/`), the [`Tech`] extractor (a browser without a live session goes to the sign-in page, one that
//! still owes its two-factor code or setup goes there; then the route's [`Required`] action is checked
//! against the role table and an agent route's agent against the caller's scope), the CSRF check every
//! state-changing form passes (same origin and the session's token), the sign-in rate limits (a flat
//! per-minute limit and growing waits after failures, per account and per address: [`super::backoff`]),
//! and the sign-in and sign-out routes.

use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query, RawPathParams, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::layout::{html_response, page, problem_page, query_value, Nav, Notice, Viewer};
use super::WebState;
use crate::access::{Action, Caller};
use crate::api::auth::PeerAddr;
use crate::api::auth::Required;
use crate::api::owner::session::{cookie, cross_site};
use crate::api::owner::Problem;
use crate::app::sessions::{self, Client, Pending, Session, SESSION_LIFETIME};
use crate::app::{Actor, App, OpError};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "outpost_session";

/// A request from a signed-in user allowed to do the route's action.
#[derive(Debug, Clone)]
pub struct Tech {
    pub caller: Caller,
    pub session: Session,
    token: String,
    csrf: String,
}

impl Tech {
    /// What the page header shows.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.caller.name,
            csrf: &self.csrf,
            nav: Nav::of(&self.caller),
        }
    }

    /// The problem page of a refused operation or request, with a link back (`back`: path and label).
    pub fn problem(&self, e: impl Into<Problem>, back: (&str, &str)) -> Response {
        problem_page(e.into(), Some(self.viewer()), back)
    }

    /// The agent id in an agent route's path, or the problem page that leads back to the agents (boxed:
    /// a response is large beside an id).
    pub fn agent_id(&self, raw: &str) -> Result<AgentId, Box<Response>> {
        App::parse_agent_id(raw)
            .map_err(|e| Box::new(self.problem(e, ("/agents", "Back to the agents"))))
    }

    /// How the history names this user.
    pub fn actor(&self) -> Actor {
        Actor::user(&self.caller)
    }

    /// Whether the user may do `action` (pages show only the forms they may use).
    pub fn may(&self, action: Action) -> bool {
        self.caller.may(action)
    }

    /// The session's cookie token (for signing out).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CSRF token forms of this session carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The refusal of a state-changing request from another site or without this session's CSRF token (a
    /// page saying what to do), or `None` when it may go ahead.
    pub fn refuse_post(&self, headers: &HeaderMap, given: Option<&str>) -> Option<Response> {
        let ok =
            !cross_site(headers) && given.is_some_and(|g| sessions::csrf_matches(&self.token, g));
        if ok {
            None
        } else {
            Some(problem_page(
                Problem {
                    status: StatusCode::FORBIDDEN,
                    code: "csrf".into(),
                    message: "this form is out of date or came from another site; reload the page \
                              and try again"
                        .into(),
                },
                Some(self.viewer()),
                ("/agents", "Back to the agents"),
            ))
        }
    }
}

/// Where a browser without a session goes: the sign-in page, then back here.
fn to_sign_in(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/agents");
    redirect(&format!("/sign-in?next={}", query_value(next)), None)
}

/// A `303 See Other` to `to`, optionally setting a cookie.
pub fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, location);
    }
    if let Some(cookie) = cookie {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

pub(crate) fn internal(e: OpError) -> Response {
    tracing::error!(error = %e, "user session check failed");
    problem_page(
        Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message:
                "the portal failed internally; try again, and see the portal's log if it persists"
                    .into(),
        },
        None,
        ("/sign-in", "Sign in"),
    )
}

/// The refusal of a page the user's role may not use.
pub fn forbidden_page(caller: &Caller, csrf: &str, action: Action) -> Response {
    problem_page(
        Problem {
            status: StatusCode::FORBIDDEN,
            code: "forbidden".into(),
            message: format!(
                "your role ({}) may not do this ({}); ask a company admin",
                caller.role.label(),
                action.as_str()
            ),
        },
        Some(Viewer {
            name: &caller.name,
            csrf,
            nav: Nav::of(caller),
        }),
        ("/agents", "Back to the agents"),
    )
}

/// An agent outside the user's scope: the same page as an agent that does not exist.
fn unknown_agent(caller: &Caller, csrf: &str, id: &str) -> Response {
    problem_page(
        Problem {
            status: StatusCode::NOT_FOUND,
            code: "not_found".into(),
            message: OpError::UnknownAgent(id.to_owned()).to_string(),
        },
        Some(Viewer {
            name: &caller.name,
            csrf,
            nav: Nav::of(caller),
        }),
        ("/agents", "Back to the agents"),
    )
}

/// The live session of the request's cookie, whatever step it is at, with its token.
pub async fn session_of(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<Option<(String, Session)>, Response> {
    let Some(token) = cookie(headers, COOKIE_NAME).map(str::to_owned) else {
        return Ok(None);
    };
    match state.app.session(&token).await {
        Ok(Some(session)) => Ok(Some((token, session))),
        Ok(None) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// The request's session (token and session, or none) as [`super::time_prefs::scope`] already looked it up.
#[derive(Debug, Clone)]
pub struct SessionLookup(pub Option<(String, Session)>);

impl FromRequestParts<WebState> for Tech {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let found = match parts.extensions.remove::<SessionLookup>() {
            Some(SessionLookup(found)) => found,
            None => session_of(state, &parts.headers).await?,
        };
        let Some((token, session)) = found else {
            return Err(to_sign_in(parts));
        };
        match session.pending {
            Pending::Nothing => {}
            Pending::Code => return Err(redirect("/sign-in/code", None)),
            Pending::Setup => return Err(redirect("/account/two-factor/setup", None)),
        }
        let caller = state.app.session_caller(&session).await.map_err(internal)?;
        let csrf = sessions::csrf_token(&token);
        // Only the router puts a `Required` here: a page without one refuses everyone.
        let Some(required) = parts.extensions.get::<Required>().copied() else {
            return Err(forbidden_page(&caller, &csrf, Action::UsersManage));
        };
        if required.agent_scoped {
            if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
                if let Some((_, id)) = params.iter().find(|(name, _)| *name == "id") {
                    let id = id.to_owned();
                    if !state.app.sees_agent(&caller, &id).await.map_err(internal)? {
                        return Err(unknown_agent(&caller, &csrf, &id));
                    }
                }
            }
        }
        if !caller.may(required.action) {
            return Err(forbidden_page(&caller, &csrf, required.action));
        }
        Ok(Tech {
            caller,
            session,
            token,
            csrf,
        })
    }
}

pub fn start_cookie(token: &str) -> HeaderValue {
    let value = format!(
        "{COOKIE_NAME}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.num_seconds()
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| end_cookie())
}

pub fn end_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "outpost_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
    )
}

/// Only paths of this site are followed after sign-in (never `//host` or a full URL).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n,
        _ => "/agents",
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    pub next: Option<String>,
}

fn sign_in_page(email: &str, next: &str, notice: Option<&Notice>) -> String {
    let body = html! {
        h1 { "Sign in" }
        form method="post" action="/sign-in" {
            input type="hidden" name="next" value=(next);
            div.grid {
                div.wide {
                    label for="email" { "Email" }
                    input #email type="email" name="email" value=(email) autocomplete="username"
                        required autofocus;
                }
                div.wide {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password"
                        required;
                }
            }
            div.actions { button #sign-in type="submit" { "Sign in" } }
        }
        p { a href="/account/forgot" { "Forgot your password?" } }
    };
    page("Sign in", None, notice, body)
}

pub async fn sign_in_form(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Ok(Some((_, session))) = session_of(&state, &headers).await {
        if session.pending == Pending::Nothing {
            return redirect(next, None);
        }
    }
    html_response(StatusCode::OK, sign_in_page("", next, None))
}

pub async fn sign_in(
    State(state): State<WebState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let notice =
            Notice::error("the form arrived incomplete; fill in both fields and try again");
        return html_response(
            StatusCode::BAD_REQUEST,
            sign_in_page("", "/agents", Some(&notice)),
        );
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let now = std::time::Instant::now();
    let limited = state
        .backoff
        .check(peer, &form.email, now)
        .and_then(|()| state.limiter.check(peer, &form.email));
    if let Err(wait) = limited {
        let secs = wait.as_secs().max(1);
        let notice = Notice::error(format!(
            "too many sign-in attempts; wait {secs} s and try again"
        ));
        let mut response = html_response(
            StatusCode::TOO_MANY_REQUESTS,
            sign_in_page(&form.email, &next, Some(&notice)),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let client = Client {
        address: peer.map(|p| p.to_string()),
        browser: crate::trusted_device::describe_browser(
            headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    let trusted = super::two_factor::trusted_device_user(&state, &headers).await;
    match state
        .app
        .sign_in(&form.email, &form.password, &client, trusted)
        .await
    {
        Ok((token, session)) => {
            let to = match session.pending {
                Pending::Nothing => next,
                Pending::Code => format!("/sign-in/code?next={}", query_value(&next)),
                Pending::Setup => "/account/two-factor/setup".to_owned(),
            };
            state.backoff.succeeded(&form.email);
            redirect(&to, Some(start_cookie(&token)))
        }
        Err(OpError::BadSignIn) => {
            state.backoff.failed(peer, &form.email, now);
            html_response(
                StatusCode::UNAUTHORIZED,
                sign_in_page(
                    &form.email,
                    &next,
                    Some(&Notice::error(OpError::BadSignIn.to_string())),
                ),
            )
        }
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// Signs out a session at any step (a person waiting for their code may give up too).
pub async fn sign_out(
    State(state): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let given = form.ok().and_then(|Form(f)| f.csrf);
    let session = match session_of(&state, &headers).await {
        Ok(Some((token, _))) => token,
        Ok(None) => return redirect("/sign-in", Some(end_cookie())),
        Err(page) => return page,
    };
    let ok = !cross_site(&headers)
        && given
            .as_deref()
            .is_some_and(|g| sessions::csrf_matches(&session, g));
    if !ok {
        return problem_page(
            Problem {
                status: StatusCode::FORBIDDEN,
                code: "csrf".into(),
                message: "this form is out of date or came from another site; reload the page \
                          and try again"
                    .into(),
            },
            None,
            ("/agents", "Back to the agents"),
        );
    }
    if let Err(e) = state.app.sign_out(&session).await {
        return internal(e);
    }
    redirect("/sign-in", Some(end_cookie()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/agents/x?q=1")), "/agents/x?q=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "agents",
        ] {
            assert_eq!(safe_next(Some(bad)), "/agents", "{bad}");
        }
        assert_eq!(safe_next(None), "/agents");
    }

    #[test]
    fn the_cookie_carries_every_attribute() {
        let c = start_cookie("tok");
        let c = c.to_str().unwrap();
        for attr in [
            "outpost_session=tok",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(end_cookie().to_str().unwrap().contains("Max-Age=0"));
    }
}
