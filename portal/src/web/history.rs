//! The account history page (`/history`, company admins): the company's history lines (agent and
//! account lines: sign-ins, two-factor, roles, groups, tokens, grants) oldest first, filtered by action,
//! actor, agent and time, a page at a time, and `/history.csv`, the same lines as a download: the bytes
//! `GET /api/v1/history?format=csv` answers for the same filters (same reading of the filters, same
//! defaults, same [`crate::export::history_csv`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::auth::Tech;
use super::layout::{html_response, page, query_value, when, Notice};
use super::WebState;
use crate::api::agents::{number, parse_until};
use crate::api::error::AppError;
use crate::api::owner::Problem;
use crate::app::OpError;
use crate::store::history::{Entry, Filter};

/// Lines per page unless `limit` says otherwise.
pub const PAGE_SIZE: u32 = 50;
/// The most lines one page shows.
pub const MAX_PAGE: u32 = 500;
/// The CSV's default and largest number of lines (as the API's).
pub const CSV_DEFAULT: u32 = 1000;
pub const CSV_MAX: u32 = 100_000;

/// Actions offered as suggestions in the filter (a prefix matches more: `sign-in` also finds
/// `sign-in-failed`).
const ACTIONS: [&str; 27] = [
    "sign-in",
    "sign-in-failed",
    "signed-out-everywhere",
    "password-",
    "email-",
    "2fa-",
    "recovery-code-used",
    "trusted-device-removed",
    "user-",
    "user-invited",
    "user-changed",
    "user-removed",
    "group-",
    "group-users-set",
    "moved",
    "token-",
    "grant-",
    "activated",
    "renamed",
    "renewed",
    "extended",
    "deactivat",
    "reactivated",
    "cleanup",
    "deleted",
    "branding-changed",
    "logo-",
];

/// The query both the page and the CSV read (the API's names).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryParams {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub agent: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

fn nonempty(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl HistoryParams {
    /// The filter, read as `GET /api/v1/history` reads it (times: RFC 3339 or `YYYY-MM-DD`).
    pub fn filter(&self) -> Result<Filter, AppError> {
        let time = |field: &str, v: Option<&String>| {
            nonempty(v)
                .map(|v| {
                    parse_until(&v).map_err(|_| {
                        AppError::bad_request(
                            field,
                            "give RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD",
                        )
                    })
                })
                .transpose()
        };
        Ok(Filter {
            action: nonempty(self.action.as_ref()),
            actor: nonempty(self.actor.as_ref()),
            agent: nonempty(self.agent.as_ref()),
            since: time("since", self.since.as_ref())?,
            until: time("until", self.until.as_ref())?,
        })
    }

    /// The filters as a query string (no paging), for links.
    pub fn filter_query(&self) -> String {
        [
            ("action", &self.action),
            ("actor", &self.actor),
            ("agent", &self.agent),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| nonempty(v.as_ref()).map(|v| format!("{k}={}", query_value(&v))))
        .collect::<Vec<_>>()
        .join("&")
    }
}

fn company(tech: &Tech) -> Result<i64, OpError> {
    tech.caller.company_id.ok_or(OpError::NoCompany)
}

fn bad_query(rejection: QueryRejection) -> AppError {
    AppError::from_query(rejection)
}

fn problem(tech: &Tech, e: AppError) -> Response {
    tech.problem(e, ("/history", "Back to the history"))
}

/// `GET /history`: the filter form, a page of lines and the CSV link.
pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(p)) => p,
        Err(r) => return problem(&tech, bad_query(r)),
    };
    let company = match company(&tech) {
        Ok(c) => c,
        Err(e) => return problem(&tech, e.into()),
    };
    let read = || -> Result<(Filter, u32, u32), AppError> {
        Ok((
            params.filter()?,
            number("limit", params.limit.as_deref(), PAGE_SIZE, MAX_PAGE)?.max(1),
            number("offset", params.offset.as_deref(), 0, u32::MAX)?,
        ))
    };
    let (filter, limit, offset, notice, status) = match read() {
        Ok((f, l, o)) => (f, l, o, None, StatusCode::OK),
        Err(e) => {
            let p = Problem::from(e);
            (
                Filter::default(),
                PAGE_SIZE,
                0,
                Some(Notice::error(p.message)),
                p.status,
            )
        }
    };
    // One more than the page: whether there is a next one.
    let mut entries = match state
        .app
        .account_history(company, &filter, limit.saturating_add(1), offset)
        .await
    {
        Ok(e) => e,
        Err(e) => return problem(&tech, e.into()),
    };
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let filters = params.filter_query();
    let page_link = |offset: u32| {
        let mut q = filters.clone();
        if !q.is_empty() {
            q.push('&');
        }
        format!("/history?{q}limit={limit}&offset={offset}")
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        h1 { "History" }
        form.filters #filters method="get" action="/history" role="search" {
            label { "Action" input #action type="text" name="action" value=(value(&params.action)) list="actions" placeholder="sign-in"; }
            datalist #actions { @for a in ACTIONS { option value=(a) {} } }
            label { "Who" input #actor type="text" name="actor" value=(value(&params.actor)) placeholder="user:ana"; }
            label { "Agent id" input #agent type="text" name="agent" value=(value(&params.agent)); }
            label { "Since" input #since type="date" name="since" value=(value(&params.since)); }
            label { "Before" input #until type="date" name="until" value=(value(&params.until)); }
            button #filter type="submit" { "Filter" }
            a.button.quiet href="/history" { "Clear" }
        }
        div.pager {
            span #line-count {
                @if entries.is_empty() { "No lines" }
                @else { "Lines " (u64::from(offset) + 1) "–" (u64::from(offset) + entries.len() as u64) }
            }
            @if offset > 0 { a href=(page_link(offset.saturating_sub(limit))) rel="prev" { "← Previous" } }
            @if more { a href=(page_link(offset.saturating_add(limit))) rel="next" { "Next →" } }
            a.button.quiet #download href={ "/history.csv" @if !filters.is_empty() { "?" (filters) } } download { "Download CSV" }
        }
        @if !entries.is_empty() {
            div.scroll { table #history {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Who" }
                    th scope="col" { "Agent" } th scope="col" { "Details" } th scope="col" { "From" }
                } }
                tbody { @for e in &entries { (row(e)) } }
            } }
        }
    };
    html_response(
        status,
        page("History", Some(tech.viewer()), notice.as_ref(), body),
    )
}

fn row(e: &Entry) -> maud::Markup {
    html! {
        tr {
            td { (when(e.at)) }
            td.action { (e.action) }
            td { (e.actor) }
            td { @match &e.agent_id {
                Some(id) => a href={ "/agents/" (id) } { (e.agent_name) },
                None => "—",
            } }
            td { (e.details) }
            td { (e.address.as_deref().unwrap_or("—")) }
        }
    }
}

/// `GET /history.csv`: the lines the filters select, as `GET /api/v1/history?format=csv` answers them.
pub async fn csv(
    State(state): State<WebState>,
    tech: Tech,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(p)) => p,
        Err(r) => return problem(&tech, bad_query(r)),
    };
    let read = || -> Result<(i64, Filter, u32, u32), AppError> {
        Ok((
            company(&tech)?,
            params.filter()?,
            number("limit", params.limit.as_deref(), CSV_DEFAULT, CSV_MAX)?,
            number("offset", params.offset.as_deref(), 0, u32::MAX)?,
        ))
    };
    let (company, filter, limit, offset) = match read() {
        Ok(r) => r,
        Err(e) => return problem(&tech, e),
    };
    let bytes = match state
        .app
        .account_history(company, &filter, limit, offset)
        .await
        .and_then(|entries| crate::export::history_csv(&entries).map_err(OpError::from))
    {
        Ok(b) => b,
        Err(e) => return problem(&tech, e.into()),
    };
    let name = format!(
        "attachment; filename=\"outpost-history-{}.csv\"",
        state.app.now().format("%Y%m%d")
    );
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &str) -> HistoryParams {
        serde_urlencoded::from_str(raw).unwrap()
    }

    #[test]
    fn filters_are_read_as_the_api_reads_them() {
        let p = params(
            "action=sign-in&actor=%20&agent=ag-1&since=2026-01-02&until=2026-01-03T10:00:00Z",
        );
        let f = p.filter().unwrap();
        assert_eq!(f.action.as_deref(), Some("sign-in"));
        assert_eq!(f.actor, None, "blank filters are no filter");
        assert_eq!(f.agent.as_deref(), Some("ag-1"));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-01-02T00:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-01-03T10:00:00+00:00");
        let e = params("since=yesterday").filter().unwrap_err().to_string();
        assert!(e.starts_with("since:") && e.contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn links_keep_the_filters_but_not_the_paging() {
        let p = params("action=sign%20in&agent=&limit=5&offset=10&since=2026-01-02");
        assert_eq!(p.filter_query(), "action=sign%20in&since=2026-01-02");
        assert_eq!(params("").filter_query(), "");
    }
}
