//! The groups pages: `/groups` lists the groups the caller sees as the issue asks (name, reference
//! note, active or not, active agents, agents due for renewal within four weeks, users), sub-groups
//! indented under their parent; `/groups/{id}` shows one group. Company admins also get the forms:
//! create (name, note, parent), edit, delete (the server refuses a group that is not empty), and set
//! the group's users (the company's group admins and supervisors). The agent page's "Group" section
//! ([`agent_section`]) moves an agent to another group. Every form calls the `App` method the groups
//! API calls, so the scope rules are the server's.

use std::collections::{HashMap, HashSet};

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{html_response, page, problem_page, Notice};
use super::team::{address, parse_id, problem_of, Fields};
use super::WebState;
use crate::access::{Action, Role};
use crate::api::auth::PeerAddr;
use crate::app::groups::{GroupChange, GroupInfo, NewGroup};
use crate::app::{App, OpError};
use crate::listing::DUE_WINDOW_DAYS;
use crate::store::agents::AgentRow;

/// The groups in tree order: each top-level group (one whose parent the caller does not see) followed
/// by its sub-groups, depth first, each with its depth; siblings keep the order given (by name).
pub fn tree(groups: &[GroupInfo]) -> Vec<(usize, &GroupInfo)> {
    let ids: HashSet<i64> = groups.iter().map(|g| g.row.id).collect();
    let mut children: HashMap<i64, Vec<&GroupInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for g in groups {
        match g.row.parent_id.filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(g),
            None => roots.push(g),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, &GroupInfo)> = roots.into_iter().rev().map(|g| (0, g)).collect();
    while let Some((depth, g)) = stack.pop() {
        if !seen.insert(g.row.id) {
            continue;
        }
        out.push((depth, g));
        if let Some(kids) = children.get(&g.row.id) {
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
    out
}

/// The group `id` and every group under it (as far as `groups` holds them).
fn descendants(groups: &[GroupInfo], id: i64) -> HashSet<i64> {
    let mut out = HashSet::from([id]);
    loop {
        let before = out.len();
        for g in groups {
            if g.row.parent_id.is_some_and(|p| out.contains(&p)) {
                out.insert(g.row.id);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// The prefix of a sub-group's name in a select (options cannot be styled).
pub fn indent(depth: usize) -> String {
    if depth == 0 {
        String::new()
    } else {
        format!("{}└ ", "\u{a0}\u{a0}".repeat(depth))
    }
}

/// The notices a redirect back to a groups page can ask for (`?ok=<key>`).
pub fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "Group created.",
        "saved" => "Group saved.",
        "users" => "The group's users are set; the change applies at once.",
        "deleted" => "Group deleted.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

fn parent_select(groups: &[GroupInfo], exclude: &HashSet<i64>, current: Option<i64>) -> Markup {
    html! {
        select #parent name="parent" {
            option value="" selected[current.is_none()] { "— none (top level) —" }
            @for (depth, g) in tree(groups) {
                @if !exclude.contains(&g.row.id) {
                    option value=(g.row.id) selected[current == Some(g.row.id)] { (indent(depth)) (g.row.name) }
                }
            }
        }
    }
}

/// The groups the caller sees, or the page saying why not.
async fn groups_of(state: &WebState, tech: &Tech) -> Result<Vec<GroupInfo>, Response> {
    state.app.groups_in_scope(&tech.caller).await.map_err(|e| {
        problem_page(
            problem_of(e),
            Some(tech.viewer()),
            ("/agents", "Back to the agents"),
        )
    })
}

/// The groups list, with an optional notice (a refused creation re-shows the page with it).
async fn list_page(
    state: &WebState,
    tech: &Tech,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let groups = match groups_of(state, tech).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let manage = tech.may(Action::GroupsManage);
    let body = html! {
        h1 { "Groups" }
        @if groups.is_empty() { p.muted #empty { "No groups yet." } }
        @else {
            div.scroll { table #groups {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Reference note" } th scope="col" { "Active" }
                    th scope="col" { "Active agents" }
                    th scope="col" title={ "renewal or expiry within " (DUE_WINDOW_DAYS) " days" } { "Due for renewal (4 weeks)" }
                    th scope="col" { "Users" }
                } }
                tbody { @for (depth, g) in tree(&groups) { tr data-group=(g.row.name) data-depth=(depth) {
                    td style={ "padding-left:" (0.5 + 1.5 * depth as f32) "rem" } {
                        @if depth > 0 { span.muted aria-hidden="true" { "└ " } }
                        a href={ "/groups/" (g.row.id) } { (g.row.name) }
                    }
                    td { (g.row.note) }
                    td { @if g.row.active_agents > 0 { span.badge.on { "active" } } @else { span.badge.off { "inactive" } } }
                    td.num.active-agents { (g.row.active_agents) }
                    td.num.due { (g.row.due_agents) @if g.row.due_agents > 0 { " " span.badge.warn { "due" } } }
                    td.users { (g.users.join(", ")) }
                } } }
            } }
        }
        @if manage {
            h2 { "New group" }
            form #new-group method="post" action="/groups/new" {
                input type="hidden" name="csrf" value=(tech.csrf());
                div.grid {
                    div { label for="name" { "Name" } input #name type="text" name="name" maxlength="100" required; }
                    div { label for="parent" { "Under" } (parent_select(&groups, &HashSet::new(), None)) }
                    div.wide { label for="note" { "Reference note" } textarea #note name="note" maxlength="1000" {} }
                }
                div.actions { button #create-group type="submit" { "Create" } }
            }
        } @else {
            p.muted #read-only { "Your role (" (tech.caller.role.label()) ") may look at groups but not change them." }
        }
    };
    html_response(
        status,
        page("Groups", Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /groups`.
pub async fn list(State(state): State<WebState>, tech: Tech, Query(q): Query<OkQuery>) -> Response {
    let notice = q.ok.as_deref().and_then(done_notice).map(Notice::ok);
    list_page(&state, &tech, notice, StatusCode::OK).await
}

/// One group's page, with an optional notice.
async fn group_page(
    state: &WebState,
    tech: &Tech,
    id: i64,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let groups = match groups_of(state, tech).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let Some(group) = groups.iter().find(|g| g.row.id == id) else {
        return problem_page(
            problem_of(OpError::UnknownGroup(id)),
            Some(tech.viewer()),
            ("/groups", "Back to the groups"),
        );
    };
    let manage = tech.may(Action::GroupsManage);
    let members = if manage {
        match state.app.members(&tech.caller).await {
            Ok(m) => m,
            Err(e) => {
                return problem_page(
                    problem_of(e),
                    Some(tech.viewer()),
                    ("/groups", "Back to the groups"),
                )
            }
        }
    } else {
        Vec::new()
    };
    let name_of = |g: i64| {
        groups
            .iter()
            .find(|x| x.row.id == g)
            .map(|x| x.row.name.as_str())
    };
    let subs: Vec<&GroupInfo> = groups
        .iter()
        .filter(|g| g.row.parent_id == Some(id))
        .collect();
    let csrf = tech.csrf();
    let base = format!("/groups/{id}");
    let r = &group.row;
    let body = html! {
        p { a href="/groups" { "← Groups" } }
        h1 { (r.name) }
        dl.facts #facts {
            dt { "Reference note" } dd { (r.note) }
            dt { "Under" } dd { (r.parent_id.and_then(name_of).unwrap_or("—")) }
            dt { "Active" } dd { @if r.active_agents > 0 { "yes" } @else { "no" } }
            dt { "Active agents" } dd { (r.active_agents) }
            dt { "Due for renewal within 4 weeks" } dd { (r.due_agents) }
            dt { "Users" } dd #group-users { @if group.users.is_empty() { "—" } @else { (group.users.join(", ")) } }
            dt { "Sub-groups" } dd {
                @if subs.is_empty() { "—" }
                @for (i, s) in subs.iter().enumerate() {
                    @if i > 0 { ", " } a href={ "/groups/" (s.row.id) } { (s.row.name) }
                }
            }
        }
        @if manage {
            h2 { "Edit" }
            form #edit-group method="post" action={ (base) "/edit" } {
                input type="hidden" name="csrf" value=(csrf);
                div.grid {
                    div { label for="name" { "Name" } input #name type="text" name="name" value=(r.name) maxlength="100" required; }
                    div { label for="parent" { "Under" } (parent_select(&groups, &descendants(&groups, id), r.parent_id)) }
                    div.wide { label for="note" { "Reference note" } textarea #note name="note" maxlength="1000" { (r.note) } }
                }
                div.actions { button #save-group type="submit" { "Save" } }
            }
            h2 { "Users" }
            p.muted { "Group admins and supervisors see the agents of their groups and sub-groups; company \
                       admins see every group. Changes apply at once." }
            form #group-users-form method="post" action={ (base) "/users" } {
                input type="hidden" name="csrf" value=(csrf);
                @let candidates: Vec<_> = members.iter().filter(|m| m.user.role.uses_groups()).collect();
                @if candidates.is_empty() { p.muted { "The company has no group admins or supervisors yet; invite them on the " a href="/team" { "team page" } "." } }
                @for m in &candidates {
                    div { label {
                        input type="checkbox" name="users" value=(m.user.id) checked[m.groups.contains(&id)]
                            style="width:auto;min-height:0";
                        " " (m.user.name) " (" (m.user.username) ", " (m.user.role.label()) ")"
                    } }
                }
                div.actions { button #set-users type="submit" { "Set the users" } }
            }
            h2 { "Delete" }
            p.muted { "Only an empty group can be deleted: move its agents and sub-groups elsewhere first." }
            form #delete-group method="post" action={ (base) "/delete" } {
                input type="hidden" name="csrf" value=(csrf);
                div.actions { button.danger #delete type="submit" { "Delete the group" } }
            }
        } @else {
            p.muted #read-only { "Your role (" (tech.caller.role.label()) ") may look at groups but not change them." }
        }
    };
    html_response(
        status,
        page(&r.name, Some(tech.viewer()), notice.as_ref(), body),
    )
}

/// `GET /groups/{id}`.
pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
    Query(q): Query<OkQuery>,
) -> Response {
    let id = match parse_id(&id, "group", "groups") {
        Ok(id) => id,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/groups", "Back to the groups"),
            )
        }
    };
    let notice = q.ok.as_deref().and_then(done_notice).map(Notice::ok);
    group_page(&state, &tech, id, notice, StatusCode::OK).await
}

/// An optional group id from a select (empty: none).
fn optional_group(raw: &str) -> Result<Option<i64>, OpError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_id(raw, "group", "groups").map(Some)
    }
}

/// `POST /groups/new`: creates a group; a refusal re-shows the list with the server's message.
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
    let result = match optional_group(f.get("parent")) {
        Ok(parent) => {
            let new = NewGroup {
                name: f.get("name"),
                note: Some(f.get("note")),
                parent,
            };
            state
                .app
                .create_group(&tech.caller, &new, address(peer).as_deref())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(info) => redirect(&format!("/groups/{}?ok=created", info.row.id), None),
        Err(e) => {
            let problem = problem_of(e);
            list_page(
                &state,
                &tech,
                Some(Notice::error(problem.message)),
                problem.status,
            )
            .await
        }
    }
}

/// What a group form does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Edit,
    Users,
    Delete,
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
    let id = match parse_id(&id, "group", "groups") {
        Ok(id) => id,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/groups", "Back to the groups"),
            )
        }
    };
    let app = &state.app;
    let address = address(peer);
    let address = address.as_deref();
    let result = match what {
        Change::Edit => match optional_group(f.get("parent")) {
            Ok(parent) => {
                let change = GroupChange {
                    name: Some(f.get("name")),
                    note: Some(f.get("note")),
                    parent: Some(parent),
                };
                app.change_group(&tech.caller, id, &change, address)
                    .await
                    .map(|_| "saved")
            }
            Err(e) => Err(e),
        },
        Change::Users => {
            let users: Result<Vec<i64>, OpError> = f
                .all("users")
                .into_iter()
                .map(|u| parse_id(u, "user", "group"))
                .collect();
            match users {
                Ok(users) => app
                    .set_group_users(&tech.caller, id, &users, address)
                    .await
                    .map(|_| "users"),
                Err(e) => Err(e),
            }
        }
        Change::Delete => match app.delete_group(&tech.caller, id, address).await {
            Ok(()) => return redirect("/groups?ok=deleted", None),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(key) => redirect(&format!("/groups/{id}?ok={key}"), None),
        Err(e) => {
            let problem = problem_of(e);
            group_page(
                &state,
                &tech,
                id,
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
            Path(id): Path<String>,
            form: Result<Form<Vec<(String, String)>>, FormRejection>,
        ) -> Response {
            change(state, tech, peer, headers, id, form, $what).await
        }
    };
}

change_route!(edit, Change::Edit);
change_route!(set_users, Change::Users);
change_route!(delete, Change::Delete);

/// The agent page's "Group" section: the agent's group and, for those who may move agents, a select
/// of the groups the caller sees in the agent's company (plus "no group" for company admins).
pub async fn agent_section(app: &App, tech: &Tech, row: &AgentRow) -> Markup {
    let groups: Vec<GroupInfo> = app
        .groups_in_scope(&tech.caller)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|g| Some(g.row.company_id) == row.company_id)
        .collect();
    let current = row
        .group_id
        .map(|g| match groups.iter().find(|x| x.row.id == g) {
            Some(x) => x.row.name.clone(),
            None => format!("group {g}"),
        });
    let admin = tech.caller.role == Role::CompanyAdmin;
    html! {
        h2 { "Group" }
        p #agent-group { (current.as_deref().unwrap_or("No group")) }
        @if tech.may(Action::AgentsMove) && (!groups.is_empty() || admin) {
            form #move-agent method="post" action={ "/agents/" (row.id) "/group" } {
                input type="hidden" name="csrf" value=(tech.csrf());
                div.grid { div {
                    label for="group" { "Move to" }
                    select #group name="group" {
                        @if admin { option value="" selected[row.group_id.is_none()] { "— no group —" } }
                        @for (depth, g) in tree(&groups) {
                            option value=(g.row.id) selected[row.group_id == Some(g.row.id)] { (indent(depth)) (g.row.name) }
                        }
                    }
                } }
                div.actions { button #move type="submit" { "Move" } }
            }
        }
    }
}

/// `POST /agents/{id}/group`: moves the agent (the route checked the agent is in the caller's scope).
pub async fn move_agent(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let f = Fields::of(form);
    if let Some(refusal) = tech.refuse_post(&headers, f.csrf()) {
        return refusal;
    }
    let agent = match App::parse_agent_id(&id) {
        Ok(a) => a,
        Err(e) => {
            return problem_page(
                problem_of(e),
                Some(tech.viewer()),
                ("/agents", "Back to the agents"),
            )
        }
    };
    let result = match optional_group(f.get("group")) {
        Ok(group) => {
            state
                .app
                .move_agent_to_group(&tech.caller, &agent, group)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => redirect(&format!("/agents/{agent}?ok=moved"), None),
        Err(e) => {
            let problem = problem_of(e);
            super::agent::render(
                &state,
                &tech,
                &agent,
                Some(Notice::error(problem.message)),
                None,
                problem.status,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::groups::GroupRow;

    fn g(id: i64, parent: Option<i64>, name: &str) -> GroupInfo {
        GroupInfo {
            row: GroupRow {
                id,
                company_id: 1,
                parent_id: parent,
                name: name.into(),
                note: String::new(),
                active_agents: 0,
                due_agents: 0,
            },
            users: vec![],
        }
    }

    fn names(groups: &[GroupInfo]) -> Vec<(usize, &str)> {
        tree(groups)
            .into_iter()
            .map(|(d, g)| (d, g.row.name.as_str()))
            .collect()
    }

    #[test]
    fn sub_groups_follow_their_parent_indented() {
        // By name, as the store lists them.
        let groups = [
            g(3, Some(1), "East"),
            g(1, None, "North"),
            g(4, Some(3), "Harbour"),
            g(2, None, "South"),
            g(5, Some(1), "West"),
        ];
        assert_eq!(
            names(&groups),
            [
                (0, "North"),
                (1, "East"),
                (2, "Harbour"),
                (1, "West"),
                (0, "South")
            ]
        );
    }

    #[test]
    fn a_group_whose_parent_is_not_seen_is_top_level_and_cycles_end() {
        let groups = [g(7, Some(1), "Mine"), g(8, Some(7), "Sub")];
        assert_eq!(names(&groups), [(0, "Mine"), (1, "Sub")]);
        // A (corrupt) cycle lists nothing twice and does not loop.
        let cycle = [g(1, Some(2), "A"), g(2, Some(1), "B"), g(3, None, "C")];
        assert_eq!(names(&cycle), [(0, "C")]);
    }

    #[test]
    fn a_group_cannot_go_under_itself_or_its_sub_groups() {
        let groups = [
            g(1, None, "North"),
            g(3, Some(1), "East"),
            g(4, Some(3), "Harbour"),
            g(2, None, "South"),
        ];
        assert_eq!(descendants(&groups, 1), HashSet::from([1, 3, 4]));
        assert_eq!(descendants(&groups, 2), HashSet::from([2]));
        let select = parent_select(&groups, &descendants(&groups, 3), Some(1)).into_string();
        assert!(select.contains("value=\"1\" selected"), "{select}");
        assert!(!select.contains("value=\"3\""), "{select}");
        assert!(!select.contains("value=\"4\""), "{select}");
        assert!(select.contains("value=\"2\""), "{select}");
    }

    #[test]
    fn optional_groups_read_empty_as_none() {
        assert_eq!(optional_group("").unwrap(), None);
        assert_eq!(optional_group("5").unwrap(), Some(5));
        assert!(optional_group("five").is_err());
        assert_eq!(indent(0), "");
        assert!(indent(2).ends_with("└ "));
    }
}
