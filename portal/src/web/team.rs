//! The team page (`/team`): the company's users with their role, groups, two-factor state and open
//! sessions; for company admins the invitation form (the link is mailed, or shown here once when the
//! portal has no mailer) and, per user, changing the role, requiring two-factor sign-in, forcing a
//! sign-out and removing them (after a confirmation page). Every form calls the same `App` method as
//! the people API, so the rules (last company admin, groups of a role, another company's users) are
//! the server's; a refusal comes back as the page with the server's message. Also the small form
//! helpers the other people pages share (repeated fields, ids, addresses, problems).

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{confirm_page, html_response, page, problem_page, when, Notice};
use super::WebState;
use crate::access::{Action, Role};
use crate::api::auth::PeerAddr;
use crate::api::error::AppError;
use crate::api::owner::Problem;
use crate::app::members::{Invitation, Member, MemberChange};
use crate::app::OpError;

/// The fields of a submitted form in their order; a field may repeat (multi-selects, checkboxes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The fields of a form that may not have arrived (an unreadable body reads as empty).
    pub fn of(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Self {
        Fields(form.map(|Form(f)| f).unwrap_or_default())
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        matches!(self.get(name), "yes" | "on" | "true")
    }

    /// The CSRF token the form carried.
    pub fn csrf(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
    }
}

/// The caller's address as the history writes it.
pub fn address(peer: PeerAddr) -> Option<String> {
    peer.0.map(|ip| ip.to_string())
}

/// The page's answer to a refusal or failure; a mail that could not be sent is explained (the message
/// names no secret).
pub fn problem_of(e: OpError) -> Problem {
    let mail = matches!(e, OpError::Mail(_)).then(|| e.to_string());
    let mut problem = Problem::from(AppError::from(e));
    if let Some(message) = mail {
        problem.message = message;
    }
    problem
}

/// A form field that is not what the page offers (a hand-made request): 400 naming the field.
pub fn invalid(field: &'static str, message: impl Into<String>) -> OpError {
    OpError::Invalid {
        field,
        message: message.into(),
    }
}

/// A numeric id from the path or a form; anything else names the page that lists them.
pub fn parse_id(raw: &str, what: &str, page: &str) -> Result<i64, OpError> {
    raw.trim().parse::<i64>().map_err(|_| {
        invalid(
            "id",
            format!("{raw:?} is not a {what} id; use the forms of the {page} page"),
        )
    })
}

/// The notices a redirect back to the team page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "role" => "Role changed.",
        "two-factor-on" => {
            "Two-factor sign-in is now required: they set it up at their next sign-in."
        }
        "two-factor-off" => "Two-factor sign-in is no longer required.",
        "signed-out" => "Signed out of every browser session.",
        "removed" => "User removed; their sessions and tokens ended.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct TeamQuery {
    pub ok: Option<String>,
    /// After an invitation that was mailed: whom to name.
    pub user: Option<String>,
}

/// An invitation link to show once (there was no mailer to send it).
#[derive(Debug, Clone)]
pub struct ShownLink {
    pub email: String,
    pub link: String,
    pub expires_at: DateTime<Utc>,
}

/// The roles a company gives (support engineers are the operator's).
const COMPANY_ROLES: [Role; 3] = [Role::CompanyAdmin, Role::GroupAdmin, Role::Supervisor];

/// The group names of a member, as listed.
fn group_names(member: &Member, names: &HashMap<i64, String>) -> String {
    let mut out: Vec<&str> = member
        .groups
        .iter()
        .map(|g| names.get(g).map_or("?", String::as_str))
        .collect();
    out.sort_unstable();
    out.join(", ")
}

fn user_actions(tech: &Tech, member: &Member, sessions: usize) -> Markup {
    let csrf = tech.csrf();
    let u = &member.user;
    let base = format!("/team/{}", u.id);
    html! {
        form.inline method="post" action={ (base) "/role" } {
            input type="hidden" name="csrf" value=(csrf);
            label { span.muted { "Role " }
                select name="role" aria-label={ "Role of " (u.username) } {
                    @for r in COMPANY_ROLES { option value=(r.as_str()) selected[u.role == r] { (r.label()) } }
                }
            }
            " " button.quiet type="submit" { "Change role" }
        }
        div.actions {
            form.inline method="post" action={ (base) "/two-factor" } {
                input type="hidden" name="csrf" value=(csrf);
                @if u.require_2fa {
                    input type="hidden" name="require" value="no";
                    button.quiet type="submit" { "Stop requiring 2FA" }
                } @else {
                    input type="hidden" name="require" value="yes";
                    button.quiet type="submit" { "Require 2FA" }
                }
            }
            form.inline method="post" action={ (base) "/sign-out" } {
                input type="hidden" name="csrf" value=(csrf);
                button.quiet type="submit" disabled[sessions == 0] { "Sign out everywhere" }
            }
            @if u.id != tech.caller.user_id {
                a.button.quiet href={ (base) "/remove" } { "Remove…" }
            }
        }
    }
}

fn invite_form(tech: &Tech, groups: &[crate::app::groups::GroupInfo]) -> Markup {
    html! {
        h2 { "Invite someone" }
        p.muted { "They get a link to choose their password; it works for 72 hours. Group admins and \
                   supervisors see only the agents of their groups (and sub-groups): choose at least one. \
                   Company admins see everything." }
        form #invite method="post" action="/team/invite" {
            input type="hidden" name="csrf" value=(tech.csrf());
            div.grid {
                div {
                    label for="invite-email" { "Email" }
                    input #invite-email type="email" name="email" autocomplete="off" required;
                }
                div {
                    label for="invite-name" { "Name" }
                    input #invite-name type="text" name="name" maxlength="100";
                }
                div {
                    label for="invite-role" { "Role" }
                    select #invite-role name="role" {
                        @for r in COMPANY_ROLES { option value=(r.as_str()) selected[r == Role::GroupAdmin] { (r.label()) } }
                    }
                }
                div {
                    label for="invite-groups" { "Groups" }
                    select #invite-groups name="groups" multiple size=(groups.len().clamp(2, 8)) {
                        @for (depth, g) in super::groups::tree(groups) {
                            option value=(g.row.id) { (super::groups::indent(depth)) (g.row.name) }
                        }
                    }
                }
                div.wide {
                    label { input type="checkbox" name="require_2fa" value="yes" style="width:auto;min-height:0";
                        " Require two-factor sign-in (they set it up at their first sign-in)" }
                }
            }
            div.actions { button #send-invitation type="submit" { "Invite" } }
        }
    }
}

/// The team page, with an optional notice and an invitation link to show once.
pub async fn render(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    shown: Option<&ShownLink>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let members = match app.members(&tech.caller).await {
        Ok(m) => m,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let groups = app.groups_in_scope(&tech.caller).await.unwrap_or_default();
    let names: HashMap<i64, String> = groups
        .iter()
        .map(|g| (g.row.id, g.row.name.clone()))
        .collect();
    let mut sessions = Vec::with_capacity(members.len());
    for m in &members {
        sessions.push(app.sessions_of(m.user.id).await.map_or(0, |s| s.len()));
    }
    let manage = tech.may(Action::UsersManage);
    let body = html! {
        h1 { "Team" }
        @if let Some(s) = shown {
            div.notice #invitation-link role="status" {
                p { "Invitation made for " strong { (s.email) } ". The portal has no mail server configured, so \
                     send them this link yourself; it works until " (when(s.expires_at)) " and is shown only this once:" }
                p { code { (s.link) } }
            }
        }
        p.muted { "Company admins manage the team; group admins and supervisors cannot open this page." }
        div.scroll { table #users {
            thead { tr {
                th scope="col" { "Username" } th scope="col" { "Name" } th scope="col" { "Email" }
                th scope="col" { "Role" } th scope="col" { "Groups" } th scope="col" { "2FA" }
                th scope="col" { "2FA required" } th scope="col" { "Sessions" }
                @if manage { th scope="col" { "Change" } }
            } }
            tbody { @for (m, n) in members.iter().zip(&sessions) { tr data-user=(m.user.username) {
                td { (m.user.username) @if m.user.id == tech.caller.user_id { " " span.badge { "you" } } }
                td { (m.user.name) }
                td { (m.user.email.as_deref().unwrap_or("—")) }
                td.role { (m.user.role.label()) }
                td { (group_names(m, &names)) }
                td.two-factor { @if m.user.has_2fa() { span.badge.on { "on" } } @else { span.badge.off { "off" } } }
                td.required { @if m.user.require_2fa { "required" } @else { "—" } }
                td.num.sessions { (n) }
                @if manage { td { (user_actions(tech, m, *n)) } }
            } } }
        } }
        @if manage { (invite_form(tech, &groups)) }
    };
    html_response(
        status,
        page("Team", Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /team`.
pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    Query(q): Query<TeamQuery>,
) -> Response {
    let notice = match q.ok.as_deref() {
        Some("invited") => {
            let id = q.user.as_deref().and_then(|u| u.parse::<i64>().ok());
            let email = match id {
                Some(id) => state
                    .app
                    .members(&tech.caller)
                    .await
                    .ok()
                    .and_then(|ms| ms.into_iter().find(|m| m.user.id == id))
                    .and_then(|m| m.user.email),
                None => None,
            };
            Some(Notice::ok(match email {
                Some(e) => format!("Invitation sent to {e}; the link works for 72 hours."),
                None => "Invitation sent; the link works for 72 hours.".to_owned(),
            }))
        }
        Some(key) => done_notice(key).map(Notice::ok),
        None => None,
    };
    render(&state, &tech, notice, None, StatusCode::OK).await
}

/// A refused form: the team page with the server's message and status.
async fn refused(state: &WebState, tech: &Tech, e: OpError) -> Response {
    let problem = problem_of(e);
    render(
        state,
        tech,
        Some(Notice::error(problem.message)),
        None,
        problem.status,
    )
    .await
}

/// `POST /team/invite`: invites a user; the link is mailed (then named on the page), or shown once.
pub async fn invite(
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
    let role = match f.get("role").parse::<Role>() {
        Ok(r) => r,
        Err(e) => return refused(&state, &tech, invalid("role", e.to_string())).await,
    };
    let mut groups = Vec::new();
    for g in f.all("groups") {
        match parse_id(g, "group", "groups") {
            Ok(id) => groups.push(id),
            Err(e) => return refused(&state, &tech, e).await,
        }
    }
    let name = Some(f.get("name")).filter(|n| !n.is_empty());
    let invitation = Invitation {
        email: f.get("email"),
        name,
        role,
        groups: &groups,
        require_2fa: f.checked("require_2fa"),
    };
    let invited = match state
        .app
        .invite_member(&tech.caller, &invitation, address(peer).as_deref())
        .await
    {
        Ok(i) => i,
        Err(e) => return refused(&state, &tech, e).await,
    };
    match invited.link {
        None => redirect(
            &format!("/team?ok=invited&user={}", invited.member.user.id),
            None,
        ),
        Some(link) => {
            let shown = ShownLink {
                email: invited
                    .member
                    .user
                    .email
                    .unwrap_or_else(|| invitation.email.to_owned()),
                link,
                expires_at: invited.expires_at,
            };
            render(&state, &tech, None, Some(&shown), StatusCode::CREATED).await
        }
    }
}

/// What a per-user form does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Role,
    TwoFactor,
    SignOut,
    Remove,
}

async fn change(
    state: WebState,
    tech: Tech,
    peer: PeerAddr,
    headers: HeaderMap,
    id: String,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    what: Change,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let id = match parse_id(&id, "user", "team") {
        Ok(id) => id,
        Err(e) => return refused(&state, &tech, e).await,
    };
    let app = &state.app;
    let address = address(peer);
    let address = address.as_deref();
    let result = match what {
        Change::Role => match f.get("role").parse::<Role>() {
            Ok(role) => {
                let change = MemberChange {
                    role: Some(role),
                    ..MemberChange::default()
                };
                app.change_member(&tech.caller, id, &change, address)
                    .await
                    .map(|_| "role")
            }
            Err(e) => Err(invalid("role", e.to_string())),
        },
        Change::TwoFactor => {
            let require = match f.get("require") {
                "yes" => Ok(true),
                "no" => Ok(false),
                other => Err(invalid(
                    "require",
                    format!("{other:?} is neither yes nor no; use the buttons of the team page"),
                )),
            };
            match require {
                Ok(require) => {
                    let change = MemberChange {
                        require_2fa: Some(require),
                        ..MemberChange::default()
                    };
                    app.change_member(&tech.caller, id, &change, address)
                        .await
                        .map(|_| {
                            if require {
                                "two-factor-on"
                            } else {
                                "two-factor-off"
                            }
                        })
                }
                Err(e) => Err(e),
            }
        }
        Change::SignOut => app
            .sign_out_member(&tech.caller, id, address)
            .await
            .map(|_| "signed-out"),
        Change::Remove if f.get("confirm") == "yes" => app
            .remove_member(&tech.caller, id, address)
            .await
            .map(|()| "removed"),
        Change::Remove => return redirect(&format!("/team/{id}/remove"), None),
    };
    match result {
        // Signing oneself out ends this session too: off to the sign-in page.
        Ok("signed-out") if id == tech.caller.user_id => redirect("/sign-in", None),
        Ok(key) => redirect(&format!("/team?ok={key}"), None),
        Err(e) => refused(&state, &tech, e).await,
    }
}

macro_rules! change_route {
    ($name:ident, $what:expr) => {
        pub async fn $name(
            State(state): State<WebState>,
            tech: Tech,
            peer: PeerAddr,
            headers: HeaderMap,
            Path(id): Path<String>,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            change(state, tech, peer, headers, id, form, $what).await
        }
    };
}

change_route!(set_role, Change::Role);
change_route!(set_two_factor, Change::TwoFactor);
change_route!(sign_out, Change::SignOut);
change_route!(remove, Change::Remove);

/// `GET /team/{id}/remove`: what removing the user does, and the button.
pub async fn confirm_remove(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
) -> Response {
    let member = match parse_id(&id, "user", "team") {
        Ok(id) => match state.app.members(&tech.caller).await {
            Ok(ms) => ms
                .into_iter()
                .find(|m| m.user.id == id)
                .ok_or(OpError::UnknownUser(id)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let member = match member {
        Ok(m) => m,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/team", "Back to the team"),
            )
        }
    };
    let u = &member.user;
    let title = format!("Remove {}?", u.username);
    let explanation = html! {
        p { strong { (u.name) } " (" (u.email.as_deref().unwrap_or(&u.username)) ", " (u.role.label()) ") loses access at once: their sessions end and their API tokens stop working." }
        p { "The history keeps what they did. To let them in again, invite them anew." }
    };
    html_response(
        StatusCode::OK,
        confirm_page(
            tech.viewer(),
            &title,
            explanation,
            &format!("/team/{}/remove", u.id),
            &[],
            "Remove",
            "/team",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &str) -> Fields {
        Fields(serde_urlencoded::from_str(raw).unwrap())
    }

    #[test]
    fn repeated_fields_and_checkboxes_are_read() {
        let f = fields("csrf=t&groups=3&groups=&groups=%207%20&name=%20Nia%20&require_2fa=yes");
        assert_eq!(f.all("groups"), ["3", "7"]);
        assert_eq!(f.get("name"), "Nia");
        assert_eq!(f.get("missing"), "");
        assert!(f.checked("require_2fa"));
        assert!(!f.checked("name"));
        assert_eq!(f.csrf(), Some("t"));
        assert_eq!(fields("a=1").csrf(), None);
    }

    #[test]
    fn ids_that_are_not_numbers_name_the_page() {
        assert_eq!(parse_id(" 12", "user", "team").unwrap(), 12);
        let e = parse_id("x", "user", "team").unwrap_err();
        assert!(matches!(e, OpError::Invalid { field: "id", .. }));
        assert!(e.to_string().contains("team page"), "{e}");
    }

    #[test]
    fn every_redirect_notice_is_known_and_others_are_not() {
        for key in [
            "role",
            "two-factor-on",
            "two-factor-off",
            "signed-out",
            "removed",
        ] {
            assert!(done_notice(key).is_some(), "{key}");
        }
        assert!(done_notice("<b>").is_none());
    }

    #[test]
    fn mail_failures_are_explained_and_internal_ones_are_not() {
        let p = problem_of(OpError::Mail("connection refused".into()));
        assert!(p.message.contains("connection refused"), "{}", p.message);
        let p = problem_of(OpError::Internal("secret detail".into()));
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.message.contains("secret detail"));
        let p = problem_of(OpError::UnknownUser(4));
        assert_eq!(p.status, StatusCode::NOT_FOUND);
    }
}
