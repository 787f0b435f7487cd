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
    format!("/api/v1{filled}")
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

/// The walk trusts each route's declared action; the people routes' actions are pinned here, as the
/// issue names them, so a route declaring a weaker one fails.
#[test]
fn the_people_routes_declare_the_actions_of_the_issue() {
    use Action as A;
    let expected = [
        ("get", "/users", A::UsersRead),
        ("post", "/users", A::UsersManage),
        ("get", "/users/me", A::SelfRead),
        ("patch", "/users/{id}", A::UsersManage),
        ("delete", "/users/{id}", A::UsersManage),
        ("post", "/users/{id}/sign-out", A::UsersManage),
        ("get", "/tokens", A::SelfRead),
        ("post", "/tokens", A::SelfEdit),
        ("delete", "/tokens/{id}", A::SelfEdit),
        ("get", "/groups", A::GroupsRead),
        ("post", "/groups", A::GroupsManage),
        ("patch", "/groups/{id}", A::GroupsManage),
        ("delete", "/groups/{id}", A::GroupsManage),
        ("put", "/groups/{id}/users", A::GroupsManage),
        ("put", "/agents/{id}/group", A::AgentsMove),
        ("get", "/support-grants", A::GrantsManage),
        ("post", "/support-grants", A::GrantsManage),
        ("delete", "/support-grants/{id}", A::GrantsManage),
    ];
    let table = access_table(ApiOptions { dev_clock: false });
    for (method, path, action) in expected {
        let found = table
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .unwrap_or_else(|| panic!("{method} {path} is not routed"));
        assert_eq!(found.2, Access::Staff(action), "{method} {path}");
    }
}
