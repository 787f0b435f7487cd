//! The people routes: invitations (mailed through a real SMTP server, or answered without a mailer),
//! users of the company (list, change, last-admin rule, remove, force out; other companies' users are
//! 404), and API tokens (read-only, list, revoke, expiry, stored only hashed).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use outpost_portal::access::Role;
use outpost_portal::app::sessions::Client;
use outpost_portal::app::users;
use outpost_portal::app::OpError;
use outpost_portal::config::{SmtpSecurity, SmtpSettings};
use outpost_portal::mail::Mailer;
use outpost_portal::store::users::LinkPurpose;
use outpost_tests::smtp::SmtpCapture;
use serde_json::{json, Value};
use sqlx::Row;

use crate::harness::{start_time, Auth, Harness, Options, PUBLIC_URL};

const PASSWORD: &str = "correct horse battery staple";

/// A token acting as the user with `email`.
pub async fn token_for(h: &Harness, email: &str, read_only: bool) -> String {
    users::bootstrap_token(h.app.store(), Some(email), "test", read_only, h.app.now())
        .await
        .unwrap()
}

/// A user of another company (made with the company and, if given, the group); their id.
pub async fn other_company_user(h: &Harness, email: &str, role: Role, group: Option<&str>) -> i64 {
    let member = users::NewMember {
        email,
        name: None,
        role,
        require_2fa: false,
    };
    users::bootstrap_user(
        h.app.store(),
        &member,
        Some("Other Company"),
        group,
        PUBLIC_URL,
        start_time(),
    )
    .await
    .unwrap()
    .user
    .id
}

/// Makes a group with the harness's admin token; its id.
pub async fn group(h: &Harness, name: &str, parent: Option<i64>) -> i64 {
    let resp = h
        .op(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": name, "parent": parent })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    resp.body["id"].as_i64().unwrap()
}

/// The company's account history lines whose action starts with `action`.
pub async fn account_lines(h: &Harness, action: &str) -> Vec<Value> {
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/history?action={action}"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body["entries"].as_array().unwrap().clone()
}

/// The token part of an account link.
fn token_of(link: &str) -> &str {
    link.split("token=").nth(1).unwrap()
}

fn smtp_settings(port: u16) -> SmtpSettings {
    let mut s = SmtpSettings::new(
        "127.0.0.1",
        SmtpSecurity::None,
        "Outpost <portal@example.com>".parse().unwrap(),
    );
    s.port = port;
    s.timeout = Duration::from_secs(5);
    s
}

#[tokio::test]
async fn an_invitation_is_mailed_and_its_link_stays_out_of_the_answer() {
    let smtp = SmtpCapture::start().unwrap();
    let mailer = Mailer::new(&smtp_settings(smtp.port())).unwrap();
    let h = Harness::with(Options {
        mailer: Some(Arc::new(mailer)),
        ..Options::default()
    })
    .await;
    let north = group(&h, "North", None).await;
    let resp = h
        .op(
            Method::POST,
            "/api/v1/users",
            Some(json!({
                "email": "Nia.Field@Example.com",
                "name": "Nia Field",
                "role": "group-admin",
                "groups": [north],
                "require_2fa": true,
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    assert_eq!(resp.body["mailed"], true);
    assert!(resp.body.get("link").is_none(), "{:?}", resp.body);
    let user = &resp.body["user"];
    assert_eq!(user["email"], "nia.field@example.com");
    assert_eq!(user["role"], "group-admin");
    assert_eq!(user["groups"], json!([north]));
    assert_eq!(user["require_2fa"], true);
    assert_eq!(user["two_factor"], false);

    let mail = smtp
        .wait_for(
            "nia.field@example.com",
            "invited you",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let links = mail.links();
    assert_eq!(links.len(), 1, "{}", mail.text);
    let link = &links[0];
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/account/password?token=")),
        "{link}"
    );
    let token = token_of(link);
    assert!(
        !resp.body.to_string().contains(token),
        "the mailed link must not be answered: {}",
        resp.body
    );
    // The mailed link is the user's real invitation, valid for 72 hours.
    let (invited, _) = h.app.check_link(token, LinkPurpose::Invite).await.unwrap();
    assert_eq!(invited.id, user["id"].as_i64().unwrap());
    h.clock
        .advance(chrono::Duration::hours(72) + chrono::Duration::seconds(1));
    assert!(matches!(
        h.app.check_link(token, LinkPurpose::Invite).await,
        Err(OpError::LinkExpired)
    ));

    let lines = account_lines(&h, "user-invited").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["actor"], "user:admin (token 1)");
    assert_eq!(lines[0]["address"], "127.0.0.1");
    let details = lines[0]["details"].as_str().unwrap();
    assert!(
        details.contains("nia.field@example.com") && details.contains("North"),
        "{details}"
    );
    assert!(!details.contains(token));
}

#[tokio::test]
async fn an_invitation_whose_mail_fails_is_undone() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mailer = Mailer::new(&smtp_settings(port)).unwrap();
    let h = Harness::with(Options {
        mailer: Some(Arc::new(mailer)),
        ..Options::default()
    })
    .await;
    let body = json!({ "email": "ana@example.com", "role": "company-admin" });
    let resp = h
        .op(Method::POST, "/api/v1/users", Some(body.clone()))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{:?}", resp.body);
    assert_eq!(resp.error(), "mail_failed");
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.contains(&port.to_string()) && message.contains("invite ana@example.com again"),
        "{message}"
    );
    let list = h.op(Method::GET, "/api/v1/users", None).await;
    assert!(
        !list.body.to_string().contains("ana@example.com"),
        "{:?}",
        list.body
    );
    // Nothing is left in the way of inviting again.
    let again = h.op(Method::POST, "/api/v1/users", Some(body)).await;
    assert_eq!(again.status, StatusCode::BAD_GATEWAY, "{:?}", again.body);
}

#[tokio::test]
async fn without_a_mailer_the_link_is_answered() {
    let h = Harness::new().await;
    let resp = h
        .op(
            Method::POST,
            "/api/v1/users",
            Some(json!({ "email": "ana@example.com", "role": "company-admin" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    assert_eq!(resp.body["mailed"], false);
    let link = resp.body["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/account/password?token=")),
        "{link}"
    );
    let (user, _) = h
        .app
        .check_link(token_of(link), LinkPurpose::Invite)
        .await
        .unwrap();
    assert_eq!(user.username, "ana");
    assert_eq!(
        resp.body["user"]["name"], "ana",
        "the name defaults to the email's local part"
    );

    let list = h.op(Method::GET, "/api/v1/users", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ana"]);
}

#[tokio::test]
async fn invitations_refuse_what_they_cannot_do() {
    let h = Harness::new().await;
    let invite = |body: Value| {
        let h = &h;
        async move { h.op(Method::POST, "/api/v1/users", Some(body)).await }
    };
    let first = invite(json!({ "email": "bo@example.com", "role": "supervisor", "groups": [group(&h, "North", None).await] })).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);

    let dup = invite(json!({ "email": "BO@example.com", "role": "company-admin" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{:?}", dup.body);
    assert!(dup.body["message"]
        .as_str()
        .unwrap()
        .contains("bo@example.com"));

    let bad_role = invite(json!({ "email": "cy@example.com", "role": "boss" })).await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_role.error(), "invalid_request");
    assert!(bad_role.body["message"]
        .as_str()
        .unwrap()
        .starts_with("role:"));

    let support = invite(json!({ "email": "cy@example.com", "role": "support" })).await;
    assert_eq!(support.status, StatusCode::BAD_REQUEST);
    assert!(
        support.body["message"]
            .as_str()
            .unwrap()
            .contains("users new --role support"),
        "{:?}",
        support.body
    );

    let no_group = invite(json!({ "email": "cy@example.com", "role": "group-admin" })).await;
    assert_eq!(no_group.status, StatusCode::BAD_REQUEST);
    assert!(no_group.body["message"]
        .as_str()
        .unwrap()
        .starts_with("groups:"));

    let other =
        other_company_user(&h, "boss@other.example", Role::CompanyAdmin, Some("Theirs")).await;
    assert!(other > 0);
    let their_group = {
        let mut conn = h.app.store().conn().await.unwrap();
        let company = sqlx::query_scalar::<_, i64>("SELECT company_id FROM users WHERE id = ?")
            .bind(other)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        outpost_portal::store::groups::by_name(&mut conn, company, "Theirs")
            .await
            .unwrap()
            .unwrap()
    };
    let foreign =
        invite(json!({ "email": "cy@example.com", "role": "supervisor", "groups": [their_group] }))
            .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{:?}", foreign.body);

    let bad_email = invite(json!({ "email": "not an address", "role": "company-admin" })).await;
    assert_eq!(bad_email.status, StatusCode::BAD_REQUEST);

    let unknown_field =
        invite(json!({ "email": "cy@example.com", "role": "company-admin", "admin": true })).await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);

    // Nothing refused was made.
    let list = h.op(Method::GET, "/api/v1/users", None).await;
    assert_eq!(
        list.body["users"].as_array().unwrap().len(),
        2,
        "{:?}",
        list.body
    );
}

#[tokio::test]
async fn users_are_changed_removed_and_forced_out_within_the_company() {
    let h = Harness::new().await;
    let me = h.op(Method::GET, "/api/v1/users/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "company-admin");
    let my_id = me.body["id"].as_i64().unwrap();

    // The only company admin cannot stop being one.
    let demote = h
        .op(
            Method::PATCH,
            &format!("/api/v1/users/{my_id}"),
            Some(json!({ "role": "supervisor" })),
        )
        .await;
    assert_eq!(demote.status, StatusCode::CONFLICT, "{:?}", demote.body);
    assert!(demote.body["message"]
        .as_str()
        .unwrap()
        .contains("last company admin"));

    let ana = h
        .add_user("ana@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let changed = h
        .op(
            Method::PATCH,
            &format!("/api/v1/users/{ana}"),
            Some(json!({ "role": "company-admin", "require_2fa": true, "name": "Ana Lima" })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["role"], "company-admin");
    assert_eq!(changed.body["require_2fa"], true);
    assert_eq!(changed.body["name"], "Ana Lima");
    assert_eq!(
        changed.body["groups"],
        json!([]),
        "company admins leave their groups"
    );
    let lines = account_lines(&h, "user-changed").await;
    assert_eq!(lines.len(), 1);
    let details = lines[0]["details"].as_str().unwrap();
    assert!(
        details.contains("role group-admin → company-admin"),
        "{details}"
    );
    assert_eq!(lines[0]["address"], "127.0.0.1");

    // Now there are two company admins: either may step down.
    let demote = h
        .op(
            Method::PATCH,
            &format!("/api/v1/users/{ana}"),
            Some(json!({ "role": "supervisor" })),
        )
        .await;
    assert_eq!(demote.status, StatusCode::OK, "{:?}", demote.body);
    let bad = h
        .op(
            Method::PATCH,
            &format!("/api/v1/users/{ana}"),
            Some(json!({ "role": "support" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Forcing out ends her browser sessions.
    let client = Client {
        address: Some("192.0.2.1".into()),
        browser: "test".into(),
    };
    let (session, _) = h
        .app
        .sign_in("ana@example.com", PASSWORD, &client, None)
        .await
        .unwrap();
    assert!(h.app.session(&session).await.unwrap().is_some());
    let out = h
        .op(Method::POST, &format!("/api/v1/users/{ana}/sign-out"), None)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{:?}", out.body);
    assert_eq!(out.body["sessions_ended"], 1);
    assert!(h.app.session(&session).await.unwrap().is_none());

    // Removing: not yourself; someone else, with their tokens.
    let own = h
        .op(Method::DELETE, &format!("/api/v1/users/{my_id}"), None)
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT);
    let ana_token = token_for(&h, "ana@example.com", false).await;
    assert_eq!(
        h.call(
            Method::GET,
            "/api/v1/users/me",
            None,
            Auth::Bearer(&ana_token)
        )
        .await
        .status,
        StatusCode::OK
    );
    let removed = h
        .op(Method::DELETE, &format!("/api/v1/users/{ana}"), None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    assert_eq!(
        h.call(
            Method::GET,
            "/api/v1/users/me",
            None,
            Auth::Bearer(&ana_token)
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(account_lines(&h, "user-removed").await.len(), 1);
    let again = h
        .op(Method::DELETE, &format!("/api/v1/users/{ana}"), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Another company's users do not exist here.
    let other = other_company_user(&h, "boss@other.example", Role::CompanyAdmin, None).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/users/{other}"),
            Some(json!({ "name": "X" })),
        ),
        (Method::DELETE, format!("/api/v1/users/{other}"), None),
        (
            Method::POST,
            format!("/api/v1/users/{other}/sign-out"),
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
        assert_eq!(resp.error(), "not_found");
    }
    let list = h.op(Method::GET, "/api/v1/users", None).await;
    assert!(!list.body.to_string().contains("boss@other.example"));
    // Their admin sees only their own company.
    let theirs = token_for(&h, "boss@other.example", false).await;
    let list = h
        .call(Method::GET, "/api/v1/users", None, Auth::Bearer(&theirs))
        .await;
    let names: Vec<&str> = list.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boss"]);
}

#[tokio::test]
async fn tokens_are_read_only_listed_revoked_expire_and_are_stored_hashed() {
    let h = Harness::new().await;
    let created = h
        .op(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "dashboard", "read_only": true })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["read_only"], true);
    let ro = created.body["token"].as_str().unwrap().to_owned();
    let ro_id = created.body["id"].as_i64().unwrap();

    let get = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&ro))
        .await;
    assert_eq!(get.status, StatusCode::OK);
    let post = h
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "North" })),
            Auth::Bearer(&ro),
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    assert_eq!(post.error(), "forbidden");
    // A read-only token cannot make itself a stronger one.
    let escalate = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "more" })),
            Auth::Bearer(&ro),
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);

    let short = h
        .op(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "short", "expires_in_days": 1 })),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED, "{:?}", short.body);
    let short_token = short.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(
            Method::GET,
            "/api/v1/groups",
            None,
            Auth::Bearer(&short_token)
        )
        .await
        .status,
        StatusCode::OK
    );

    let bad = h
        .op(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "x", "expires_in_days": 0 })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let list = h.op(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["short", "dashboard", "tester"], "newest first");
    let text = list.body.to_string();
    assert!(!text.contains(&ro) && !text.contains(&short_token) && !text.contains(&h.token));
    assert!(list.body["tokens"][0]["expires_at"].is_string());

    // No table holds a token, only its hash.
    let mut conn = h.app.store().conn().await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for table in &tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        for column in columns {
            for secret in [&ro, &short_token, &h.token] {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS TEXT), ?) > 0"
                ))
                .bind(secret.as_str())
                .fetch_one(&mut *conn)
                .await
                .unwrap();
                assert_eq!(n, 0, "{table}.{column} holds a token");
            }
        }
    }
    let hashed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_tokens WHERE hash = ?")
        .bind(outpost_portal::secrets::hash(&ro))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(hashed, 1);
    drop(conn);

    // Revoked: refused at once.
    let revoked = h
        .op(Method::DELETE, &format!("/api/v1/tokens/{ro_id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    let after = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&ro))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(account_lines(&h, "token-revoked").await.len(), 1);
    assert_eq!(
        h.op(Method::DELETE, &format!("/api/v1/tokens/{ro_id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Expired: refused once its day is over.
    h.clock
        .advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
    let expired = h
        .call(
            Method::GET,
            "/api/v1/groups",
            None,
            Auth::Bearer(&short_token),
        )
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.op(Method::GET, "/api/v1/groups", None).await.status,
        StatusCode::OK,
        "a token without expiry still works"
    );
}

#[tokio::test]
async fn users_see_and_revoke_only_their_own_tokens() {
    let h = Harness::new().await;
    h.add_user("bo@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let bo = token_for(&h, "bo@example.com", false).await;
    let list = h
        .call(Method::GET, "/api/v1/tokens", None, Auth::Bearer(&bo))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let tokens = list.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["user"], "bo");
    // A supervisor only reads: their new tokens are read-only whatever they ask.
    let made = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "mine" })),
            Auth::Bearer(&bo),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["read_only"], true);
    // The admin's token is not theirs to see.
    let admin_token_id = h.op(Method::GET, "/api/v1/tokens", None).await.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == "admin")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let resp = h
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{admin_token_id}"),
            None,
            Auth::Bearer(&bo),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.op(Method::GET, "/api/v1/tokens", None).await.status,
        StatusCode::OK
    );
}
