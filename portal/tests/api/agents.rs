//! Operator routes on agents: list/search/pagination, rename, cleanup and data epochs, delete, history.

use axum::http::{Method, StatusCode};
use outpost_cloud_link::protocol::{AgentMessage, Command, Presence, Report};
use outpost_portal::ingest::Disposition;
use serde_json::json;

use crate::harness::{agent_lines, id_of, Auth, Harness};

#[tokio::test]
async fn list_filters_searches_and_pages() {
    let h = Harness::new().await;
    let alpha = id_of(&h.activate("shop-alpha").await);
    h.clock.advance(chrono::Duration::seconds(1));
    let beta = id_of(&h.activate("Shop-Beta").await);
    h.clock.advance(chrono::Duration::seconds(1));
    let office = id_of(&h.activate("office_1").await);

    let all = h.op(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(all.body["total"], 3);
    let ids: Vec<&str> = all.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [alpha.as_str(), beta.as_str(), office.as_str()],
        "oldest first"
    );

    let shops = h.op(Method::GET, "/api/v1/agents?q=SHOP", None).await;
    assert_eq!(shops.body["total"], 2);
    // `_` is a literal, not a LIKE wildcard.
    let lit = h.op(Method::GET, "/api/v1/agents?q=e_1", None).await;
    assert_eq!(lit.body["total"], 1);
    let none = h.op(Method::GET, "/api/v1/agents?q=%25", None).await;
    assert_eq!(none.body["total"], 0);

    let page = h
        .op(Method::GET, "/api/v1/agents?limit=1&offset=1", None)
        .await;
    assert_eq!(page.body["total"], 3);
    let agents = page.body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["id"], beta.as_str());

    h.op(
        Method::POST,
        &format!("/api/v1/agents/{office}/deactivate"),
        None,
    )
    .await;
    let pending = h
        .op(
            Method::GET,
            "/api/v1/agents?status=deactivation_pending",
            None,
        )
        .await;
    assert_eq!(pending.body["total"], 1);
    assert_eq!(pending.body["agents"][0]["id"], office.as_str());
    // Neither shop ever connected: shown and filtered as activation pending, not active.
    let active = h
        .op(Method::GET, "/api/v1/agents?status=active&q=shop", None)
        .await;
    assert_eq!(active.body["total"], 0);
    let pending = h
        .op(
            Method::GET,
            "/api/v1/agents?status=activation_pending&q=shop",
            None,
        )
        .await;
    assert_eq!(pending.body["total"], 2);

    let bad = h
        .op(Method::GET, "/api/v1/agents?status=sleeping", None)
        .await;
    assert_eq!(
        (bad.status, bad.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(bad.body["message"].as_str().unwrap().starts_with("status"));
    let bad = h.op(Method::GET, "/api/v1/agents?limit=many", None).await;
    assert!(bad.body["message"].as_str().unwrap().starts_with("limit"));
    let bad = h.op(Method::GET, "/api/v1/agents?limit=100000", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_agents_are_404_everywhere() {
    let h = Harness::new().await;
    for (method, path) in [
        (Method::GET, "/api/v1/agents/ag-doesnotexist"),
        (Method::GET, "/api/v1/agents/NOT%20AN%20ID"),
        (Method::DELETE, "/api/v1/agents/ag-doesnotexist"),
        (Method::POST, "/api/v1/agents/ag-doesnotexist/cleanup"),
        (Method::POST, "/api/v1/agents/ag-doesnotexist/deactivate"),
        (Method::GET, "/api/v1/agents/ag-doesnotexist/history"),
        (Method::GET, "/api/v1/agents/ag-doesnotexist/data"),
        (Method::GET, "/api/v1/agents/ag-doesnotexist/commands/1"),
    ] {
        let resp = h.op(method.clone(), path, None).await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
    }
    let resp = h
        .op(
            Method::PATCH,
            "/api/v1/agents/ag-doesnotexist",
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = h.op(Method::GET, "/api/v1/nothing-here", None).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::NOT_FOUND, "no_route")
    );
}

#[tokio::test]
async fn rename_shows_at_once_and_queues_a_rename_command() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    let resp = h
        .op(
            Method::PATCH,
            &format!("/api/v1/agents/{id}"),
            Some(json!({ "name": "  Front desk " })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["name"], "Front desk");
    let sent = h.sent_to(&id);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].cmd,
        Command::Rename {
            name: "Front desk".into()
        }
    );
    let cmd = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands/{}", sent[0].id),
            None,
        )
        .await;
    assert_eq!(cmd.body["kind"], "rename");
    assert_eq!(cmd.body["status"], "pending");

    // Offline: queued, not sent, then sent on the next hello (with the name the portal knows).
    h.send(&id, 0, AgentMessage::Presence(Presence { online: false }))
        .await;
    h.op(
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        Some(json!({ "name": "Back office" })),
    )
    .await;
    assert_eq!(h.sent_to(&id).len(), 1);
    h.connect(&id, "Front desk", 0).await;
    let sent = h.sent_to(&id);
    let names: Vec<_> = sent.iter().map(|c| c.cmd.clone()).collect();
    assert_eq!(
        names[1..],
        [
            Command::Rename {
                name: "Front desk".into()
            },
            Command::Rename {
                name: "Back office".into()
            }
        ],
        "both pending renames re-sent in id order"
    );
    assert!(sent[1].id < sent[2].id);

    for bad in [
        json!({ "name": "" }),
        json!({ "name": "x".repeat(65) }),
        json!({ "name": "a\u{7}b" }),
        json!({}),
    ] {
        let resp = h
            .op(
                Method::PATCH,
                &format!("/api/v1/agents/{id}"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
        assert!(
            resp.body["message"].as_str().unwrap().contains("name"),
            "{:?}",
            resp.body
        );
    }
}

#[tokio::test]
async fn a_hello_with_another_name_gets_the_portals_name_back() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "something-else", 0).await;
    let sent = h.sent_to(&id);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].cmd, Command::Rename { name: "gw".into() });
}

#[tokio::test]
async fn cleanup_wipes_reports_bumps_the_epoch_and_drops_stale_reports() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    let report = |kind: &str, n: i64| {
        AgentMessage::Report(Report {
            kind: kind.into(),
            body: json!({ "n": n }),
        })
    };
    assert_eq!(
        h.send(&id, 0, report("devices", 1)).await,
        Disposition::Applied
    );
    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    let kinds: Vec<&str> = data.body["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["devices", "interfaces"]);
    assert_eq!(data.body["reports"][1]["body"][0]["name"], "lan0");

    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);
    assert_eq!(resp.body["data_epoch"], 1);
    let command_id = resp.body["command_id"].as_u64().unwrap();
    let sent = h.sent_to(&id);
    assert_eq!(sent.last().unwrap().id, command_id);
    assert_eq!(sent.last().unwrap().cmd, Command::Cleanup { epoch: 1 });

    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    assert_eq!(data.body, json!({ "data_epoch": 1, "reports": [] }));
    assert_eq!(h.agent(&id).await["data_epoch"], 1);
    assert_eq!(h.agent(&id).await["name"], "gw", "cleanup keeps the name");

    // A report queued before the agent ran the cleanup is dropped; the new epoch's is kept.
    assert_eq!(
        h.send(&id, 0, report("devices", 2)).await,
        Disposition::StaleEpoch
    );
    assert_eq!(
        h.send(&id, 0, crate::harness::hello("gw")).await,
        Disposition::StaleEpoch
    );
    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    assert_eq!(data.body["reports"], json!([]));
    assert_eq!(
        h.send(&id, 1, report("devices", 3)).await,
        Disposition::Applied
    );
    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    assert_eq!(data.body["reports"][0]["epoch"], 1);
    assert_eq!(data.body["reports"][0]["body"], json!({ "n": 3 }));
}

/// The ingest checks a report's epoch against the agent row it read first; a cleanup committing between
/// that read and the write must still keep the report out (the write itself re-checks the epoch), and the
/// listing shows only rows of the current epoch.
#[tokio::test]
async fn a_cleanup_between_the_epoch_check_and_the_write_keeps_the_stale_report_out() {
    use outpost_cloud_link::AgentId;
    use outpost_portal::store::{agents, reports};
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let agent = AgentId::parse(&id).unwrap();
    // The ingest reads the agent row: epoch 0.
    let read = {
        let mut conn = h.app.store().conn().await.unwrap();
        agents::get(&mut conn, &agent).await.unwrap().unwrap()
    };
    assert_eq!(read.data_epoch, 0);
    // A cleanup commits meanwhile.
    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);
    // Then the ingest writes what it checked against epoch 0: dropped.
    let body = json!({ "n": 1 });
    let outcome =
        outpost_portal::ingest::store_report(&h.app, &agent, "devices", read.data_epoch, &body)
            .await
            .unwrap();
    assert_eq!(outcome, Disposition::StaleEpoch);
    let stored: i64 = {
        let mut conn = h.app.store().conn().await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE agent_id = ?")
            .bind(&id)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    assert_eq!(stored, 0, "the stale report reached the reports table");
    // The store call itself refuses it too (the location report uses it directly).
    {
        let mut conn = h.app.store().conn().await.unwrap();
        let now = h.app.now();
        assert!(
            !reports::upsert(&mut conn, &agent, "devices", 0, &body, now)
                .await
                .unwrap()
        );
        // A row of an older epoch already in the table (an older portal wrote it) is not listed.
        sqlx::query(
            "INSERT INTO reports (agent_id, kind, epoch, body, updated_at) VALUES (?, 'old', 0, '{}', 0)",
        )
        .bind(&id)
        .execute(&mut *conn)
        .await
        .unwrap();
        assert!(reports::get(&mut conn, &agent, "old")
            .await
            .unwrap()
            .is_none());
    }
    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    assert_eq!(data.body, json!({ "data_epoch": 1, "reports": [] }));
    // The current epoch's report is stored.
    let outcome = outpost_portal::ingest::store_report(&h.app, &agent, "devices", 1, &body)
        .await
        .unwrap();
    assert_eq!(outcome, Disposition::Applied);
    let data = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/data"), None)
        .await;
    assert_eq!(data.body["reports"][0]["kind"], "devices");
    assert_eq!(data.body["reports"][0]["epoch"], 1);
}

fn hello_running_settings(name: &str, version: Option<u64>) -> AgentMessage {
    let AgentMessage::Hello(mut hl) = crate::harness::hello(name) else {
        unreachable!()
    };
    hl.settings_version = version;
    AgentMessage::Hello(hl)
}

fn settings_commands(h: &Harness, id: &str) -> Vec<(u64, serde_json::Value)> {
    h.sent_to(id)
        .into_iter()
        .filter_map(|e| match e.cmd {
            Command::ApplySettings { doc } => Some((e.id, doc)),
            _ => None,
        })
        .collect()
}

/// Cleanup removes the configuration made for the agent (its settings document) with its data, and keeps
/// its name, subscription and site (customer) information. A hello still naming an old settings version
/// neither brings the document back nor gets one pushed; `GET .../settings` answers as for an agent that
/// never had settings; a document queued before the cleanup is never sent and a late acknowledgement of
/// one sent before it changes nothing.
#[tokio::test]
async fn cleanup_removes_the_agents_settings_and_keeps_name_subscription_and_site() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let never = id_of(&h.activate("other").await);
    h.connect(&id, "gw", 0).await;
    h.connect(&never, "other", 0).await;
    let settings_path = format!("/api/v1/agents/{id}/settings");
    let site = json!({ "customer_id": "C-1001", "note": "Gate code 1234." });
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/site"),
            Some(site),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let resp = h
        .op(
            Method::PUT,
            &settings_path,
            Some(json!({ "settings": { "heartbeat_secs": 12 } })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let sent = settings_commands(&h, &id);
    assert_eq!(sent.len(), 1);
    let v1_command = sent[0].0;
    h.send(
        &id,
        0,
        AgentMessage::Ack(outpost_cloud_link::protocol::Ack {
            command_id: v1_command,
            outcome: outpost_cloud_link::protocol::Outcome::Done,
            result: Some(json!({"version": 1, "pinned": [], "restart": false})),
        }),
    )
    .await;
    h.send(&id, 0, hello_running_settings("gw", Some(1))).await;
    // Version 2 goes out while the agent is offline: queued, never sent.
    h.send_seq(
        &id,
        0,
        0,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let resp = h
        .op(
            Method::PUT,
            &settings_path,
            Some(json!({ "settings": { "heartbeat_secs": 20 }, "base_version": 1 })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["version"], 2);
    assert_eq!(settings_commands(&h, &id).len(), 1, "offline: v2 queued");
    let before = h.agent(&id).await;

    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);

    // Settings gone: the record is that of an agent that never had settings.
    let mut cleaned = h.op(Method::GET, &settings_path, None).await.body;
    let mut fresh = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{never}/settings"),
            None,
        )
        .await
        .body;
    assert_eq!(cleaned["version"], 0, "{cleaned}");
    assert_eq!(cleaned["state"], "none");
    assert_eq!(cleaned["settings"], json!({}));
    // The never-configured agent said hello without a settings version; the cleaned one has not said
    // hello since: neither runs a portal document the record knows of.
    cleaned["running_version"] = serde_json::Value::Null;
    fresh["running_version"] = serde_json::Value::Null;
    assert_eq!(cleaned, fresh);
    {
        let mut conn = h.app.store().conn().await.unwrap();
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_settings WHERE agent_id = ?")
                .bind(&id)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(rows, 0, "the settings row survived the cleanup");
    }
    // Name, subscription and site stay.
    let after = h.agent(&id).await;
    assert_eq!(after["name"], "gw");
    assert_eq!(after["subscription"], before["subscription"]);
    assert_eq!(after["status"], before["status"]);
    let site = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/site"), None)
        .await;
    assert_eq!(site.body["customer_id"], "C-1001");
    assert_eq!(site.body["note"], "Gate code 1234.");
    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    let cleanup_line = agent_lines(&history.body)
        .into_iter()
        .find(|e| e["action"] == "cleanup")
        .unwrap();
    let details = cleanup_line["details"].as_str().unwrap();
    assert!(details.contains("settings v2 removed"), "{details}");
    assert!(
        details.contains("1 unsent settings command(s) cancelled"),
        "{details}"
    );

    // The agent comes back still running v1 (it has not run the cleanup yet), then newer: nothing is
    // pushed, nothing comes back; only the cleanup command goes out.
    h.send(&id, 0, hello_running_settings("gw", Some(1))).await;
    h.send(&id, 0, hello_running_settings("gw", Some(7))).await;
    assert_eq!(
        settings_commands(&h, &id).len(),
        1,
        "a settings document was pushed after the cleanup"
    );
    assert!(h
        .sent_to(&id)
        .iter()
        .any(|e| matches!(e.cmd, Command::Cleanup { epoch: 1 })));
    // A late acknowledgement of v1 (sent before the cleanup) changes nothing.
    h.send(
        &id,
        1,
        AgentMessage::Ack(outpost_cloud_link::protocol::Ack {
            command_id: v1_command,
            outcome: outpost_cloud_link::protocol::Outcome::Done,
            result: Some(json!({"version": 1, "pinned": ["discovery.retries"], "restart": true})),
        }),
    )
    .await;
    let r = h.op(Method::GET, &settings_path, None).await.body;
    assert_eq!(r["version"], 0, "{r}");
    assert_eq!(r["state"], "none");
    assert_eq!(r["settings"], json!({}));
    assert!(r["applied_version"].is_null(), "{r}");
    assert_eq!(r["pinned"], json!([]));
    // New settings start again at version 1 and are sent.
    let resp = h
        .op(
            Method::PUT,
            &settings_path,
            Some(json!({ "settings": { "heartbeat_secs": 30 } })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["version"], 1);
    assert_eq!(settings_commands(&h, &id).len(), 2);
}

#[tokio::test]
async fn cleanup_of_an_offline_agent_is_sent_at_its_next_hello() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(h.sent_to(&id).is_empty());
    h.connect(&id, "gw", 0).await;
    let sent = h.sent_to(&id);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].cmd, Command::Cleanup { epoch: 1 });
    // The agent acknowledges; nothing more happens and the command is done.
    h.send(
        &id,
        1,
        AgentMessage::Ack(outpost_cloud_link::protocol::Ack {
            command_id: sent[0].id,
            outcome: outpost_cloud_link::protocol::Outcome::Done,
            result: None,
        }),
    )
    .await;
    let cmd = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{id}/commands/{}", sent[0].id),
            None,
        )
        .await;
    assert_eq!(cmd.body["status"], "done");
    assert!(cmd.body["acked_at"].is_string());
}

#[tokio::test]
async fn delete_refuses_while_online_then_leaves_a_tombstone() {
    let h = Harness::new().await;
    let body = h.activate("gw").await;
    let id = id_of(&body);
    let secret = body["secret"].as_str().unwrap().to_owned();
    h.connect(&id, "gw", 0).await;
    h.send(
        &id,
        0,
        AgentMessage::Report(Report {
            kind: "devices".into(),
            body: json!([]),
        }),
    )
    .await;
    // Data in as many of the agent's tables as the API reaches: settings, site, a rename, a cleanup.
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/api/v1/agents/{id}/settings"),
            Some(json!({ "settings": { "heartbeat_secs": 12 } })),
        ),
        (
            Method::PUT,
            format!("/api/v1/agents/{id}/site"),
            Some(json!({ "customer_id": "C-1", "note": "n" })),
        ),
        (
            Method::PATCH,
            format!("/api/v1/agents/{id}"),
            Some(json!({ "name": "gw" })),
        ),
        (Method::POST, format!("/api/v1/agents/{id}/cleanup"), None),
    ] {
        let resp = h.op(method, &path, body).await;
        assert!(resp.status.is_success(), "{path}: {:?}", resp.body);
    }
    h.send(&id, 1, crate::harness::hello("gw")).await;
    // A support engineer let in to this one agent.
    let support = h
        .add_user(
            "sam@operator.example",
            outpost_portal::access::Role::Support,
            None,
            "correct horse battery staple",
        )
        .await;
    let grant = h
        .op(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({ "user": support, "scope": "agent", "agent": id })),
        )
        .await;
    assert_eq!(grant.status, StatusCode::CREATED, "{:?}", grant.body);
    let found = h.left_after_deletion(&id).await;
    for place in [
        "agents.id",
        "reports.agent_id",
        "commands.agent_id",
        "history.agent_id",
        "agent_settings.agent_id",
        "sites.agent_id",
        "support_grants.agent_id",
    ] {
        assert!(
            found.iter().any(|f| f == place),
            "the scan misses {place}: {found:?}"
        );
    }

    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "agent_connected")
    );
    assert!(!h.broker.calls().iter().any(|c| c.starts_with("delete")));

    h.send_seq(
        &id,
        0,
        0,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    assert_eq!(h.broker.calls().last().unwrap(), &format!("delete {id}"));

    let resp = h
        .op(Method::GET, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(&id, &secret),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::GONE, "agent_deleted")
    );
    let resp = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(&id, "guess"),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "the tombstone still checks the secret"
    );

    let history = h.op(Method::GET, "/api/v1/history", None).await;
    let entries = agent_lines(&history.body);
    let last = entries.last().unwrap();
    assert_eq!(last["action"], "deleted");
    assert_eq!(last["agent_name"], "gw");
    assert_eq!(last["actor"], "user:admin (token 1)");
    assert_eq!(entries.len(), 1, "the agent's other lines went with it");
    assert_eq!(
        h.left_after_deletion(&id).await,
        Vec::<String>::new(),
        "the deleted agent's id is still in these tables"
    );

    let late = h
        .send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    assert_eq!(late, Disposition::UnknownAgent);
    let list = h.op(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list.body["total"], 0);
}

#[tokio::test]
async fn an_agent_silent_past_offline_after_counts_as_offline_and_can_be_deleted() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    assert_eq!(h.agent(&id).await["online"], true);
    h.clock.advance(chrono::Duration::seconds(121));
    assert_eq!(h.agent(&id).await["online"], false);
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
}
