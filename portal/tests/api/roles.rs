//! THE roles walk: every staff route of the API, called by a company admin, a group admin, a supervisor,
//! a support engineer with a company-wide grant and a read-only company-admin token, answers 403
//! `forbidden` exactly when `access::allowed` (narrowed by the read-only rule) says no; every staff route
//! wants a token; and `web::PAGES` lists every staff page the web router serves.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use outpost_portal::access::{allowed, Action, Role};
use outpost_portal::api::{access_table, Access, ApiOptions};
use serde_json::json;

use crate::harness::{id_of, request, Auth, Harness, Options, Req};
use crate::people::{group, token_for};

const PASSWORD: &str = "correct horse battery staple";
const DEVICE: &str = "02:00:00:00:00:aa";

/// Who walks the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    CompanyAdmin,
    GroupAdmin,
    Supervisor,
    Support,
    ReadOnlyAdmin,
}

impl Who {
    const ALL: [Who; 5] = [
        Who::CompanyAdmin,
        Who::GroupAdmin,
        Who::Supervisor,
        Who::Support,
        Who::ReadOnlyAdmin,
    ];

    /// What the table and the read-only rule say, computed here independently of `Caller::may`.
    fn may(self, action: Action) -> bool {
        match self {
            Who::CompanyAdmin => allowed(Role::CompanyAdmin, action),
            Who::GroupAdmin => allowed(Role::GroupAdmin, action),
            Who::Supervisor => allowed(Role::Supervisor, action),
            Who::Support => allowed(Role::Support, action),
            Who::ReadOnlyAdmin => allowed(Role::CompanyAdmin, action) && action.reads_only(),
        }
    }
}

/// One company with something behind every kind of `{id}`, and a token for each walker.
struct World {
    h: Harness,
    agent: String,
    group: i64,
    victim_user: i64,
    victim_token: i64,
    grant: i64,
    release: i64,
    rollout: i64,
    token: String,
}

async fn world(who: Who) -> World {
    let h = Harness::with(Options {
        dev_clock: true,
        ..Options::default()
    })
    .await;
    let north = group(&h, "North", None).await;
    h.add_user("ga@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    h.add_user("sup@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let support = h
        .add_user("sam@operator.example", Role::Support, None, PASSWORD)
        .await;
    let victim_user = h
        .add_user("vic@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let victim = token_for(&h, "vic@example.com", false).await;
    let victim_token = h.op(Method::GET, "/api/v1/tokens", None).await.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == "vic")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(!victim.is_empty());
    let grant = h
        .op(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({ "user": support, "scope": "company" })),
        )
        .await;
    assert_eq!(grant.status, StatusCode::CREATED, "{:?}", grant.body);
    let agent = id_of(&h.activate("shop").await);
    let moved = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/group"),
            Some(json!({ "group": north })),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let release = crate::releases::add_release(&h, "1.0.0").await;
    // The agent can take the release (aarch64, under the launcher, older): a rollout to it.
    let outpost_cloud_link::protocol::AgentMessage::Hello(mut hello) =
        crate::harness::hello("shop")
    else {
        unreachable!()
    };
    hello.target = Some("aarch64-unknown-linux-musl".into());
    hello.updatable = true;
    h.send(
        &agent,
        0,
        outpost_cloud_link::protocol::AgentMessage::Hello(hello),
    )
    .await;
    let rollout = h
        .op(
            Method::POST,
            "/api/v1/rollouts",
            Some(json!({ "release_id": release, "agent_id": agent })),
        )
        .await;
    assert_eq!(rollout.status, StatusCode::CREATED, "{:?}", rollout.body);
    let token = match who {
        Who::CompanyAdmin => h.token.clone(),
        Who::GroupAdmin => token_for(&h, "ga@example.com", false).await,
        Who::Supervisor => token_for(&h, "sup@example.com", false).await,
        Who::Support => token_for(&h, "sam@operator.example", false).await,
        Who::ReadOnlyAdmin => outpost_portal::app::users::bootstrap_token(
            h.app.store(),
            None,
            "read-only",
            true,
            h.app.now(),
        )
        .await
        .unwrap(),
    };
    World {
        agent,
        group: north,
        victim_user,
        victim_token,
        grant: grant.body["id"].as_i64().unwrap(),
        release,
        rollout: rollout.body["id"].as_i64().unwrap(),
        token,
        h,
    }
}

/// The route's path with its parameters filled from the world.
fn concrete(w: &World, path: &str) -> String {
    let id = if path.starts_with("/agents/{id}") {
        w.agent.clone()
    } else if path.starts_with("/users/{id}") {
        w.victim_user.to_string()
    } else if path.starts_with("/groups/{id}") {
        w.group.to_string()
    } else if path.starts_with("/tokens/{id}") {
        w.victim_token.to_string()
    } else if path.starts_with("/support-grants/{id}") {
        w.grant.to_string()
    } else if path.starts_with("/releases/{id}") || path.starts_with("/agent/releases/{id}") {
        w.release.to_string()
    } else if path.starts_with("/rollouts/{id}") {
        w.rollout.to_string()
    } else {
        assert!(
            !path.contains("{id}"),
            "the roles walk does not know what {{id}} is in {path}; teach it"
        );
        String::new()
    };
    let filled = path
        .replace("{id}", &id)
        .replace("{device}", DEVICE)
        .replace("{cid}", "1");
    assert!(!filled.contains('{'), "the roles walk cannot fill {path}");
    // Logs and health wait for the (fake) agent's answer: not here.
    let query = if filled.ends_with("/logs") || filled.ends_with("/health") {
        "?wait_ms=0"
    } else {
        ""
    };
    format!("/api/v1{filled}{query}")
}

/// The staff routes, deletions last (the agent's own deletion very last), so nothing a walker may
/// delete is gone before the routes after it.
fn staff_routes() -> Vec<(&'static str, &'static str, Action)> {
    let mut routes: Vec<_> = access_table(ApiOptions { dev_clock: true })
        .into_iter()
        .filter_map(|(m, p, a)| match a {
            Access::Staff(action) => Some((m, p, action)),
            _ => None,
        })
        .collect();
    routes.sort_by_key(|(m, p, _)| (*m == "delete", *m == "delete" && *p == "/agents/{id}"));
    routes
}

#[tokio::test]
async fn every_staff_route_answers_403_exactly_when_the_table_says_no() {
    let routes = staff_routes();
    assert!(routes.len() >= 40, "{}", routes.len());
    for action in [
        Action::UsersManage,
        Action::GroupsManage,
        Action::GrantsManage,
        Action::AgentsMove,
        Action::SelfEdit,
    ] {
        assert!(
            routes.iter().any(|(_, _, a)| *a == action),
            "no route does {action:?}"
        );
    }
    let mut failures = Vec::new();
    for who in Who::ALL {
        let w = world(who).await;
        for (method, path, action) in &routes {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (m != Method::GET).then(|| json!({}));
            let url = concrete(&w, path);
            // Read as text: some routes answer CSV.
            let resp = request(
                &w.h,
                m,
                &url,
                Req {
                    json: body,
                    headers: vec![("authorization", format!("Bearer {}", w.token))],
                    ..Req::default()
                },
            )
            .await;
            let error = serde_json::from_str::<serde_json::Value>(&resp.text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let forbidden = resp.status == StatusCode::FORBIDDEN;
            let expected = !who.may(*action);
            if forbidden != expected || (forbidden && error != "forbidden") {
                failures.push(format!(
                    "{who:?} {method} {path} ({action:?}): {} {}",
                    resp.status, resp.text
                ));
            }
            assert_ne!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{who:?} {method} {path}"
            );
            assert_ne!(
                resp.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{who:?} {method} {path}: {}",
                resp.text
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_staff_route_wants_a_token() {
    let w = world(Who::CompanyAdmin).await;
    for (method, path, _) in staff_routes() {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let url = concrete(&w, path);
        let body = (m != Method::GET).then(|| json!({}));
        for auth in [Auth::None, Auth::Bearer("not-a-token")] {
            let resp = w.h.call(m.clone(), &url, body.clone(), auth).await;
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(resp.error(), "unauthorized", "{method} {path}");
        }
    }
}

/// Every `.route("PATH"` of the web module's sources.
fn web_route_paths() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let rest = text[at + ".route(".len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                if let Some(end) = literal.find('"') {
                    out.insert(literal[..end].to_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn web_pages_lists_every_staff_page_of_the_web_router() {
    let w = world(Who::CompanyAdmin).await;
    let fill = |path: &str| {
        let mut p = path.replace("{id}", &w.agent).replace("{device}", DEVICE);
        while let (Some(a), Some(b)) = (p.find('{'), p.find('}')) {
            p.replace_range(a..=b, "1");
        }
        p
    };
    let pages: BTreeSet<(String, String)> = outpost_portal::web::PAGES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    // A staff page sends a browser without a session to sign in, and back.
    let is_staff = |status: StatusCode, location: &str| {
        status == StatusCode::SEE_OTHER && location.starts_with("/sign-in?next=")
    };
    let paths = web_route_paths();
    assert!(paths.contains("/agents/{id}"), "{paths:?}");
    let mut found = BTreeSet::new();
    for path in &paths {
        for method in [Method::GET, Method::POST] {
            let page = request(&w.h, method.clone(), &fill(path), Req::default()).await;
            if is_staff(page.status, page.location()) {
                found.insert((method.as_str().to_lowercase(), path.clone()));
            }
        }
    }
    assert!(
        found.contains(&("get".to_owned(), "/agents".to_owned()))
            && found.contains(&(
                "post".to_owned(),
                "/agents/{id}/devices/{device}/block".to_owned()
            )),
        "the probe finds no staff pages: {found:?}"
    );
    let missing: Vec<_> = found.difference(&pages).collect();
    assert!(
        missing.is_empty(),
        "staff pages missing from web::PAGES: {missing:?}"
    );
    // And every listed page is a real staff page.
    for (method, path) in &pages {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let page = request(&w.h, m, &fill(path), Req::default()).await;
        assert!(
            is_staff(page.status, page.location()),
            "{method} {path} is in web::PAGES but answers {} {:?}",
            page.status,
            page.location()
        );
    }
}

/// The walk trusts each route's declared action, so every route's access is pinned here (as the issue and
/// the role table name them): a route declaring a weaker action, or a new route nobody pinned, fails.
#[test]
fn every_route_declares_the_pinned_access() {
    use Action as A;
    let expected = [
        ("get", "/openapi.json", Access::Public),
        ("post", "/activate", Access::Public),
        ("get", "/agent/status", Access::Agent),
        ("get", "/agent/releases/{id}/manifest", Access::Agent),
        ("get", "/agent/releases/{id}/binary", Access::Agent),
        ("get", "/agents", Access::Staff(A::AgentsRead)),
        ("get", "/agents.csv", Access::Staff(A::AgentsRead)),
        ("get", "/agents/{id}", Access::Staff(A::AgentsRead)),
        ("patch", "/agents/{id}", Access::Staff(A::AgentsEdit)),
        ("delete", "/agents/{id}", Access::Staff(A::AgentsLifecycle)),
        (
            "post",
            "/agents/{id}/cleanup",
            Access::Staff(A::AgentsLifecycle),
        ),
        (
            "post",
            "/agents/{id}/deactivate",
            Access::Staff(A::AgentsLifecycle),
        ),
        (
            "post",
            "/agents/{id}/reactivate",
            Access::Staff(A::AgentsLifecycle),
        ),
        (
            "post",
            "/agents/{id}/extend",
            Access::Staff(A::AgentsLifecycle),
        ),
        (
            "post",
            "/agents/{id}/renewal",
            Access::Staff(A::RenewalsDecide),
        ),
        ("get", "/agents/{id}/history", Access::Staff(A::AgentsRead)),
        ("get", "/agents/{id}/data", Access::Staff(A::AgentsRead)),
        ("get", "/agents/{id}/site", Access::Staff(A::AgentsRead)),
        ("put", "/agents/{id}/site", Access::Staff(A::AgentsEdit)),
        ("get", "/agents/{id}/devices", Access::Staff(A::AgentsRead)),
        ("get", "/agents/{id}/events", Access::Staff(A::AgentsRead)),
        (
            "get",
            "/agents/{id}/devices/{device}",
            Access::Staff(A::AgentsRead),
        ),
        (
            "post",
            "/agents/{id}/devices/{device}/block",
            Access::Staff(A::AgentsControl),
        ),
        (
            "post",
            "/agents/{id}/devices/{device}/unblock",
            Access::Staff(A::AgentsControl),
        ),
        (
            "post",
            "/agents/{id}/devices/{device}/power",
            Access::Staff(A::AgentsControl),
        ),
        (
            "put",
            "/agents/{id}/devices/{device}/power-outlet",
            Access::Staff(A::AgentsEdit),
        ),
        (
            "get",
            "/agents/{id}/devices/{device}/power-outlet",
            Access::Staff(A::AgentsRead),
        ),
        (
            "delete",
            "/agents/{id}/devices/{device}/power-outlet",
            Access::Staff(A::AgentsEdit),
        ),
        (
            "post",
            "/agents/{id}/commands",
            Access::Staff(A::AgentsControl),
        ),
        ("get", "/agents/{id}/commands", Access::Staff(A::AgentsRead)),
        (
            "get",
            "/agents/{id}/commands/{cid}",
            Access::Staff(A::AgentsRead),
        ),
        ("put", "/agents/{id}/owner", Access::Staff(A::AgentsEdit)),
        ("get", "/agents/{id}/owner", Access::Staff(A::AgentsRead)),
        (
            "put",
            "/agents/{id}/devices/{device}/owner-flags",
            Access::Staff(A::AgentsEdit),
        ),
        (
            "get",
            "/agents/{id}/devices/{device}/owner-flags",
            Access::Staff(A::AgentsRead),
        ),
        ("get", "/owner/devices", Access::Owner),
        (
            "post",
            "/owner/agents/{id}/devices/{device}/block",
            Access::Owner,
        ),
        (
            "post",
            "/owner/agents/{id}/devices/{device}/unblock",
            Access::Owner,
        ),
        (
            "post",
            "/owner/agents/{id}/devices/{device}/power",
            Access::Owner,
        ),
        ("get", "/history", Access::Staff(A::HistoryRead)),
        ("get", "/branding", Access::Staff(A::SelfRead)),
        ("put", "/branding", Access::Staff(A::BrandingManage)),
        ("put", "/branding/logo", Access::Staff(A::BrandingManage)),
        ("delete", "/branding/logo", Access::Staff(A::BrandingManage)),
        ("get", "/users", Access::Staff(A::UsersRead)),
        ("post", "/users", Access::Staff(A::UsersManage)),
        ("get", "/users/me", Access::Staff(A::SelfRead)),
        ("patch", "/users/{id}", Access::Staff(A::UsersManage)),
        ("delete", "/users/{id}", Access::Staff(A::UsersManage)),
        (
            "post",
            "/users/{id}/sign-out",
            Access::Staff(A::UsersManage),
        ),
        ("get", "/tokens", Access::Staff(A::SelfRead)),
        ("post", "/tokens", Access::Staff(A::SelfEdit)),
        ("delete", "/tokens/{id}", Access::Staff(A::SelfEdit)),
        ("get", "/groups", Access::Staff(A::GroupsRead)),
        ("post", "/groups", Access::Staff(A::GroupsManage)),
        ("patch", "/groups/{id}", Access::Staff(A::GroupsManage)),
        ("delete", "/groups/{id}", Access::Staff(A::GroupsManage)),
        ("put", "/groups/{id}/users", Access::Staff(A::GroupsManage)),
        ("put", "/agents/{id}/group", Access::Staff(A::AgentsMove)),
        ("get", "/support-grants", Access::Staff(A::GrantsManage)),
        ("post", "/support-grants", Access::Staff(A::GrantsManage)),
        (
            "delete",
            "/support-grants/{id}",
            Access::Staff(A::GrantsManage),
        ),
        ("post", "/activation-codes", Access::Staff(A::CodesCreate)),
        ("put", "/dev/clock", Access::Staff(A::UsersManage)),
        // Releases are install-wide (the operator's): there is no operator role, so company admins.
        ("get", "/releases", Access::Staff(A::ReleasesRead)),
        ("delete", "/releases/{id}", Access::Staff(A::ReleasesManage)),
        // Updates: read by whoever reads the agents; rollouts started and steered by company admins.
        ("get", "/rollouts", Access::Staff(A::UpdatesRead)),
        ("post", "/rollouts", Access::Staff(A::UpdatesManage)),
        ("get", "/rollouts/{id}", Access::Staff(A::UpdatesRead)),
        (
            "post",
            "/rollouts/{id}/pause",
            Access::Staff(A::UpdatesManage),
        ),
        (
            "post",
            "/rollouts/{id}/resume",
            Access::Staff(A::UpdatesManage),
        ),
        (
            "post",
            "/rollouts/{id}/cancel",
            Access::Staff(A::UpdatesManage),
        ),
        ("get", "/agents/{id}/updates", Access::Staff(A::UpdatesRead)),
        // Settings and diagnostics: read like the agent; changed and restarted like the control actions.
        (
            "get",
            "/agent-settings/schema",
            Access::Staff(A::AgentsRead),
        ),
        ("get", "/agents/{id}/settings", Access::Staff(A::AgentsRead)),
        (
            "put",
            "/agents/{id}/settings",
            Access::Staff(A::AgentsControl),
        ),
        (
            "post",
            "/agents/{id}/restart",
            Access::Staff(A::AgentsControl),
        ),
        ("get", "/agents/{id}/logs", Access::Staff(A::AgentsRead)),
        ("get", "/agents/{id}/health", Access::Staff(A::AgentsRead)),
    ];
    let table = access_table(ApiOptions { dev_clock: true });
    for (method, path, access) in &table {
        let pinned = expected
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .unwrap_or_else(|| {
                panic!("{method} {path} is routed but not pinned here; pin its access")
            });
        assert_eq!(pinned.2, *access, "{method} {path}");
    }
    assert_eq!(
        table.len(),
        expected.len(),
        "a pinned route is no longer routed"
    );
}
