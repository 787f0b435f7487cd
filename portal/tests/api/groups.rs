//! Groups and scope: sub-groups, what a group admin sees (their groups and sub-groups, at once after a
//! move or a change of their groups), moving agents, deleting only empty groups, the groups list's
//! figures, support grants (one agent, expiry, removal, the history naming the grant), and another
//! company's users, agents, groups and grants answering 404.

use axum::http::{Method, StatusCode};
use outpost_portal::access::Role;
use serde_json::{json, Value};

use crate::harness::{activation_body, id_of, Auth, Harness};
use crate::people::{account_lines, group, other_company_user, token_for};

const PASSWORD: &str = "correct horse battery staple";

/// Moves `agent` into `group` with the admin token.
async fn move_to(h: &Harness, agent: &str, group: Option<i64>) -> Value {
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/group"),
            Some(json!({ "group": group })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body
}

async fn get_as(h: &Harness, token: &str, path: &str) -> StatusCode {
    h.call(Method::GET, path, None, Auth::Bearer(token))
        .await
        .status
}

fn names(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_group_admin_sees_their_groups_and_sub_groups_and_a_move_counts_at_once() {
    let h = Harness::new().await;
    let north = group(&h, "North", None).await;
    let east = group(&h, "North-East", Some(north)).await;
    let south = group(&h, "South", None).await;
    h.add_user("ga@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let ga = token_for(&h, "ga@example.com", false).await;
    let shop = id_of(&h.activate("shop").await);
    let depot = id_of(&h.activate("depot").await);

    assert_eq!(
        get_as(&h, &ga, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::NOT_FOUND
    );
    let moved = move_to(&h, &shop, Some(east)).await;
    assert_eq!(moved["group_name"], "North-East");
    // In a sub-group of their group: seen.
    assert_eq!(
        get_as(&h, &ga, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::OK
    );
    let list = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&ga))
        .await;
    assert_eq!(list.body["total"], 1, "{:?}", list.body);
    assert_eq!(list.body["agents"][0]["id"], shop.as_str());
    assert_eq!(
        get_as(&h, &ga, &format!("/api/v1/agents/{depot}")).await,
        StatusCode::NOT_FOUND
    );

    let groups = h
        .call(Method::GET, "/api/v1/groups", None, Auth::Bearer(&ga))
        .await;
    assert_eq!(groups.status, StatusCode::OK);
    assert_eq!(names(&groups.body, "groups"), ["North", "North-East"]);
    assert_eq!(groups.body["groups"][1]["parent"], north);
    assert_eq!(groups.body["groups"][0]["users"], json!(["ga"]));
    let all = h.op(Method::GET, "/api/v1/groups", None).await;
    assert_eq!(names(&all.body, "groups"), ["North", "North-East", "South"]);

    // The agent's history says where it went.
    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{shop}/history"), None)
        .await;
    let line = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "moved")
        .cloned()
        .unwrap();
    assert_eq!(line["details"], "from no group to \"North-East\"");
    assert_eq!(line["actor"], "user:admin (token 1)");

    // A group admin moves within their scope only, and never out of every group.
    let within = h
        .call(
            Method::PUT,
            &format!("/api/v1/agents/{shop}/group"),
            Some(json!({ "group": north })),
            Auth::Bearer(&ga),
        )
        .await;
    assert_eq!(within.status, StatusCode::OK, "{:?}", within.body);
    for (agent, body, status) in [
        (&shop, json!({ "group": south }), StatusCode::NOT_FOUND),
        (&shop, json!({ "group": null }), StatusCode::FORBIDDEN),
        (&shop, json!({}), StatusCode::BAD_REQUEST),
        (&depot, json!({ "group": north }), StatusCode::NOT_FOUND),
    ] {
        let resp = h
            .call(
                Method::PUT,
                &format!("/api/v1/agents/{agent}/group"),
                Some(body.clone()),
                Auth::Bearer(&ga),
            )
            .await;
        assert_eq!(resp.status, status, "{body}: {:?}", resp.body);
    }

    // Moved out of their scope by an admin: gone for them on the very next request.
    move_to(&h, &shop, Some(south)).await;
    assert_eq!(
        get_as(&h, &ga, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::NOT_FOUND
    );
    let list = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&ga))
        .await;
    assert_eq!(list.body["total"], 0);
    // An admin may take it out of every group.
    let out = move_to(&h, &shop, None).await;
    assert_eq!(out["group"], Value::Null);
}

#[tokio::test]
async fn a_user_taken_off_a_group_loses_it_on_their_next_request() {
    let h = Harness::new().await;
    let north = group(&h, "North", None).await;
    let ga_id = h
        .add_user("ga@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let sup_id = h
        .add_user("sup@example.com", Role::Supervisor, Some("South"), PASSWORD)
        .await;
    let ga = token_for(&h, "ga@example.com", false).await;
    let shop = id_of(&h.activate("shop").await);
    move_to(&h, &shop, Some(north)).await;
    let path = format!("/api/v1/agents/{shop}");
    assert_eq!(get_as(&h, &ga, &path).await, StatusCode::OK);

    let set = h
        .op(
            Method::PUT,
            &format!("/api/v1/groups/{north}/users"),
            Some(json!({ "users": [sup_id] })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["users"], json!(["sup"]));
    assert_eq!(get_as(&h, &ga, &path).await, StatusCode::NOT_FOUND);
    let sup = token_for(&h, "sup@example.com", false).await;
    assert_eq!(get_as(&h, &sup, &path).await, StatusCode::OK);

    let back = h
        .op(
            Method::PUT,
            &format!("/api/v1/groups/{north}/users"),
            Some(json!({ "users": [ga_id, sup_id, ga_id] })),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    assert_eq!(back.body["users"], json!(["ga", "sup"]));
    assert_eq!(get_as(&h, &ga, &path).await, StatusCode::OK);
    let lines = account_lines(&h, "group-users-set").await;
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1]["details"],
        format!("\"North\" (group {north}): ga, sup")
    );

    // Only group admins and supervisors of the company.
    let me = h.op(Method::GET, "/api/v1/users/me", None).await.body["id"]
        .as_i64()
        .unwrap();
    let admin = h
        .op(
            Method::PUT,
            &format!("/api/v1/groups/{north}/users"),
            Some(json!({ "users": [me] })),
        )
        .await;
    assert_eq!(admin.status, StatusCode::BAD_REQUEST, "{:?}", admin.body);
    let foreign = other_company_user(&h, "x@other.example", Role::Supervisor, Some("Theirs")).await;
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/groups/{north}/users"),
            Some(json!({ "users": [foreign] })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{:?}", resp.body);
}

#[tokio::test]
async fn groups_are_changed_without_cycles_and_deleted_only_when_empty() {
    let h = Harness::new().await;
    let north = group(&h, "North", None).await;
    let east = group(&h, "North-East", Some(north)).await;
    let dup = h
        .op(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "north" })),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{:?}", dup.body);
    let missing_parent = h
        .op(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "West", "parent": 999 })),
        )
        .await;
    assert_eq!(missing_parent.status, StatusCode::NOT_FOUND);

    for (id, parent) in [(north, east), (north, north)] {
        let resp = h
            .op(
                Method::PATCH,
                &format!("/api/v1/groups/{id}"),
                Some(json!({ "parent": parent })),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CONFLICT, "{:?}", resp.body);
        assert!(resp.body["message"]
            .as_str()
            .unwrap()
            .contains("sub-groups"));
    }
    let taken = h
        .op(
            Method::PATCH,
            &format!("/api/v1/groups/{east}"),
            Some(json!({ "name": "North" })),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let changed = h
        .op(
            Method::PATCH,
            &format!("/api/v1/groups/{east}"),
            Some(json!({ "name": "East", "note": "shops by the sea", "parent": null })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["name"], "East");
    assert_eq!(changed.body["note"], "shops by the sea");
    assert_eq!(changed.body["parent"], Value::Null);
    let lines = account_lines(&h, "group-changed").await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["details"]
        .as_str()
        .unwrap()
        .contains("renamed \"North-East\" → \"East\""));
    // Back under North, to test deleting.
    let under = h
        .op(
            Method::PATCH,
            &format!("/api/v1/groups/{east}"),
            Some(json!({ "parent": north })),
        )
        .await;
    assert_eq!(under.body["parent"], north);

    // The list's figures: active agents and renewals due within four weeks.
    let shop = id_of(&h.activate_with("shop", Some(1)).await);
    move_to(&h, &shop, Some(east)).await;
    let listed = h.op(Method::GET, "/api/v1/groups", None).await;
    let east_view = listed.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == east)
        .cloned()
        .unwrap();
    assert_eq!(east_view["active"], true);
    assert_eq!(east_view["active_agents"], 1);
    assert_eq!(
        east_view["due_for_renewal"], 0,
        "a month ahead is not due yet"
    );
    h.clock.advance(chrono::Duration::days(5));
    let listed = h.op(Method::GET, "/api/v1/groups", None).await;
    let east_view = listed.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == east)
        .cloned()
        .unwrap();
    assert_eq!(east_view["due_for_renewal"], 1, "{east_view}");

    let with_sub = h
        .op(Method::DELETE, &format!("/api/v1/groups/{north}"), None)
        .await;
    assert_eq!(with_sub.status, StatusCode::CONFLICT);
    assert!(with_sub.body["message"]
        .as_str()
        .unwrap()
        .contains("1 sub-group(s)"));
    let with_agent = h
        .op(Method::DELETE, &format!("/api/v1/groups/{east}"), None)
        .await;
    assert_eq!(with_agent.status, StatusCode::CONFLICT);
    assert!(with_agent.body["message"]
        .as_str()
        .unwrap()
        .contains("PUT /api/v1/agents/{id}/group"));

    move_to(&h, &shop, None).await;
    for id in [east, north] {
        let resp = h
            .op(Method::DELETE, &format!("/api/v1/groups/{id}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    }
    let listed = h.op(Method::GET, "/api/v1/groups", None).await;
    assert_eq!(listed.body["groups"], json!([]));
    assert_eq!(account_lines(&h, "group-removed").await.len(), 2);
    assert_eq!(account_lines(&h, "group-created").await.len(), 2);
}

#[tokio::test]
async fn a_support_grant_opens_one_agent_until_it_ends_or_is_removed() {
    let h = Harness::new().await;
    let support_id = h
        .add_user("sam@operator.example", Role::Support, None, PASSWORD)
        .await;
    let sam = token_for(&h, "sam@operator.example", false).await;
    let shop = id_of(&h.activate("shop").await);
    let depot = id_of(&h.activate("depot").await);
    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::NOT_FOUND
    );

    let until = h.app.now() + chrono::Duration::hours(2);
    let made = h
        .op(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({
                "user": support_id,
                "scope": "agent",
                "agent": shop,
                "until": until.to_rfc3339(),
            })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let grant = made.body["id"].as_i64().unwrap();
    assert_eq!(made.body["in_force"], true);
    assert_eq!(made.body["user"]["username"], "sam");
    assert!(made.body["covers"]
        .as_str()
        .unwrap()
        .contains(shop.as_str()));

    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{depot}")).await,
        StatusCode::NOT_FOUND
    );
    let list = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&sam))
        .await;
    assert_eq!(list.body["total"], 1);
    // Working under the grant: the agent's history names it.
    let renamed = h
        .call(
            Method::PATCH,
            &format!("/api/v1/agents/{shop}"),
            Some(json!({ "name": "Shop 1" })),
            Auth::Bearer(&sam),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{shop}/history"), None)
        .await;
    let line = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "renamed")
        .cloned()
        .unwrap();
    assert!(
        line["actor"]
            .as_str()
            .unwrap()
            .ends_with(&format!("under support grant {grant}")),
        "{line}"
    );
    let created = account_lines(&h, "grant-created").await;
    assert_eq!(created.len(), 1);
    assert!(created[0]["details"]
        .as_str()
        .unwrap()
        .starts_with(&format!("support grant {grant} for sam")));
    assert_eq!(created[0]["address"], "127.0.0.1");

    // Ended: refused on the next request, and listed as no longer in force.
    h.clock
        .advance(chrono::Duration::hours(2) + chrono::Duration::seconds(1));
    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{shop}")).await,
        StatusCode::NOT_FOUND
    );
    let grants = h.op(Method::GET, "/api/v1/support-grants", None).await;
    assert_eq!(grants.body["grants"][0]["id"], grant);
    assert_eq!(grants.body["grants"][0]["in_force"], false);

    // A permanent one, removed: refused at once.
    let made = h
        .op(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({ "user": support_id, "scope": "company", "until": null })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["until"], Value::Null);
    let permanent = made.body["id"].as_i64().unwrap();
    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{depot}")).await,
        StatusCode::OK
    );
    let removed = h
        .op(
            Method::DELETE,
            &format!("/api/v1/support-grants/{permanent}"),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_as(&h, &sam, &format!("/api/v1/agents/{depot}")).await,
        StatusCode::NOT_FOUND
    );
    let lines = account_lines(&h, "grant-removed").await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["details"].as_str().unwrap().starts_with(&format!(
        "support grant {permanent} for sam: the whole company"
    )));

    // What a grant cannot be.
    let ana = h
        .add_user("ana@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    for (body, status) in [
        (
            json!({ "user": ana, "scope": "company" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "user": 999, "scope": "company" }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "user": support_id, "scope": "agent" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "user": support_id, "scope": "agent", "agent": "ag-nobody" }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "user": support_id, "scope": "group", "group": 999 }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "user": support_id, "scope": "company", "until": "2020-01-01T00:00:00Z" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "user": support_id, "scope": "company", "until": "soon" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let resp = h
            .op(Method::POST, "/api/v1/support-grants", Some(body.clone()))
            .await;
        assert_eq!(resp.status, status, "{body}: {:?}", resp.body);
    }
}

#[tokio::test]
async fn another_companys_users_agents_groups_and_grants_are_not_found() {
    let h = Harness::new().await;
    let ours = group(&h, "North", None).await;
    // Before a second company exists (the harness's codes are for the only one).
    let our_agent = id_of(&h.activate("shop").await);
    let boss =
        other_company_user(&h, "boss@other.example", Role::CompanyAdmin, Some("Theirs")).await;
    let theirs = token_for(&h, "boss@other.example", false).await;
    let their_group = h
        .call(Method::GET, "/api/v1/groups", None, Auth::Bearer(&theirs))
        .await
        .body["groups"][0]["id"]
        .as_i64()
        .unwrap();
    let their_company: i64 = {
        let mut conn = h.app.store().conn().await.unwrap();
        sqlx::query_scalar("SELECT company_id FROM users WHERE id = ?")
            .bind(boss)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    let code = h
        .app
        .create_code(chrono::Duration::days(7), 1, None, (their_company, None))
        .await
        .unwrap()
        .code
        .display();
    let act = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "their-shop")),
            Auth::None,
        )
        .await;
    assert_eq!(act.status, StatusCode::CREATED, "{:?}", act.body);
    let their_agent = id_of(&act.body);
    let support_id = h
        .add_user("sam@operator.example", Role::Support, None, PASSWORD)
        .await;
    let their_grant = h
        .call(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({ "user": support_id, "scope": "company" })),
            Auth::Bearer(&theirs),
        )
        .await;
    assert_eq!(
        their_grant.status,
        StatusCode::CREATED,
        "{:?}",
        their_grant.body
    );
    let their_grant = their_grant.body["id"].as_i64().unwrap();

    for (method, path, body) in [
        (Method::GET, format!("/api/v1/agents/{their_agent}"), None),
        (
            Method::PUT,
            format!("/api/v1/agents/{their_agent}/group"),
            Some(json!({ "group": ours })),
        ),
        (
            Method::PUT,
            format!("/api/v1/agents/{our_agent}/group"),
            Some(json!({ "group": their_group })),
        ),
        (
            Method::PATCH,
            format!("/api/v1/groups/{their_group}"),
            Some(json!({ "name": "Mine" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/groups/{their_group}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/groups/{their_group}/users"),
            Some(json!({ "users": [] })),
        ),
        (
            Method::POST,
            "/api/v1/groups".to_owned(),
            Some(json!({ "name": "Sub", "parent": their_group })),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{boss}"),
            Some(json!({ "name": "X" })),
        ),
        (Method::DELETE, format!("/api/v1/users/{boss}"), None),
        (
            Method::POST,
            "/api/v1/support-grants".to_owned(),
            Some(json!({ "user": support_id, "scope": "agent", "agent": their_agent })),
        ),
        (
            Method::POST,
            "/api/v1/support-grants".to_owned(),
            Some(json!({ "user": support_id, "scope": "group", "group": their_group })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/support-grants/{their_grant}"),
            None,
        ),
    ] {
        let resp = h.op(method.clone(), &path, body).await;
        assert_eq!(
            resp.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            resp.body
        );
        assert_eq!(resp.error(), "not_found", "{method} {path}");
    }
    let groups = h.op(Method::GET, "/api/v1/groups", None).await;
    assert_eq!(names(&groups.body, "groups"), ["North"]);
    let grants = h.op(Method::GET, "/api/v1/support-grants", None).await;
    assert_eq!(grants.body["grants"], json!([]));
    // And the same the other way round.
    assert_eq!(
        get_as(&h, &theirs, &format!("/api/v1/agents/{our_agent}")).await,
        StatusCode::NOT_FOUND
    );
}
