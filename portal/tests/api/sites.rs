//! Per-site configuration through the API: `GET`/`PUT /agents/{id}/site` round trip, every bad field at
//! once, the history line (field names, never values), auth and unknown agents, and what cleanup and
//! deletion do to it.

use axum::http::{Method, StatusCode};
use outpost_cloud_link::AgentId;
use outpost_portal::site::SiteConfig;
use outpost_portal::store::sites;
use serde_json::{json, Value};

use crate::harness::{Auth, Harness};

fn id_of(v: &Value) -> String {
    v["agent_id"].as_str().unwrap().to_owned()
}

fn site_path(id: &str) -> String {
    format!("/api/v1/agents/{id}/site")
}

fn full_site() -> Value {
    json!({
        "contact": {
            "email": " jane.doe@example.com ",
            "first_name": "Jane",
            "last_name": "Doe",
            "phones": ["+1 (555) 010-2030", "  ", "555.0100 ext 12"],
        },
        "customer_id": "C-1001",
        "contract_id": "K-7",
        "psa": { "system": "datto_autotask", "org_id": "4711" },
        "address": "1 Main St, Suite 2\r\nSpringfield",
        "pin": { "latitude": 39.7817, "longitude": -89.6501 },
        "note": "Gate code 1234.\nCall first.",
    })
}

#[tokio::test]
async fn a_site_defaults_to_empty_and_round_trips() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);

    let empty = h.op(Method::GET, &site_path(&id), None).await;
    assert_eq!(empty.status, StatusCode::OK, "{:?}", empty.body);
    assert_eq!(
        empty.body,
        serde_json::to_value(SiteConfig::default()).unwrap()
    );
    assert_eq!(
        h.agent(&id).await["site"],
        empty.body,
        "the agent carries its site"
    );

    let put = h.op(Method::PUT, &site_path(&id), Some(full_site())).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let stored = put.body.clone();
    assert_eq!(
        stored["contact"]["email"], "jane.doe@example.com",
        "trimmed"
    );
    assert_eq!(
        stored["contact"]["phones"],
        json!(["+1 (555) 010-2030", "555.0100 ext 12"]),
        "blank numbers dropped"
    );
    assert_eq!(
        stored["psa"],
        json!({ "system": "datto_autotask", "org_id": "4711" })
    );
    assert_eq!(
        stored["address"], "1 Main St, Suite 2\nSpringfield",
        "CRLF stored as LF"
    );
    assert_eq!(
        stored["pin"],
        json!({ "latitude": 39.7817, "longitude": -89.6501 })
    );

    let got = h.op(Method::GET, &site_path(&id), None).await;
    assert_eq!(got.body, stored, "GET answers what PUT stored");
    assert_eq!(h.agent(&id).await["site"], stored);
    let list = h.op(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list.body["agents"][0]["site"], stored);

    // What GET answers can be sent back as it is.
    let again = h
        .op(Method::PUT, &site_path(&id), Some(stored.clone()))
        .await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &stored));

    // The whole document: what is left out is cleared.
    let partial = h
        .op(
            Method::PUT,
            &site_path(&id),
            Some(json!({ "customer_id": "C-2" })),
        )
        .await;
    assert_eq!(partial.status, StatusCode::OK);
    let mut expected = serde_json::to_value(SiteConfig::default()).unwrap();
    expected["customer_id"] = json!("C-2");
    assert_eq!(
        h.op(Method::GET, &site_path(&id), None).await.body,
        expected
    );
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once_and_nothing_is_stored() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.op(Method::PUT, &site_path(&id), Some(full_site())).await;
    let before = h.op(Method::GET, &site_path(&id), None).await.body;

    let bad = json!({
        "contact": {
            "email": "jane@",
            "first_name": "J".repeat(101),
            "last_name": "Doe\u{7}",
            "phones": ["+1 555 0100", "12", "555-CALL-NOW"],
        },
        "customer_id": "x".repeat(101),
        "contract_id": "K\t7",
        "psa": { "system": "halo", "org_id": "o".repeat(101) },
        "address": "a".repeat(501),
        "pin": { "latitude": 91.0 },
        "note": "n".repeat(4001),
    });
    let resp = h.op(Method::PUT, &site_path(&id), Some(bad)).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "invalid_site"),
        "{:?}",
        resp.body
    );
    let fields: Vec<&str> = resp.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "contact.email",
            "contact.first_name",
            "contact.last_name",
            "contact.phones[1]",
            "contact.phones[2]",
            "customer_id",
            "contract_id",
            "psa.org_id",
            "psa.system",
            "address",
            "pin.latitude",
            "pin.longitude",
            "note",
        ]
    );
    // Each message names its field in words a technician reads.
    let words = [
        "email",
        "first name",
        "last name",
        "Phone number 2",
        "Phone number 3",
        "Customer ID",
        "Contract ID",
        "PSA organization",
        "PSA system",
        "address",
        "latitude",
        "longitude",
        "note",
    ];
    for (field, word) in resp.body["fields"].as_array().unwrap().iter().zip(words) {
        let message = field["message"].as_str().unwrap();
        assert!(message.contains(word), "{}: {message}", field["field"]);
    }
    let message = resp.body["message"].as_str().unwrap();
    assert!(message.contains("13 invalid field(s)"), "{message}");

    assert_eq!(
        h.op(Method::GET, &site_path(&id), None).await.body,
        before,
        "a refused document changes nothing"
    );

    // A body that is not the document at all: the JSON error names the unknown field.
    let typo = h
        .op(
            Method::PUT,
            &site_path(&id),
            Some(json!({ "contact": { "mail": "jane@example.com" } })),
        )
        .await;
    assert_eq!(
        (typo.status, typo.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(typo.body["message"].as_str().unwrap().contains("mail"));
}

#[tokio::test]
async fn a_change_writes_a_history_line_with_the_actor_and_the_field_names_only() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.op(Method::PUT, &site_path(&id), Some(full_site())).await;
    let mut changed = h.op(Method::GET, &site_path(&id), None).await.body;
    changed["contact"]["email"] = json!("someone.else@example.org");
    changed["note"] = json!("New note with a secret 9876");
    h.op(Method::PUT, &site_path(&id), Some(changed.clone()))
        .await;
    // The same document again changes nothing and writes no line.
    h.op(Method::PUT, &site_path(&id), Some(changed)).await;

    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    let lines: Vec<&Value> = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "site_updated")
        .collect();
    assert_eq!(lines.len(), 2, "{:?}", history.body);
    assert_eq!(lines[0]["actor"], "user:admin (token 1)");
    assert_eq!(
        lines[0]["details"],
        "changed: contact.email, contact.first_name, contact.last_name, contact.phones, customer_id, \
         contract_id, psa.system, psa.org_id, address, pin, note"
    );
    assert_eq!(lines[1]["details"], "changed: contact.email, note");
    let all = history.body.to_string();
    for value in [
        "jane.doe@example.com",
        "someone.else@example.org",
        "9876",
        "C-1001",
        "Gate code",
    ] {
        assert!(!all.contains(value), "the history holds {value:?}");
    }
}

#[tokio::test]
async fn unknown_agents_are_404_and_a_token_is_required() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({}));
        let resp = h
            .op(method.clone(), &site_path("ag-doesnotexist"), body.clone())
            .await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method}"
        );
        let resp = h
            .call(method.clone(), &site_path(&id), body, Auth::None)
            .await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{method}"
        );
    }
    let resp = h
        .call(
            Method::PUT,
            &site_path(&id),
            Some(full_site()),
            Auth::Bearer("not-a-token"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.op(Method::GET, &site_path(&id), None).await.body,
        serde_json::to_value(SiteConfig::default()).unwrap(),
        "an unauthenticated PUT stored nothing"
    );
}

#[tokio::test]
async fn cleanup_keeps_the_site_and_deletion_removes_it() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let agent = AgentId::parse(&id).unwrap();
    let stored = h
        .op(Method::PUT, &site_path(&id), Some(full_site()))
        .await
        .body;

    let cleanup = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(cleanup.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.op(Method::GET, &site_path(&id), None).await.body,
        stored,
        "a cleanup keeps the customer's data"
    );

    let mut conn = h.app.store().conn().await.unwrap();
    assert!(sites::get(&mut conn, &agent).await.unwrap().is_some());
    drop(conn);
    let delete = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{:?}", delete.body);
    let mut conn = h.app.store().conn().await.unwrap();
    assert_eq!(
        sites::get(&mut conn, &agent).await.unwrap(),
        None,
        "deletion removes the site row"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sites")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    drop(conn);
    assert_eq!(
        h.op(Method::GET, &site_path(&id), None).await.status,
        StatusCode::NOT_FOUND
    );
}
