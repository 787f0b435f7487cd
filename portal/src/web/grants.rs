//! The support access page (`/support-grants`, company admins): the company's grants (the support
//! engineer, what the grant covers, until when, in force or ended) each with a delete button, and the
//! form that lets one of the operator's support engineers in to the whole company, one group (with its
//! sub-groups) or one agent, until a date or until removed. Creating and deleting call the same `App`
//! methods as `POST`/`DELETE /api/v1/support-grants`, and take effect on the engineer's next request.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::html;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::groups::{indent, tree};
use super::layout::{html_response, page, problem_page, when, Notice};
use super::team::{address, invalid, parse_id, problem_of, Fields};
use super::WebState;
use crate::api::auth::PeerAddr;
use crate::api::error::AppError;
use crate::app::groups::{GrantTarget, NewGrant};
use crate::app::OpError;
use crate::store::users;

/// The notices a redirect back to the grants page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "Access granted; it applies from the support engineer's next request.",
        "deleted" => "Grant deleted; the support engineer lost that access at once.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

/// Reads the form's target: `company`, `group` with the group select, or `agent` with the agent id;
/// the fields of the other scopes are ignored (the form always sends them).
pub fn target_of(f: &Fields) -> Result<GrantTarget, OpError> {
    match f.get("scope") {
        "company" => Ok(GrantTarget::Company),
        "group" => match f.get("group") {
            "" => Err(invalid("group", "choose the group the grant covers")),
            g => parse_id(g, "group", "groups").map(GrantTarget::Group),
        },
        "agent" => match f.get("agent") {
            "" => Err(invalid(
                "agent",
                "give the id of the agent the grant covers (its page shows it)",
            )),
            a => Ok(GrantTarget::Agent(a.to_owned())),
        },
        other => Err(invalid(
            "scope",
            format!(
                "{other:?} is not a grant scope; choose the whole company, a group or an agent"
            ),
        )),
    }
}

/// Reads the form's end: `permanent` ticked (until removed), or a date (the grant ends at the start of
/// that day, UTC).
pub fn until_of(f: &Fields) -> Result<Option<DateTime<Utc>>, OpError> {
    if f.checked("permanent") {
        return Ok(None);
    }
    match f.get("until") {
        "" => Err(invalid(
            "until",
            "give the date the grant ends, or tick \"until removed\"",
        )),
        raw => crate::api::agents::parse_until(raw)
            .map(Some)
            .map_err(|e| match e {
                AppError::BadRequest { message, .. } => invalid("until", message),
                other => invalid("until", other.to_string()),
            }),
    }
}

async fn grants_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let grants = match app.support_grants(&tech.caller).await {
        Ok(g) => g,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let support = match app.store().conn().await {
        Ok(mut conn) => users::of_company(&mut conn, None).await.unwrap_or_default(),
        Err(e) => {
            return problem_page(
                problem_of(e.into()),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let groups = app.groups_in_scope(&tech.caller).await.unwrap_or_default();
    let csrf = tech.csrf();
    let body = html! {
        h1 { "Support access" }
        p.muted { "A grant lets one of the portal operator's support engineers see and work on what it covers. \
                   Everything they do is in the history as done by them under the grant; a deleted or ended \
                   grant stops working at once." }
        @if grants.is_empty() { p.muted #no-grants { "No grants." } }
        @else {
            div.scroll { table #grants {
                thead { tr {
                    th scope="col" { "Support engineer" } th scope="col" { "Covers" } th scope="col" { "Until" }
                    th scope="col" { "State" } th scope="col" { "Granted by" } th scope="col" { "" }
                } }
                tbody { @for g in &grants { tr data-grant=(g.row.id) {
                    td { (g.user_name) br; span.muted { (g.username) } }
                    td { (g.covers) }
                    td { @match g.row.until { Some(t) => (when(t)), None => "until removed" } }
                    td { @if g.in_force { span.badge.on { "in force" } } @else { span.badge.off { "ended" } } }
                    td { (g.row.created_by) br; span.muted { (when(g.row.created_at)) } }
                    td { form.inline method="post" action={ "/support-grants/" (g.row.id) "/delete" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button.danger type="submit" { "Delete" }
                    } }
                } } }
            } }
        }
        h2 { "Grant access" }
        @if support.is_empty() {
            p.muted #no-support { "The portal's operator has no support engineers yet (they are made with \
                                   outpost-portal users new --role support)." }
        } @else {
            form #new-grant method="post" action="/support-grants/new" {
                input type="hidden" name="csrf" value=(csrf);
                div.grid {
                    div {
                        label for="user" { "Support engineer" }
                        select #user name="user" {
                            @for u in &support { option value=(u.id) { (u.name) " (" (u.username) ")" } }
                        }
                    }
                    div {
                        label for="scope" { "Covers" }
                        select #scope name="scope" {
                            option value="company" { "the whole company" }
                            option value="group" { "one group and its sub-groups" }
                            option value="agent" { "one agent" }
                        }
                    }
                    div {
                        label for="group" { "Group (when covering a group)" }
                        select #group name="group" {
                            option value="" { "—" }
                            @for (depth, g) in tree(&groups) { option value=(g.row.id) { (indent(depth)) (g.row.name) } }
                        }
                    }
                    div {
                        label for="agent" { "Agent id (when covering an agent)" }
                        input #agent type="text" name="agent" autocomplete="off";
                    }
                    div {
                        label for="until" { "Ends on (at the start of that day, UTC)" }
                        input #until type="date" name="until";
                    }
                    div {
                        label { input #permanent type="checkbox" name="permanent" value="yes" style="width:auto;min-height:0";
                            " Until removed (no end date)" }
                    }
                }
                div.actions { button #grant type="submit" { "Grant access" } }
            }
        }
    };
    html_response(
        status,
        page("Support access", Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /support-grants`.
pub async fn list(State(state): State<WebState>, tech: Tech, Query(q): Query<OkQuery>) -> Response {
    let notice = q.ok.as_deref().and_then(done_notice).map(Notice::ok);
    grants_page(&state, &tech, notice, StatusCode::OK).await
}

async fn refused(state: &WebState, tech: &Tech, e: OpError) -> Response {
    let problem = problem_of(e);
    grants_page(
        state,
        tech,
        Some(Notice::error(problem.message)),
        problem.status,
    )
    .await
}

/// `POST /support-grants/new`.
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
    let new = match (
        parse_id(f.get("user"), "support engineer", "support access"),
        target_of(&f),
        until_of(&f),
    ) {
        (Ok(user), Ok(target), Ok(until)) => NewGrant {
            user,
            target,
            until,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return refused(&state, &tech, e).await,
    };
    match state
        .app
        .create_grant(&tech.caller, &new, address(peer).as_deref())
        .await
    {
        Ok(_) => redirect("/support-grants?ok=created", None),
        Err(e) => refused(&state, &tech, e).await,
    }
}

/// `POST /support-grants/{id}/delete`.
pub async fn delete(
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
    let result = match parse_id(&id, "support grant", "support access") {
        Ok(id) => {
            state
                .app
                .delete_grant(&tech.caller, id, address(peer).as_deref())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => redirect("/support-grants?ok=deleted", None),
        Err(e) => refused(&state, &tech, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &str) -> Fields {
        Fields::of(Ok(Form(serde_urlencoded::from_str(raw).unwrap())))
    }

    #[test]
    fn the_scope_picks_its_own_field_and_ignores_the_others() {
        assert_eq!(
            target_of(&fields("scope=company&group=3&agent=x")).unwrap(),
            GrantTarget::Company
        );
        assert_eq!(
            target_of(&fields("scope=group&group=3&agent=x")).unwrap(),
            GrantTarget::Group(3)
        );
        assert_eq!(
            target_of(&fields("scope=agent&group=3&agent=%20ag-1%20")).unwrap(),
            GrantTarget::Agent("ag-1".into())
        );
        for (raw, field) in [
            ("scope=group&group=", "group"),
            ("scope=agent&agent=", "agent"),
            ("scope=everything", "scope"),
        ] {
            match target_of(&fields(raw)) {
                Err(OpError::Invalid { field: f, .. }) => assert_eq!(f, field, "{raw}"),
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_grant_ends_on_a_date_or_lasts_until_removed_but_never_by_omission() {
        assert_eq!(
            until_of(&fields("until=2027-01-31&permanent=yes")).unwrap(),
            None
        );
        let t = until_of(&fields("until=2027-01-31")).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-31T00:00:00+00:00");
        let e = until_of(&fields("until=")).unwrap_err().to_string();
        assert!(e.contains("until removed"), "{e}");
        let e = until_of(&fields("until=soon")).unwrap_err().to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
    }
}
