//! The renewal page of a yearly or quarterly agent (`/agents/{id}/renewal`, the page the reminder mails
//! link to): the plan, the renewal date and its flag, what was decided and how many reminders went out,
//! and two buttons: confirm the renewal, or request the deactivation at the end of the contracted period.
//! Also the renewal badge (orange: due; red: renewed automatically) the agents list and the agent page
//! show.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{html_response, page, when, when_opt, Notice};
use super::WebState;
use crate::api::owner::Problem;
use crate::lifecycle::{Decision, Status};
use crate::listing::{renewal_flag, renews_at, RenewalFlag, DUE_WINDOW_DAYS};
use crate::mail::messages::RENEWAL_REMINDERS;

/// The orange of a renewal that is due (the stylesheet's red is the `warn` badge).
const ORANGE: &str = "border-color:#c25e00;color:#c25e00";

/// The badge of a renewal flag, with the date it is about in its title.
pub fn badge(flag: RenewalFlag, renews_at: Option<chrono::DateTime<chrono::Utc>>) -> Markup {
    let title = match (flag, renews_at) {
        (RenewalFlag::Due, Some(at)) => format!("renews {}; not confirmed yet", when(at)),
        (RenewalFlag::Overdue, Some(at)) => {
            format!(
                "renewed automatically without a decision; now until {}",
                when(at)
            )
        }
        (_, None) => String::new(),
    };
    html! {
        @match flag {
            RenewalFlag::Due => {
                span.badge.renewal style=(ORANGE) data-renewal="due" title=(title) { (flag.label()) }
            }
            RenewalFlag::Overdue => {
                span.badge.warn.renewal data-renewal="overdue" title=(title) { (flag.label()) }
            }
        }
    }
}

/// The notices a redirect back to the page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "confirmed" => "Renewal confirmed.",
        "deactivate" => {
            "Deactivation requested: the agent keeps working until the end of its contracted period."
        }
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub ok: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    pub csrf: Option<String>,
    pub decision: Option<String>,
}

/// `GET /agents/{id}/renewal`.
pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let notice = query.ok.as_deref().and_then(done_notice).map(Notice::ok);
    render(&state, &tech, &id, notice, StatusCode::OK).await
}

/// `POST /agents/{id}/renewal` (`decision=confirm|deactivate`).
pub async fn decide(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
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
    let raw = form
        .as_ref()
        .and_then(|f| f.decision.as_deref())
        .unwrap_or("");
    let choice = match raw.parse::<Decision>() {
        Ok(choice) => choice,
        Err(e) => {
            return render(
                &state,
                &tech,
                &id,
                Some(Notice::error(e.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    };
    match state.app.decide_renewal(&id, choice, &tech.actor()).await {
        Ok(_) => {
            let key = match choice {
                Decision::Confirm => "confirmed",
                Decision::Deactivate => "deactivate",
            };
            redirect(&format!("/agents/{id}/renewal?ok={key}"), None)
        }
        Err(e) => {
            let problem = Problem::from(e);
            render(
                &state,
                &tech,
                &id,
                Some(Notice::error(problem.message)),
                problem.status,
            )
            .await
        }
    }
}

async fn render(
    state: &WebState,
    tech: &Tech,
    id: &AgentId,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let row = match app.agent(id).await {
        Ok(row) => row,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let now = app.now();
    let s = &row.subscription;
    let date = renews_at(&row);
    let flag = renewal_flag(&row, now);
    let reminders = match date {
        Some(at) => app.renewal_reminders(id, at).await.ok(),
        None => None,
    };
    let base = format!("/agents/{id}");
    let csrf = tech.csrf();
    let title = format!("Renewal of {}", row.name);
    let body = html! {
        p { a href=(base) { "← " (row.name) } }
        h1 { (title) }
        dl.facts #renewal-facts {
            dt { "Plan" } dd #plan { (s.plan.label()) }
            dt { "Status" } dd #status { (crate::listing::display_status(&row).label()) }
            @if let Some(at) = date {
                dt { "Renewal date" } dd #renews-at { (when(at)) }
                dt { "Flag" } dd #flag {
                    @if let Some(f) = flag { (badge(f, Some(at))) } @else { span.muted { "none" } }
                }
                dt { "Decision" } dd #decision {
                    @if row.renewal.confirmed(at) { "renewal confirmed for this date" }
                    @else { "none yet for this date" }
                }
                @if let Some(auto) = row.renewal.renewed_automatically_at {
                    dt { "Renewed automatically" } dd { (when(auto)) }
                }
                @if let Some(r) = reminders {
                    dt { "Reminders mailed" } dd #reminders {
                        (r.sent) " of " (RENEWAL_REMINDERS)
                        @if let Some(last) = r.last_sent_at { ", the last " (when(last)) }
                    }
                }
            }
            @if let Some(end) = s.deactivates_at { dt { "Deactivates" } dd #deactivates { (when(end)) } }
        }
        @if let Some(at) = date {
            p {
                "The agent renews by itself on " (when(at)) " for another "
                (if s.plan.renewal_months() == Some(3) { "three months" } else { "year" })
                ". The company's admins and the group's admins are reminded weekly from "
                (DUE_WINDOW_DAYS) " days before (at most " (RENEWAL_REMINDERS) " times) until someone decides."
            }
            div.actions {
                form.inline method="post" action={ (base) "/renewal" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="decision" value="confirm";
                    button #confirm-renewal type="submit" { "Confirm the renewal" }
                }
                form.inline method="post" action={ (base) "/renewal" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="decision" value="deactivate";
                    button.danger #request-deactivation type="submit" { "Request deactivation" }
                }
            }
            p.muted { "A requested deactivation takes effect at the end of the contracted period, "
                (when(at)) "; the agent keeps working until then." }
        } @else {
            p.notice #no-renewal {
                @if !s.plan.renews() {
                    "This agent is on the " (s.plan.as_str()) " plan, which has no renewal date; only yearly and quarterly plans are renewed."
                } @else if s.status == Status::DeactivationPending {
                    "A deactivation is requested for " (when_opt(s.deactivates_at))
                    ", so the agent does not renew. To cancel it, reactivate the agent on its page."
                } @else {
                    "The agent is " (s.status) ", so there is no renewal to decide. Reactivating it on its page starts a new period."
                }
            }
        }
    };
    html_response(
        status,
        page(&title, Some(tech.viewer()), notice.as_ref(), body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_are_orange_or_red_and_say_why() {
        let at = chrono::DateTime::parse_from_rfc3339("2027-01-15T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let due = badge(RenewalFlag::Due, Some(at)).into_string();
        assert!(due.contains(ORANGE), "{due}");
        assert!(due.contains("data-renewal=\"due\""));
        assert!(due.contains("renews 2027-01-15 12:00 UTC"));
        let red = badge(RenewalFlag::Overdue, Some(at)).into_string();
        assert!(red.contains("badge warn renewal"), "{red}");
        assert!(red.contains("renewed automatically"));
    }

    #[test]
    fn every_redirect_notice_is_known() {
        for key in ["confirmed", "deactivate"] {
            assert!(done_notice(key).is_some(), "{key}");
        }
        assert!(done_notice("<b>").is_none());
    }
}
