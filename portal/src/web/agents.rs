//! The agents list in the technician pages: search (name, Customer ID, Contract ID, contact, note),
//! filters (subscription state, online, renewal flag), sorting, pagination with a chosen page size, the
//! CSV export of exactly what the filter shows, and the flags for prepaid expirations and ends due within
//! four weeks and for renewals of yearly and quarterly plans (orange: due and not confirmed; red: renewed
//! automatically without a decision). Also the multi-site map, drawn from the same filter. The query
//! string is the one the API's `GET /api/v1/agents` reads ([`AgentQuery`]).

use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::auth::Tech;
use super::layout::{html_response, page, problem_page, query_value, when, when_opt, Notice};
use super::map::{world_map, Marker};
use super::WebState;
use crate::api::owner::Problem;
use crate::listing::{
    renews_at, AgentListItem, AgentQuery, DisplayStatus, Order, RenewalFlag, SortKey, MAX_LIMIT,
};

/// Page sizes offered (any 1..=500 works in the URL).
pub const PAGE_SIZES: [u32; 4] = [25, 50, 100, 500];

/// Reads the list's query from the decoded query-string pairs (`status` may repeat); `ok` (a notice key)
/// is not part of it.
fn parse_query(pairs: &[(String, String)]) -> (AgentQuery, Option<Notice>) {
    let pairs = pairs
        .iter()
        .filter(|(k, _)| k != "ok")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    match AgentQuery::parse(pairs) {
        Ok(q) => (q, None),
        Err(e) => (AgentQuery::default(), Some(Notice::error(e.to_string()))),
    }
}

/// A query string from pairs.
fn query_string(pairs: &[(&'static str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn with(query: &AgentQuery, change: impl FnOnce(&mut AgentQuery)) -> String {
    let mut q = query.clone();
    change(&mut q);
    query_string(&q.pairs(true))
}

pub async fn list(
    State(state): State<WebState>,
    tech: Tech,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let (query, mut notice) = parse_query(&pairs);
    let deleted = pairs.iter().any(|(k, v)| k == "ok" && v == "deleted");
    if notice.is_none() && deleted {
        notice = Some(Notice::ok("Agent deleted."));
    }
    let (items, total) = match state.app.search_agents(&query, &tech.caller.scope).await {
        Ok(found) => found,
        Err(e) => return tech.problem(e, ("/agents", "Reload")),
    };
    let export = query_string(&query.pairs(false));
    let sort_link = |key: SortKey| {
        with(&query, |q| {
            q.order = if q.sort == key && q.order == Order::Asc {
                Order::Desc
            } else {
                Order::Asc
            };
            q.sort = key;
            q.offset = 0;
        })
    };
    let arrow = |key: SortKey| match (query.sort == key, query.order) {
        (true, Order::Asc) => " ▲",
        (true, Order::Desc) => " ▼",
        _ => "",
    };
    let aria_sort = |key: SortKey| match (query.sort == key, query.order) {
        (true, Order::Asc) => "ascending",
        (true, Order::Desc) => "descending",
        _ => "none",
    };
    let first = if total == 0 {
        0
    } else {
        u64::from(query.offset) + 1
    };
    let last = u64::from(query.offset) + items.len() as u64;
    let prev =
        (query.offset > 0).then(|| with(&query, |q| q.offset = q.offset.saturating_sub(q.limit)));
    let next = (last < total).then(|| with(&query, |q| q.offset += q.limit));
    let header = |key: SortKey, label: &str| {
        html! {
            th scope="col" aria-sort=(aria_sort(key)) {
                a href={ "/agents?" (sort_link(key)) } { (label) (arrow(key)) }
            }
        }
    };
    let body = html! {
        h1 { "Agents" }
        form.filters #filters method="get" action="/agents" role="search" {
            label { "Search"
                input #q type="search" name="q" value=(query.q.as_deref().unwrap_or(""))
                    placeholder="name, customer, contract, contact, note"; }
            label { "State"
                select #status name="status" {
                    option value="" selected[query.statuses.is_empty()] { "any" }
                    @for s in DisplayStatus::ALL {
                        option value=(s.as_str()) selected[query.statuses == [s]] { (s.label()) }
                    }
                }
            }
            label { "Online"
                select #online name="online" {
                    option value="" selected[query.online.is_none()] { "any" }
                    option value="true" selected[query.online == Some(true)] { "online" }
                    option value="false" selected[query.online == Some(false)] { "offline" }
                }
            }
            label { "Renewal"
                select #renewal name="renewal" {
                    option value="" selected[query.renewals.is_empty()] { "any" }
                    option value="due" selected[query.renewals == [RenewalFlag::Due]] { "due (orange)" }
                    option value="overdue" selected[query.renewals == [RenewalFlag::Overdue]] { "renewed automatically (red)" }
                    @if query.renewals.len() > 1 {
                        option value="due,overdue" selected { "due or renewed automatically" }
                    }
                }
            }
            label { "Per page"
                select #limit name="limit" {
                    @for n in PAGE_SIZES { option value=(n) selected[query.limit == n] { (n) } }
                    @if !PAGE_SIZES.contains(&query.limit) {
                        option value=(query.limit) selected { (query.limit) }
                    }
                }
            }
            input type="hidden" name="sort" value=(query.sort.as_str());
            input type="hidden" name="order" value=(query.order.as_str());
            button #search type="submit" { "Search" }
            a.button.quiet href="/agents" { "Clear" }
        }
        div.pager {
            span #agent-count { "Agents " (first) "–" (last) " of " (total) }
            @if let Some(p) = &prev { a href={ "/agents?" (p) } rel="prev" { "← Previous" } }
            @if let Some(n) = &next { a href={ "/agents?" (n) } rel="next" { "Next →" } }
            a.button.quiet #export href={ "/agents.csv" @if !export.is_empty() { "?" (export) } } download { "Export CSV" }
            a href={ "/map" @if !export.is_empty() { "?" (export) } } { "Show on the map" }
        }
        div.scroll {
            table #agents {
                thead { tr {
                    (header(SortKey::Name, "Name"))
                    (header(SortKey::Status, "State"))
                    th scope="col" { "Online" }
                    (header(SortKey::CustomerId, "Customer ID"))
                    th scope="col" { "Contract ID" }
                    th scope="col" { "Contact" }
                    (header(SortKey::ExpiresAt, "Expires"))
                    (header(SortKey::LastSeen, "Last seen"))
                    (header(SortKey::ActivatedAt, "Activated"))
                } }
                tbody {
                    @for item in &items { (row(item)) }
                }
            }
        }
        @if items.is_empty() { p.muted #empty { "No agent matches." } }
    };
    html_response(
        StatusCode::OK,
        page("Agents", Some(tech.viewer()), notice.as_ref(), body),
    )
}

fn row(item: &AgentListItem) -> maud::Markup {
    let a = &item.agent;
    let c = &item.site.contact;
    let contact_name = [c.first_name.as_deref(), c.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        tr data-agent=(a.id) {
            td { a href={ "/agents/" (a.id) } { (a.name) } }
            td { (item.display_status.label()) }
            td { @if item.online { span.badge.on { "online" } } @else { span.badge.off { "offline" } } }
            td { (item.site.customer_id.as_deref().unwrap_or("")) }
            td { (item.site.contract_id.as_deref().unwrap_or("")) }
            td { (contact_name) @if let Some(e) = &c.email { br; span.muted { (e) } } }
            td {
                (when_opt(a.subscription.expires_at.or(a.subscription.deactivates_at)))
                @if let Some(due) = item.due_at {
                    " " span.badge.warn title={ "due " (when(due)) } { "due within 4 weeks" }
                }
                @if let Some(flag) = item.renewal {
                    " " (super::renewal::badge(flag, renews_at(a)))
                }
            }
            td { (when_opt(a.last_seen)) }
            td { (when(a.activated_at)) }
        }
    }
}

/// `GET /agents.csv`: the CSV of every agent the filter shows (all pages), as the API's export.
pub async fn csv(
    State(state): State<WebState>,
    tech: Tech,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let (mut query, problem) = parse_query(&pairs);
    if let Some(n) = problem {
        return problem_page(
            Problem {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request".into(),
                message: n.text,
            },
            Some(tech.viewer()),
            ("/agents", "Back to the agents"),
        );
    }
    query.offset = 0;
    match crate::export::export_agents(&state.app, &query, &tech.caller.scope).await {
        Ok(bytes) => {
            let name = format!(
                "attachment; filename=\"outpost-agents-{}.csv\"",
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
        Err(e) => tech.problem(e, ("/agents", "Back to the agents")),
    }
}

/// `GET /map`: every agent the filter shows (up to [`MAX_LIMIT`]) placed by its pin or its GeoIP
/// location, coloured by online state; agents without a place are listed under the map.
pub async fn map(
    State(state): State<WebState>,
    tech: Tech,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let (mut query, notice) = parse_query(&pairs);
    query.limit = MAX_LIMIT;
    query.offset = 0;
    let (items, total) = match state.app.search_agents(&query, &tech.caller.scope).await {
        Ok(found) => found,
        Err(e) => return tech.problem(e, ("/agents", "Back")),
    };
    let mut places = Vec::new();
    let mut unplaced = Vec::new();
    for item in &items {
        match super::site_form::place(&state.app, item).await {
            Some(p) => places.push((item, p)),
            None => unplaced.push(item),
        }
    }
    let hrefs: Vec<String> = places
        .iter()
        .map(|(item, _)| format!("/agents/{}", item.agent.id))
        .collect();
    let markers: Vec<Marker<'_>> = places
        .iter()
        .zip(&hrefs)
        .map(|((item, p), href)| Marker {
            label: &item.agent.name,
            href,
            latitude: p.latitude,
            longitude: p.longitude,
            online: item.online,
        })
        .collect();
    let online = items.iter().filter(|i| i.online).count();
    let body = html! {
        h1 { "Map" }
        p #map-summary { (markers.len()) " of " (total) " sites placed; " (online) " online, " (items.len() - online) " offline." }
        (world_map(&markers))
        @if !unplaced.is_empty() {
            h2 { "Not on the map" }
            p.muted { "No pin and no GeoIP location yet." }
            ul { @for item in &unplaced { li { a href={ "/agents/" (item.agent.id) } { (item.agent.name) } } } }
        }
    };
    html_response(
        StatusCode::OK,
        page("Map", Some(tech.viewer()), notice.as_ref(), body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filter() {
        let pairs =
            |raw: &str| -> Vec<(String, String)> { serde_urlencoded::from_str(raw).unwrap() };
        let (q, notice) = parse_query(&pairs(
            "q=acme&online=true&sort=name&order=desc&limit=25&ok=deleted",
        ));
        assert!(notice.is_none());
        let next = with(&q, |q| q.offset += q.limit);
        let (back, _) = parse_query(&pairs(&next));
        assert_eq!(back.q.as_deref(), Some("acme"));
        assert_eq!((back.online, back.limit, back.offset), (Some(true), 25, 25));
        let (_, notice) = parse_query(&pairs("sort=colour"));
        assert!(notice.unwrap().text.starts_with("sort"));
    }
}
