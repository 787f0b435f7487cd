//! Commands through the API: ping with a long-poll wait that returns as soon as the ack is ingested.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use outpost_cloud_link::protocol::{Ack, AgentMessage, Command, Outcome};
use serde_json::json;

use crate::harness::{id_of, Harness};

#[tokio::test]
async fn ping_wait_returns_as_soon_as_the_ack_is_ingested() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    let started = Instant::now();
    let path = format!("/api/v1/agents/{id}/commands?wait_ms=10000");
    let request = h.op(Method::POST, &path, Some(json!({ "type": "ping" })));
    let agent = async {
        let (to, cmd) = h.sent_rx.lock().await.recv().await.unwrap();
        assert_eq!(to.as_str(), id);
        assert_eq!(cmd.cmd, Command::Ping);
        let ack = AgentMessage::Ack(Ack {
            command_id: cmd.id,
            outcome: Outcome::Done,
            result: None,
        });
        h.send(&id, 0, ack).await;
        cmd.id
    };
    let (resp, command_id) = tokio::join!(request, agent);
    let elapsed = started.elapsed();
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["id"], command_id);
    assert_eq!(resp.body["kind"], "ping");
    assert_eq!(resp.body["status"], "done");
    assert!(
        elapsed < Duration::from_secs(3),
        "waited {elapsed:?} instead of returning on the ack"
    );
}

#[tokio::test]
async fn ping_without_ack_stays_pending_then_records_the_outcome() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    let started = Instant::now();
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/commands?wait_ms=100"),
            Some(json!({ "type": "ping" })),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.body["status"], "pending");
    assert_eq!(resp.body["acked_at"], serde_json::Value::Null);
    let cid = resp.body["id"].as_u64().unwrap();

    let failed = Outcome::failed("busy");
    h.send(
        &id,
        0,
        AgentMessage::Ack(Ack {
            command_id: cid,
            outcome: failed,
            result: None,
        }),
    )
    .await;
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands/{cid}"),
            None,
        )
        .await;
    assert_eq!(resp.body["status"], "failed");
    assert_eq!(resp.body["message"], "busy");

    // Without wait_ms the answer is immediate.
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/commands"),
            Some(json!({ "type": "ping" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(
        resp.body["id"].as_u64().unwrap() > cid,
        "command ids increase"
    );
}

#[tokio::test]
async fn only_ping_is_accepted_and_bad_waits_are_named() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/commands"),
            Some(json!({ "type": "cleanup" })),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(resp.body["message"].as_str().unwrap().starts_with("type"));
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/commands?wait_ms=soon"),
            Some(json!({ "type": "ping" })),
        )
        .await;
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .starts_with("wait_ms"));
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands/999"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // The message says where the agent's commands are listed.
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "GET /api/v1/agents/{id}/commands lists its commands"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_ping_to_an_offline_agent_is_delivered_at_its_next_hello() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/commands"),
            Some(json!({ "type": "ping" })),
        )
        .await;
    assert!(h.sent_to(&id).is_empty());
    h.connect(&id, "gw", 0).await;
    let sent = h.sent_to(&id);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, resp.body["id"].as_u64().unwrap());
}

#[tokio::test]
async fn the_command_list_is_newest_first_and_bounded() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let mut sent = Vec::new();
    for _ in 0..3 {
        let resp = h
            .op(
                Method::POST,
                &format!("/api/v1/agents/{id}/commands"),
                Some(json!({ "type": "ping" })),
            )
            .await;
        sent.push(resp.body["id"].as_u64().unwrap());
    }
    let list = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/commands"), None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<u64> = list.body["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    sent.reverse();
    assert_eq!(ids, sent);
    let one = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands?limit=1"),
            None,
        )
        .await;
    assert_eq!(one.body["commands"].as_array().unwrap().len(), 1);
    let bad = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands?limit=x"),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = h
        .op(Method::GET, "/api/v1/agents/ag-nosuchagent1/commands", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
