//! The update rollouts page (`/rollouts`): every rollout the viewer sees (release, scope, stage, state with
//! the pause reason, how many agents are in each update state) with pause, resume and cancel buttons, and
//! the form that starts one (release, scope: the whole fleet, a group with its sub-groups or one agent,
//! stages, failure threshold). The buttons and the form are shown only to roles that may steer rollouts
//! (`updates.manage`); they call the same `App` methods as `POST /api/v1/rollouts...`.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::html;

use super::auth::{redirect, Tech};
use super::grants::OkQuery;
use super::groups::{indent, tree};
use super::layout::{html_response, page, problem_page, when, Notice};
use super::team::{parse_id, problem_of, Fields};
use super::WebState;
use crate::access::Action;
use crate::api::owner::Problem;
use crate::app::rollouts::{scope_text, RolloutError, RolloutRequest, Steer};
use crate::app::OpError;
use crate::store::releases::Filter;
use crate::store::rollouts::RolloutScope;

/// The notices a redirect back to the page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "Rollout started: its first stage's agents were sent the update.",
        "paused" => "Rollout paused: no new updates are sent; those under way finish.",
        "resumed" => "Rollout resumed.",
        "cancelled" => "Rollout cancelled: no new updates are sent; those under way finish.",
        _ => return None,
    })
}

fn problem(e: RolloutError) -> Problem {
    let (status, code) = match &e {
        RolloutError::Op(_) => {
            let RolloutError::Op(op) = e else {
                unreachable!()
            };
            return problem_of(op);
        }
        RolloutError::UnknownRelease(_) | RolloutError::Plan(_) | RolloutError::Scope(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        RolloutError::UnknownRollout(_) => (StatusCode::NOT_FOUND, "not_found"),
        RolloutError::NoEligible(_) => (StatusCode::CONFLICT, "no_eligible_agents"),
        RolloutError::State(_) => (StatusCode::CONFLICT, "invalid_state"),
    };
    Problem {
        status,
        code: code.into(),
        message: e.to_string(),
    }
}

async fn rollouts_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let rollouts = match app.rollouts(&tech.caller).await {
        Ok(r) => r,
        Err(e) => {
            return problem_page(
                problem(e),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let manage = tech.may(Action::UpdatesManage);
    let releases = if manage {
        app.releases(&Filter::default()).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let groups = app.groups_in_scope(&tech.caller).await.unwrap_or_default();
    let csrf = tech.csrf();
    let body = html! {
        h1 { "Updates" }
        p.muted { "A rollout sends a signed release to the agents of its scope that can take it, stage by stage; \
                   a stage whose failed and rolled-back updates pass the threshold pauses the rollout." }
        @if rollouts.is_empty() { p.muted #no-rollouts { "No rollouts yet." } }
        @else {
            div.scroll { table #rollouts {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Release" } th scope="col" { "Scope" }
                    th scope="col" { "Stage" } th scope="col" { "State" } th scope="col" { "Agents" }
                    th scope="col" { "Started" } th scope="col" { "" }
                } }
                tbody { @for info in &rollouts {
                    @let r = &info.row;
                    tr #{ "rollout-" (r.id) } data-rollout=(r.id) {
                        td { (r.id) }
                        td { (r.version) br; span.muted { (r.target) } }
                        td { (scope_text(&r.scope)) }
                        td { (r.stage + 1) " of " (r.stages.len()) " ("
                            (r.stages.get(r.stage).copied().unwrap_or(100)) "%)" }
                        td.state { (r.state.as_str())
                            @if let Some(why) = &r.pause_reason { br; span.muted { (why) } } }
                        td.counts {
                            (info.eligible()) " eligible, " (info.skipped()) " skipped"
                            @for (k, n) in info.counts() { br; (n) " " (k.replace('_', " ")) }
                        }
                        td { (r.created_by) br; span.muted { (when(r.created_at)) } }
                        td { @if manage {
                            @for steer in Steer::ALL.into_iter().filter(|s| s.applies_to(r.state)) {
                                form.inline method="post" action={ "/rollouts/" (r.id) "/" (steer.verb()) } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.quiet type="submit" { (button_label(steer)) }
                                }
                            }
                        } }
                    }
                } }
            } }
        }
        @if manage {
            h2 { "Start a rollout" }
            @if releases.is_empty() {
                p.muted #no-releases { "No releases are stored yet (they are added with outpost-portal releases add)." }
            } @else {
                form #new-rollout method="post" action="/rollouts/new" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.grid {
                        div {
                            label for="release" { "Release" }
                            select #release name="release" {
                                @for rel in &releases {
                                    option value=(rel.id) { (rel.version) " for " (rel.target)
                                        @if rel.rollback { " (rollback)" } }
                                }
                            }
                        }
                        div {
                            label for="scope" { "To" }
                            select #scope name="scope" {
                                option value="fleet" { "the whole fleet" }
                                option value="group" { "one group and its sub-groups" }
                                option value="agent" { "one agent" }
                            }
                        }
                        div {
                            label for="group" { "Group (when rolling out to a group)" }
                            select #group name="group" {
                                option value="" { "—" }
                                @for (depth, g) in tree(&groups) { option value=(g.row.id) { (indent(depth)) (g.row.name) } }
                            }
                        }
                        div {
                            label for="agent" { "Agent id (when updating one agent)" }
                            input #agent type="text" name="agent" autocomplete="off";
                        }
                        div {
                            label for="stages" { "Stages (percent of the agents, comma-separated, ending at 100)" }
                            input #stages type="text" name="stages" value="10,50,100";
                        }
                        div {
                            label for="max_failure_pct" { "Pause above this percent of failures in a stage" }
                            input #max_failure_pct type="number" name="max_failure_pct" min="0" max="100" value="20";
                        }
                    }
                    div.actions { button #start type="submit" { "Start" } }
                }
            }
        }
    };
    html_response(
        status,
        page("Updates", Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /rollouts`.
pub async fn list(State(state): State<WebState>, tech: Tech, Query(q): Query<OkQuery>) -> Response {
    let notice = q.ok.as_deref().and_then(done_notice).map(Notice::ok);
    rollouts_page(&state, &tech, notice, StatusCode::OK).await
}

async fn refused(state: &WebState, tech: &Tech, e: RolloutError) -> Response {
    let p = problem(e);
    rollouts_page(state, tech, Some(Notice::error(p.message)), p.status).await
}

fn invalid(field: &'static str, message: impl Into<String>) -> RolloutError {
    RolloutError::Op(OpError::Invalid {
        field,
        message: message.into(),
    })
}

/// Reads the start form: the release, the scope (the other scopes' fields ignored), stages and threshold.
pub fn request_of(f: &Fields) -> Result<RolloutRequest, RolloutError> {
    let release_id = parse_id(f.get("release"), "release", "updates")?;
    let scope = match f.get("scope") {
        "fleet" => RolloutScope::Fleet,
        "group" => match f.get("group") {
            "" => return Err(invalid("group", "choose the group to roll out to")),
            g => RolloutScope::Group(parse_id(g, "group", "updates")?),
        },
        "agent" => match f.get("agent") {
            "" => {
                return Err(invalid(
                    "agent",
                    "give the id of the agent to update (its page shows it)",
                ))
            }
            a => RolloutScope::Agent(a.to_owned()),
        },
        other => {
            return Err(invalid(
                "scope",
                format!("{other:?} is not a scope; choose the whole fleet, a group or one agent"),
            ))
        }
    };
    let single = matches!(scope, RolloutScope::Agent(_));
    let stages = match f.get("stages") {
        "" => None,
        // One agent is one stage of 100, whatever the field says.
        _ if single => None,
        raw => Some(
            raw.split(',')
                .map(|s| {
                    s.trim().parse::<i64>().map_err(|_| {
                        invalid(
                            "stages",
                            format!(
                                "{:?} is not a whole percentage; write e.g. 10,50,100",
                                s.trim()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let max_failure_pct = match f.get("max_failure_pct") {
        "" => None,
        raw => Some(raw.parse::<i64>().map_err(|_| {
            invalid(
                "max_failure_pct",
                format!("{raw:?} is not a whole percentage between 0 and 100"),
            )
        })?),
    };
    Ok(RolloutRequest {
        release_id,
        scope,
        stages,
        max_failure_pct,
    })
}

/// `POST /rollouts/new`.
pub async fn create(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let req = match request_of(&f) {
        Ok(r) => r,
        Err(e) => return refused(&state, &tech, e).await,
    };
    match state
        .app
        .create_rollout(&tech.caller, &req, &tech.actor())
        .await
    {
        Ok(_) => redirect("/rollouts?ok=created", None),
        Err(e) => refused(&state, &tech, e).await,
    }
}

async fn steer(
    state: WebState,
    tech: Tech,
    headers: HeaderMap,
    id: String,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    steer: Steer,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let id = match parse_id(&id, "rollout", "updates") {
        Ok(id) => id,
        Err(e) => return refused(&state, &tech, e.into()).await,
    };
    match state
        .app
        .steer_rollout(&tech.caller, id, steer, &tech.actor())
        .await
    {
        Ok(_) => {
            let key = match steer {
                Steer::Pause => "paused",
                Steer::Resume => "resumed",
                Steer::Cancel => "cancelled",
            };
            redirect(&format!("/rollouts?ok={key}"), None)
        }
        Err(e) => refused(&state, &tech, e).await,
    }
}

/// The button that steers a rollout this way.
fn button_label(steer: Steer) -> &'static str {
    match steer {
        Steer::Pause => "Pause",
        Steer::Resume => "Resume",
        Steer::Cancel => "Cancel",
    }
}

/// `POST /rollouts/{id}/pause`.
pub async fn pause(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    steer(state, tech, headers, id, form, Steer::Pause).await
}

/// `POST /rollouts/{id}/resume`.
pub async fn resume(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    steer(state, tech, headers, id, form, Steer::Resume).await
}

/// `POST /rollouts/{id}/cancel`.
pub async fn cancel(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    steer(state, tech, headers, id, form, Steer::Cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &str) -> Fields {
        Fields::of(Ok(Form(serde_urlencoded::from_str(raw).unwrap())))
    }

    #[test]
    fn the_form_reads_its_scope_stages_and_threshold() {
        let r = request_of(&fields(
            "release=3&scope=group&group=4&agent=x&stages=10,%2050,100&max_failure_pct=5",
        ))
        .unwrap();
        assert_eq!(r.release_id, 3);
        assert_eq!(r.scope, RolloutScope::Group(4));
        assert_eq!(r.stages, Some(vec![10, 50, 100]));
        assert_eq!(r.max_failure_pct, Some(5));
        let r = request_of(&fields("release=3&scope=agent&agent=ag-1&stages=10,100")).unwrap();
        assert_eq!(r.scope, RolloutScope::Agent("ag-1".into()));
        assert_eq!(r.stages, None, "one agent: one stage");
        for (raw, needle) in [
            ("release=3&scope=group&group=", "choose the group"),
            ("release=3&scope=agent&agent=", "give the id of the agent"),
            ("release=3&scope=everyone", "is not a scope"),
            (
                "release=3&scope=fleet&stages=10,half,100",
                "\"half\" is not a whole percentage",
            ),
            (
                "release=3&scope=fleet&max_failure_pct=lots",
                "max_failure_pct",
            ),
            ("release=&scope=fleet", "is not a release id"),
        ] {
            let e = request_of(&fields(raw)).unwrap_err().to_string();
            assert!(e.contains(needle), "{raw}: {e}");
        }
    }
}
