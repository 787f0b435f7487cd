//! Settings pushed from the portal and diagnostics from the agent's page, end to end: a real portal and
//! broker and an agent started as its service starts it (`launch`).

use std::time::Duration;

use anyhow::{Context, Result};
use outpost_tests::{wait_for, Agent, Portal, FAST_CONFIG};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn online(config: &str, launched: bool) -> Result<(Portal, Agent, String)> {
    let portal = Portal::start().await?;
    let mut agent = Agent::with_config(config)?;
    let id = agent.activate_new(&portal)?;
    if launched {
        agent.start_launched(&[])?;
    } else {
        agent.start()?;
    }
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await
        .with_context(|| agent.log_tail())?;
    Ok((portal, agent, id))
}

async fn put_settings(portal: &Portal, id: &str, settings: Value) -> Result<(StatusCode, Value)> {
    portal
        .api(
            Method::PUT,
            &format!("/agents/{id}/settings"),
            Some(json!({ "settings": settings })),
        )
        .await
}

async fn wait_settings(
    portal: &Portal,
    id: &str,
    agent: &Agent,
    state: &str,
    version: u64,
) -> Result<Value> {
    wait_for(
        &format!("settings v{version} {state}"),
        Duration::from_secs(30),
        || async {
            let (_, s) = portal
                .api(Method::GET, &format!("/agents/{id}/settings"), None)
                .await?;
            let v = if state == "applied" {
                &s["applied_version"]
            } else {
                &s["version"]
            };
            Ok((s["state"] == state && v == version).then_some(s))
        },
    )
    .await
    .with_context(|| agent.log_tail())
}

fn starts(agent: &Agent) -> usize {
    std::fs::read_to_string(agent.log_path())
        .unwrap_or_default()
        .matches("agent starting")
        .count()
}

/// Messages the portal received from the agent over `window`.
async fn messages_over(portal: &Portal, id: &str, window: Duration) -> Result<u64> {
    let before = portal.agent(id).await?["link"]["received"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(window).await;
    let after = portal.agent(id).await?["link"]["received"]
        .as_u64()
        .unwrap_or(0);
    Ok(after - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_apply_live_where_they_can_pinned_ones_stay_and_the_rest_restart_the_agent(
) -> Result<()> {
    // The local file pins the outbox size: the portal may not change it.
    let config = format!("pinned = [\"outbox_max_bytes\"]\n{FAST_CONFIG}");
    let (portal, agent, id) = online(&config, true).await?;
    let fast = messages_over(&portal, &id, Duration::from_secs(3)).await?;
    assert!(
        fast >= 8,
        "heartbeats every 0.2 s should give ~15 messages in 3 s, got {fast}"
    );

    // Live: the heartbeat slows down without a restart; the pinned outbox size is reported as kept.
    let (status, body) = put_settings(
        &portal,
        &id,
        json!({ "heartbeat_secs": 2, "outbox_max_bytes": 65536 }),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = wait_settings(&portal, &id, &agent, "applied", 1).await?;
    assert_eq!(s["pinned"], json!(["outbox_max_bytes"]), "{s}");
    assert_eq!(s["restart"], false);
    assert_eq!(starts(&agent), 1, "no restart for live settings");
    let slow = messages_over(&portal, &id, Duration::from_secs(4)).await?;
    assert!(
        slow <= 4,
        "heartbeats every 2 s should give ~2 messages in 4 s, got {slow}"
    );
    let stored: Value =
        serde_json::from_slice(&std::fs::read(agent.state().join("settings.json"))?)?;
    assert_eq!(stored["version"], 1);

    // Not live: the agent stores the settings, acknowledges, restarts under its launcher, and comes back
    // running version 2 of the settings.
    let (status, body) = put_settings(
        &portal,
        &id,
        json!({ "heartbeat_secs": 2, "discovery": { "sweep_interval_secs": 120 } }),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = wait_settings(&portal, &id, &agent, "applied", 2).await?;
    assert_eq!(s["restart"], true, "{s}");
    wait_for("the agent to restart", Duration::from_secs(30), || async {
        Ok((starts(&agent) >= 2).then_some(()))
    })
    .await
    .with_context(|| agent.log_tail())?;
    portal
        .wait_agent(&id, "back with settings v2", |a| {
            a["online"] == true && a["settings_version"] == 2
        })
        .await
        .with_context(|| agent.log_tail())?;
    let history = portal.history(&id).await?.to_string();
    assert!(history.contains("settings v2"), "{history}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_agent_refuses_leave_its_configuration_as_it_was() -> Result<()> {
    let (portal, agent, id) = online(FAST_CONFIG, true).await?;
    // The portal itself refuses what the shared rules catch, naming the field.
    let (status, body) =
        put_settings(&portal, &id, json!({ "discovery": { "retries": 50 } })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "discovery.retries", "{body}");

    let (status, _) = put_settings(&portal, &id, json!({ "heartbeat_secs": 1 })).await?;
    assert_eq!(status, StatusCode::OK);
    wait_settings(&portal, &id, &agent, "applied", 1).await?;

    // What only the agent can judge: a sweep range larger than it accepts.
    let (status, body) = put_settings(
        &portal,
        &id,
        json!({ "interfaces": [{ "name": "lo", "cidr": "10.0.0.0/8" }] }),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = wait_settings(&portal, &id, &agent, "refused", 2).await?;
    assert_eq!(s["error"]["code"], "invalid-settings", "{s}");
    let message = s["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("interfaces") && message.contains("10.0.0.0/8"),
        "{message}"
    );
    // It kept version 1, on disk too, and did not restart.
    assert_eq!(s["applied_version"], 1, "{s}");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(agent.state().join("settings.json"))?)?;
    assert_eq!(stored["version"], 1);
    assert_eq!(starts(&agent), 1);
    assert_eq!(portal.agent(&id).await?["online"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_page_reads_its_health_and_log_lines_and_restarts_it() -> Result<()> {
    let (portal, agent, id) = online(FAST_CONFIG, true).await?;
    let health = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/health"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(health["version"], portal.agent(&id).await?["version"]);
    assert!(
        health["rss_bytes"].as_u64().unwrap_or(0) > 1 << 20,
        "{health}"
    );
    assert!(
        health["uptime_s"].is_u64() && health["outbox_depth"].is_u64(),
        "{health}"
    );
    assert!(
        health["interfaces"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{health}"
    );

    let logs = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/logs?lines=50"),
            None,
            StatusCode::OK,
        )
        .await?;
    let lines = logs["lines"].as_array().context("no lines")?;
    assert!(!lines.is_empty() && lines.len() <= 50, "{logs}");
    let text = logs.to_string();
    assert!(text.contains("connected to the broker"), "{text}");
    let secret = agent.identity()?["secret"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        secret.len() > 8 && !text.contains(&secret),
        "the broker secret is in the log lines"
    );

    let asked = std::time::Instant::now();
    portal
        .api_ok(
            Method::POST,
            &format!("/agents/{id}/restart"),
            None,
            StatusCode::ACCEPTED,
        )
        .await?;
    wait_for("the agent to restart", Duration::from_secs(30), || async {
        Ok((starts(&agent) >= 2).then_some(()))
    })
    .await
    .with_context(|| agent.log_tail())?;
    portal
        .wait_agent(&id, "back online", |a| a["online"] == true)
        .await?;
    let after = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/health"),
            None,
            StatusCode::OK,
        )
        .await?;
    // A new process: its uptime counts from the restart.
    let since = asked.elapsed().as_secs();
    assert!(
        after["uptime_s"].as_u64().unwrap_or(u64::MAX) <= since + 1,
        "{after} ({since} s since the restart)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_launcher_a_restart_exits_for_the_service_manager() -> Result<()> {
    let (portal, mut agent, id) = online(FAST_CONFIG, false).await?;
    portal
        .api_ok(
            Method::POST,
            &format!("/agents/{id}/restart"),
            None,
            StatusCode::ACCEPTED,
        )
        .await?;
    // 75: systemd (Restart=on-failure) and procd start it again.
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).await?, Some(75));
    Ok(())
}
