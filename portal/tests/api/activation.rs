//! Activation (happy path, every code error, rate limit, broker failure) and agent/operator authentication.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use outpost_portal::codes::Code;
use serde_json::json;

use crate::harness::{activation_body, agent_lines, start_time, Auth, Harness, Options};

#[tokio::test]
async fn activation_creates_the_agent_and_its_broker_client() {
    let h = Harness::new().await;
    let code = h.code(1, None).await;
    let resp = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "shop-gw")),
            Auth::None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    let id = resp.body["agent_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ag-") && id.len() == 15);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    assert_eq!(resp.body["name"], "shop-gw");
    assert_eq!(resp.body["broker"], "portal.test:8883");
    assert_eq!(resp.body["epoch"], 0);
    assert!(resp.body["ca_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let secret = resp.body["secret"].as_str().unwrap();
    assert!(
        secret.len() * 4 >= 128,
        "secret too short: {} chars",
        secret.len()
    );
    assert_eq!(h.broker.calls(), vec![format!("create {id}")]);

    let agent = h.agent(&id).await;
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["subscription"]["plan"], "monthly");
    assert_eq!(agent["subscription"]["expires_at"], serde_json::Value::Null);
    assert_eq!(agent["public_ip"], "127.0.0.1");
    assert_eq!(agent["mac"], "02:00:00:00:00:01");
    assert_eq!(agent["platform"], "box");
    assert_eq!(agent["activated_at"], "2026-01-15T12:00:00.000Z");
    assert_eq!(agent["online"], false);

    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    let entries = history.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["action"], "activated");
    assert_eq!(entries[0]["actor"], "agent");

    let again = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "other")),
            Auth::None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error(), "code_used_up");
}

#[tokio::test]
async fn a_prepaid_code_gives_a_prepaid_subscription() {
    let h = Harness::new().await;
    let body = h.activate_with("kiosk", Some(12)).await;
    let agent = h.agent(body["agent_id"].as_str().unwrap()).await;
    assert_eq!(agent["subscription"]["plan"], "prepaid");
    assert_eq!(agent["expires_at"], "2027-01-15T12:00:00.000Z");
    assert_eq!(agent["subscription"]["expires_at"], agent["expires_at"]);
}

#[tokio::test]
async fn a_multi_use_code_activates_several_agents() {
    let h = Harness::new().await;
    let code = h.code(2, None).await;
    for (i, expect) in [
        StatusCode::CREATED,
        StatusCode::CREATED,
        StatusCode::CONFLICT,
    ]
    .iter()
    .enumerate()
    {
        let resp = h
            .call(
                Method::POST,
                "/api/v1/activate",
                Some(activation_body(&code, &format!("gw{i}"))),
                Auth::None,
            )
            .await;
        assert_eq!(resp.status, *expect, "{:?}", resp.body);
    }
}

#[tokio::test]
async fn each_code_error_has_its_own_answer() {
    let h = Harness::new().await;
    let activate = |code: String| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/api/v1/activate",
                Some(activation_body(&code, "gw")),
                Auth::None,
            )
            .await
        }
    };
    // A typo (one changed character) is caught by the check character.
    let good = h.code(1, None).await;
    let mut typo: Vec<char> = good.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let resp = activate(typo.into_iter().collect()).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "malformed_code")
    );
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .contains("check character"));
    let resp = activate("ABCD-EFGH".into()).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "malformed_code")
    );
    let resp = activate("ABCD-EFGH-JKMU".into()).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "malformed_code")
    );

    let never_issued = Code::generate().display();
    let resp = activate(never_issued).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::NOT_FOUND, "unknown_code")
    );

    h.clock.set(start_time() + chrono::Duration::days(8));
    let resp = activate(good.clone()).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::GONE, "code_expired")
    );
    // Lower case and without dashes is the same code (still expired, not malformed).
    let resp = activate(good.to_lowercase().replace('-', "")).await;
    assert_eq!(resp.error(), "code_expired");
}

/// The activation checks the code, then makes the broker client, then consumes the code: the consuming
/// write itself checks the expiry, so a code that expires in between is not used (`code_expired`).
#[tokio::test]
async fn a_code_cannot_be_consumed_after_it_expired() {
    use outpost_portal::store::credentials;
    let h = Harness::new().await;
    let code = Code::parse(&h.code(2, None).await).unwrap();
    let hash = code.hash();
    let mut conn = h.app.store().conn().await.unwrap();
    let row = credentials::find_code(&mut conn, &hash)
        .await
        .unwrap()
        .unwrap();
    // Checked as valid a moment before its expiry; consumed at and after it: refused, nothing used.
    for late in [
        row.expires_at,
        row.expires_at + chrono::Duration::milliseconds(1),
    ] {
        assert!(
            !credentials::consume_code(&mut conn, &hash, late)
                .await
                .unwrap(),
            "consumed at {late} (expiry {})",
            row.expires_at
        );
    }
    let used = credentials::find_code(&mut conn, &hash)
        .await
        .unwrap()
        .unwrap()
        .used;
    assert_eq!(used, 0);
    // Before the expiry it is consumed, and only as often as it allows.
    let before = row.expires_at - chrono::Duration::milliseconds(1);
    assert!(credentials::consume_code(&mut conn, &hash, before)
        .await
        .unwrap());
    assert!(credentials::consume_code(&mut conn, &hash, before)
        .await
        .unwrap());
    assert!(!credentials::consume_code(&mut conn, &hash, before)
        .await
        .unwrap());
}

#[tokio::test]
async fn other_bad_fields_are_named() {
    let h = Harness::new().await;
    let code = h.code(1, None).await;
    let mut body = activation_body(&code, "gw");
    body["platform"] = json!("toaster");
    let resp = h
        .call(Method::POST, "/api/v1/activate", Some(body), Auth::None)
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(
        resp.body["message"]
            .as_str()
            .unwrap()
            .starts_with("platform"),
        "{:?}",
        resp.body
    );

    let mut body = activation_body(&code, "gw");
    body.as_object_mut().unwrap().remove("hostname");
    let resp = h
        .call(Method::POST, "/api/v1/activate", Some(body), Auth::None)
        .await;
    assert_eq!(resp.error(), "invalid_request");
    assert!(
        resp.body["message"].as_str().unwrap().contains("hostname"),
        "{:?}",
        resp.body
    );

    let resp = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "  ")),
            Auth::None,
        )
        .await;
    assert_eq!(resp.error(), "invalid_request");
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .starts_with("hostname"));
    // None of that used the code.
    h.activate_code_ok(&code).await;
}

impl Harness {
    async fn activate_code_ok(&self, code: &str) {
        let resp = self
            .call(
                Method::POST,
                "/api/v1/activate",
                Some(activation_body(code, "gw")),
                Auth::None,
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    }
}

#[tokio::test]
async fn a_broker_failure_leaves_nothing_behind() {
    let h = Harness::new().await;
    let code = h.code(1, None).await;
    h.broker.fail_create.store(true, Ordering::SeqCst);
    let resp = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "gw")),
            Auth::None,
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
    );
    let list = h.op(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list.body["total"], 0);
    let history = h.op(Method::GET, "/api/v1/history", None).await;
    assert_eq!(agent_lines(&history.body).len(), 0);
    h.broker.fail_create.store(false, Ordering::SeqCst);
    h.activate_code_ok(&code).await;
}

#[tokio::test]
async fn activation_is_rate_limited_per_address_before_the_code_is_checked() {
    let h = Harness::with(Options {
        activation_rate: 3,
        ..Options::default()
    })
    .await;
    let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    for _ in 0..3 {
        let resp = h
            .call_from(
                a,
                Method::POST,
                "/api/v1/activate",
                Some(activation_body("nope", "gw")),
                Auth::None,
            )
            .await;
        assert_eq!(resp.error(), "malformed_code");
    }
    // Even a valid code is refused once the budget is spent.
    let code = h.code(1, None).await;
    let resp = h
        .call_from(
            a,
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "gw")),
            Auth::None,
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let retry: u64 = resp.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    let resp = h
        .call_from(
            b,
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(&code, "gw")),
            Auth::None,
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::CREATED,
        "another address has its own budget"
    );
}

#[tokio::test]
async fn agent_status_needs_the_agents_own_secret() {
    let h = Harness::new().await;
    let body = h.activate("gw").await;
    let id = body["agent_id"].as_str().unwrap();
    let secret = body["secret"].as_str().unwrap();
    let resp = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(id, secret),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body["agent_id"], id);
    assert_eq!(resp.body["status"], "active");
    assert_eq!(resp.body["epoch"], 0);
    assert_eq!(resp.body["name"], "gw");

    let resp = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(id, "wrong"),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::UNAUTHORIZED, "bad_credentials")
    );
    // It says what to do about it.
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.contains("activate it again with a new code"),
        "{message}"
    );
    let resp = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic("ag-nobody", secret),
        )
        .await;
    assert_eq!(resp.error(), "bad_credentials");
    let resp = h
        .call(Method::GET, "/api/v1/agent/status", None, Auth::None)
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn operator_routes_need_a_valid_bearer_token() {
    let h = Harness::new().await;
    let resp = h
        .call(Method::GET, "/api/v1/agents", None, Auth::None)
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert_eq!(resp.headers["www-authenticate"], "Bearer");
    let resp = h
        .call(
            Method::GET,
            "/api/v1/agents",
            None,
            Auth::Bearer("opt_forged"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = h
        .call(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({})),
            Auth::None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = h.op(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn operators_issue_codes_through_the_api() {
    let h = Harness::new().await;
    let resp = h
        .op(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({ "uses": 2, "expires_in_s": 3600, "prepaid_months": 3 })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    assert_eq!(resp.body["uses"], 2);
    assert_eq!(resp.body["expires_at"], "2026-01-15T13:00:00.000Z");
    let code = resp.body["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 14);
    h.activate_code_ok(&code).await;

    let resp = h
        .op(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({ "uses": 0 })),
        )
        .await;
    assert_eq!(resp.error(), "invalid_request");
    assert!(resp.body["message"].as_str().unwrap().starts_with("uses"));
    let resp = h
        .op(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({ "prepaid_months": 99 })),
        )
        .await;
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .starts_with("prepaid_months"));
    let resp = h
        .op(Method::POST, "/api/v1/activation-codes", Some(json!({})))
        .await;
    assert_eq!(
        resp.body["expires_at"], "2026-01-22T12:00:00.000Z",
        "default lifetime is 7 days"
    );
}
