//! Subscription lifecycle through the API: deactivation at month end, expiry, reactivation, extension,
//! the 409s, broker effects, the sweep, the dev clock and the history of every action.

use axum::http::{Method, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::harness::{agent_lines, id_of, Auth, Harness, Options};

#[tokio::test]
async fn monthly_deactivation_takes_effect_at_the_start_of_next_month() {
    let h = Harness::new().await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 1, 31, 23, 0, 0).unwrap());
    let body = h.activate("gw").await;
    let id = id_of(&body);
    let secret = body["secret"].as_str().unwrap().to_owned();
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["status"], "deactivation_pending");
    assert_eq!(
        resp.body["subscription"]["deactivates_at"],
        "2026-02-01T00:00:00.000Z"
    );

    let again = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(
        (again.status, again.error()),
        (StatusCode::CONFLICT, "invalid_state")
    );
    assert!(again.body["message"]
        .as_str()
        .unwrap()
        .contains("deactivation_pending"));

    assert_eq!(h.app.sweep().await.unwrap(), 0);
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    assert_eq!(h.app.sweep().await.unwrap(), 1);
    assert_eq!(h.broker.calls().last().unwrap(), &format!("disable {id}"));
    let agent = h.agent(&id).await;
    assert_eq!(agent["status"], "deactivated");
    let status = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(&id, &secret),
        )
        .await;
    assert_eq!(status.body["status"], "deactivated");
    assert_eq!(h.app.sweep().await.unwrap(), 0, "nothing more is due");

    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/reactivate"),
            None,
        )
        .await;
    assert_eq!(resp.body["status"], "active");
    assert_eq!(h.broker.calls().last().unwrap(), &format!("enable {id}"));
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/reactivate"),
            None,
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "invalid_state")
    );
}

#[tokio::test]
async fn reactivating_a_pending_deactivation_cancels_it_without_broker_calls() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.op(
        Method::POST,
        &format!("/api/v1/agents/{id}/deactivate"),
        None,
    )
    .await;
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/reactivate"),
            None,
        )
        .await;
    assert_eq!(resp.body["status"], "active");
    assert_eq!(
        resp.body["subscription"]["deactivates_at"],
        serde_json::Value::Null
    );
    assert_eq!(h.broker.calls(), vec![format!("create {id}")]);
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    assert_eq!(h.app.sweep().await.unwrap(), 0);
}

#[tokio::test]
async fn prepaid_agents_expire_and_extension_revives_them() {
    let h = Harness::new().await;
    let id = id_of(&h.activate_with("kiosk", Some(1)).await);
    h.connect(&id, "kiosk", 0).await;
    assert_eq!(h.agent(&id).await["expires_at"], "2026-02-15T12:00:00.000Z");
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 15, 12, 0, 0).unwrap());
    assert_eq!(h.app.sweep().await.unwrap(), 1);
    let agent = h.agent(&id).await;
    assert_eq!(agent["status"], "expired");
    assert_eq!(agent["online"], false, "a disabled agent is kicked");
    assert_eq!(h.broker.calls().last().unwrap(), &format!("disable {id}"));

    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/reactivate"),
            None,
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "invalid_state")
    );
    assert!(resp.body["message"].as_str().unwrap().contains("expired"));

    let extend = |until: &str| {
        let (h, id, until) = (&h, id.clone(), until.to_owned());
        async move {
            h.op(
                Method::POST,
                &format!("/api/v1/agents/{id}/extend"),
                Some(json!({ "until": until })),
            )
            .await
        }
    };
    let resp = extend("2026-02-01").await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(resp.body["message"].as_str().unwrap().starts_with("until"));
    let resp = extend("2031-03-01").await;
    assert_eq!(
        resp.error(),
        "invalid_request",
        "more than five years ahead"
    );
    let resp = extend("next tuesday").await;
    assert!(resp.body["message"].as_str().unwrap().starts_with("until"));

    let resp = extend("2027-02-15").await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["status"], "active");
    assert_eq!(resp.body["expires_at"], "2027-02-15T00:00:00.000Z");
    assert_eq!(h.broker.calls().last().unwrap(), &format!("enable {id}"));
    let resp = extend("2027-06-01T12:30:00+02:00").await;
    assert_eq!(resp.body["expires_at"], "2027-06-01T10:30:00.000Z");
    assert_eq!(
        h.broker
            .calls()
            .iter()
            .filter(|c| c.starts_with("enable"))
            .count(),
        1
    );

    // Prepaid deactivation takes effect at the expiration date.
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(
        resp.body["subscription"]["deactivates_at"],
        "2027-06-01T10:30:00.000Z"
    );
}

#[tokio::test]
async fn monthly_plans_cannot_be_extended() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/extend"),
            Some(json!({ "until": "2026-06-01" })),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "invalid_state")
    );
    assert!(resp.body["message"].as_str().unwrap().contains("monthly"));
}

#[tokio::test]
async fn a_deactivated_agent_may_be_deleted_once_disconnected() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    h.op(
        Method::POST,
        &format!("/api/v1/agents/{id}/deactivate"),
        None,
    )
    .await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    h.app.sweep().await.unwrap();
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
}

#[tokio::test]
async fn the_dev_clock_moves_time_and_sweeps_at_once() {
    let h = Harness::with(Options {
        dev_clock: true,
        ..Options::default()
    })
    .await;
    let id = id_of(&h.activate("gw").await);
    h.op(
        Method::POST,
        &format!("/api/v1/agents/{id}/deactivate"),
        None,
    )
    .await;
    let resp = h
        .op(
            Method::PUT,
            "/api/v1/dev/clock",
            Some(json!({ "now": "2026-02-01T00:00:05Z" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["transitions"], 1);
    assert!(resp.body["now"]
        .as_str()
        .unwrap()
        .starts_with("2026-02-01T00:00:0"));
    assert_eq!(h.agent(&id).await["status"], "deactivated");
    let resp = h
        .op(
            Method::PUT,
            "/api/v1/dev/clock",
            Some(json!({ "now": "soon" })),
        )
        .await;
    assert_eq!(resp.error(), "invalid_request");
    let resp = h
        .call(
            Method::PUT,
            "/api/v1/dev/clock",
            Some(json!({ "now": "2026-03-01" })),
            Auth::None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let plain = Harness::new().await;
    let resp = plain
        .op(
            Method::PUT,
            "/api/v1/dev/clock",
            Some(json!({ "now": "2026-02-01" })),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::NOT_FOUND, "no_route")
    );
}

#[tokio::test]
async fn the_history_lists_every_action_with_its_actor() {
    let h = Harness::new().await;
    let monthly = id_of(&h.activate("gw").await);
    let prepaid = id_of(&h.activate_with("kiosk", Some(1)).await);
    let op = |method: Method, path: String, body: Option<serde_json::Value>| {
        let h = &h;
        async move {
            let resp = h.op(method, &path, body).await;
            assert!(resp.status.is_success(), "{path}: {:?}", resp.body);
        }
    };
    op(
        Method::PATCH,
        format!("/api/v1/agents/{monthly}"),
        Some(json!({ "name": "Shop" })),
    )
    .await;
    op(
        Method::POST,
        format!("/api/v1/agents/{monthly}/cleanup"),
        None,
    )
    .await;
    op(
        Method::POST,
        format!("/api/v1/agents/{monthly}/deactivate"),
        None,
    )
    .await;
    op(
        Method::POST,
        format!("/api/v1/agents/{monthly}/reactivate"),
        None,
    )
    .await;
    op(
        Method::POST,
        format!("/api/v1/agents/{monthly}/deactivate"),
        None,
    )
    .await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap());
    h.app.sweep().await.unwrap();
    op(
        Method::POST,
        format!("/api/v1/agents/{monthly}/reactivate"),
        None,
    )
    .await;
    op(
        Method::POST,
        format!("/api/v1/agents/{prepaid}/extend"),
        Some(json!({ "until": "2026-12-31" })),
    )
    .await;
    op(Method::DELETE, format!("/api/v1/agents/{monthly}"), None).await;

    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{prepaid}/history"),
            None,
        )
        .await;
    let lines: Vec<(String, String)> = resp.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        lines,
        [
            expect("activated", "agent"),
            expect("expired", "system"),
            expect("extended", "user:admin (token 1)")
        ]
    );

    let resp = h.op(Method::GET, "/api/v1/history", None).await;
    let entries = agent_lines(&resp.body);
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["activated", "expired", "extended", "deleted"],
        "monthly's own lines went with it"
    );
    let deleted = entries.last().unwrap();
    assert_eq!(deleted["agent_name"], "Shop");
    assert_eq!(deleted["agent_id"], monthly.as_str());
    assert_eq!(deleted["at"], "2026-02-20T00:00:00.000Z");
}

#[tokio::test]
async fn the_agent_history_before_deletion_has_every_line_in_order() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    for (method, suffix, body) in [
        (Method::PATCH, "", Some(json!({ "name": "Shop" }))),
        (Method::POST, "/cleanup", None),
        (Method::POST, "/deactivate", None),
        (Method::POST, "/reactivate", None),
        (Method::POST, "/deactivate", None),
    ] {
        let resp = h
            .op(method, &format!("/api/v1/agents/{id}{suffix}"), body)
            .await;
        assert!(resp.status.is_success(), "{suffix}: {:?}", resp.body);
    }
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    h.app.sweep().await.unwrap();
    let resp = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    let entries = resp.body["entries"].as_array().unwrap();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("activated", "agent"),
            ("renamed", "user:admin (token 1)"),
            ("cleanup", "user:admin (token 1)"),
            ("deactivation_requested", "user:admin (token 1)"),
            ("reactivated", "user:admin (token 1)"),
            ("deactivation_requested", "user:admin (token 1)"),
            ("deactivated", "system"),
        ]
    );
    assert!(entries[1]["details"].as_str().unwrap().contains("Shop"));
    assert!(entries[2]["details"].as_str().unwrap().contains("epoch 1"));
    assert_eq!(entries[6]["at"], "2026-02-01T00:00:00.000Z");
}

#[tokio::test]
async fn the_sweeper_task_applies_due_transitions_on_its_own_and_stops_when_told() {
    use std::sync::Arc;
    use std::time::Duration;

    use outpost_portal::api::rate_limit::ActivationLimiter;

    let h = Harness::new().await;
    let id = id_of(&h.activate_with("kiosk", Some(1)).await);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(outpost_portal::sweeper::run(
        h.app.clone(),
        Arc::new(ActivationLimiter::per_minute(10)),
        Duration::from_millis(20),
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(h.agent(&id).await["status"], "active");
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.agent(&id).await["status"] != "expired" {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper did not expire the agent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the sweeper stops when told")
        .unwrap();
}
