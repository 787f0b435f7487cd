//! Rename, cleanup (online and offline, with the data epoch) and deletion, end to end.

use std::time::Duration;

use anyhow::{Context, Result};
use outpost_cloud_link::protocol::{Command, CommandEnvelope};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::{topics, AgentId};
use outpost_tests::{wait_for, Agent, Portal};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::mqtt;

async fn command_done(portal: &Portal, id: &str, command_id: u64) -> Result<Value> {
    wait_for(
        "the command's acknowledgement",
        Duration::from_secs(20),
        || async {
            let c = portal
                .api_ok(
                    Method::GET,
                    &format!("/agents/{id}/commands/{command_id}"),
                    None,
                    StatusCode::OK,
                )
                .await?;
            Ok((c["status"] != "pending").then_some(c))
        },
    )
    .await
}

async fn running_agent(portal: &Portal) -> Result<(Agent, String)> {
    let mut agent = Agent::new()?;
    let id = agent.activate_new(portal)?;
    agent.start()?;
    portal
        .wait_agent(&id, "the agent online", |a| a["online"] == true)
        .await
        .with_context(|| agent.log_tail())?;
    Ok((agent, id))
}

async fn wait_agent_name(agent: &Agent, name: &str) -> Result<()> {
    wait_for(
        &format!("the agent to call itself {name:?}"),
        Duration::from_secs(10),
        || async { Ok((agent.status()?["name"] == name).then_some(())) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_reaches_the_agent_and_both_sides_show_it() -> Result<()> {
    let portal = Portal::start().await?;
    let (agent, id) = running_agent(&portal).await?;

    let renamed = portal.rename(&id, "Dental clinic").await?;
    assert_eq!(renamed["name"], "Dental clinic");
    assert_eq!(portal.agent(&id).await?["name"], "Dental clinic");
    wait_agent_name(&agent, "Dental clinic")
        .await
        .with_context(|| agent.log_tail())?;

    let (status, body) = portal
        .api(
            Method::PATCH,
            &format!("/agents/{id}"),
            Some(json!({ "name": "  " })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("name")),
        "{body}"
    );

    let (status, _) = portal
        .api(
            Method::PATCH,
            "/agents/ag-doesnotexist",
            Some(json!({ "name": "x" })),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let history = portal.history(&id).await?;
    let rename = history["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "renamed"))
        .with_context(|| format!("no renamed line in {history}"))?;
    // The harness's token acts as the install's first company admin.
    assert_eq!(rename["actor"], "user:admin (token 1)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_runs_once_even_when_redelivered_and_after_a_restart() -> Result<()> {
    let portal = Portal::start().await?;
    let (mut agent, id) = running_agent(&portal).await?;
    portal.rename(&id, "First").await?;
    wait_agent_name(&agent, "First").await?;

    // Speak as the portal: the broker lets its admin publish commands.
    let (user, pass) = portal.admin_credentials()?;
    let mut cfg = SessionConfig::for_agent(
        &format!("127.0.0.1:{}", portal.mqtts),
        &AgentId::parse("test-admin")?,
        &pass,
        std::fs::read(portal.ca_path())?,
    );
    cfg.username = user;
    cfg.client_id = "e2e-admin".into();
    cfg.clean_session = true;
    cfg.last_will = None;
    let mut admin = mqtt::connect(cfg).await?;
    let topic = topics::commands(&AgentId::parse(&id)?);

    // The rename's id, found from the command list, redelivered with another name: must not run.
    let list = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/commands"),
            None,
            StatusCode::OK,
        )
        .await?;
    let rename_id = list["commands"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "rename"))
        .and_then(|c| c["id"].as_u64())
        .with_context(|| format!("no rename command in {list}"))?;
    admin
        .publish(
            &topic,
            CommandEnvelope::new(
                rename_id,
                Command::Rename {
                    name: "Again".into(),
                },
            )
            .encode(),
        )
        .await?;
    // A new id does run: proves the redelivery path reaches the agent.
    admin
        .publish(
            &topic,
            CommandEnvelope::new(
                rename_id + 1_000,
                Command::Rename {
                    name: "Fresh".into(),
                },
            )
            .encode(),
        )
        .await?;
    wait_agent_name(&agent, "Fresh").await?;
    admin
        .publish(
            &topic,
            CommandEnvelope::new(
                rename_id,
                Command::Rename {
                    name: "Again".into(),
                },
            )
            .encode(),
        )
        .await?;

    agent.stop();
    agent.start()?;
    portal
        .wait_agent(&id, "back online", |a| a["online"] == true)
        .await?;
    // After the restart (which may also take the portal's name back), a new id still runs ...
    let rename = |cid: u64, name: &str| {
        CommandEnvelope::new(cid, Command::Rename { name: name.into() }).encode()
    };
    admin
        .publish(&topic, rename(rename_id + 3_000, "Final"))
        .await?;
    wait_agent_name(&agent, "Final").await?;
    // ... and the ids it ran before the restart do not run again.
    admin.publish(&topic, rename(rename_id, "Again")).await?;
    admin
        .publish(&topic, rename(rename_id + 1_000, "Replayed"))
        .await?;
    admin
        .publish(
            &topic,
            CommandEnvelope::new(rename_id + 2_000, Command::Ping).encode(),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        agent.status()?["name"],
        "Final",
        "a command id ran twice:\n{}",
        agent.log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_wipes_data_on_both_sides_keeps_name_and_drops_stale_reports() -> Result<()> {
    let portal = Portal::start().await?;
    let (mut agent, id) = running_agent(&portal).await?;
    portal.rename(&id, "Kept name").await?;
    wait_agent_name(&agent, "Kept name").await?;

    let has_report = |data: &Value, kind: &str| {
        data["reports"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["kind"] == kind))
    };
    wait_for(
        "the hello's interfaces report",
        Duration::from_secs(10),
        || async {
            let d = portal.reports(&id).await?;
            Ok(has_report(&d, "interfaces").then_some(()))
        },
    )
    .await?;

    // Online cleanup.
    let cleanup = portal.cleanup(&id).await?;
    assert_eq!(cleanup["data_epoch"], 1, "{cleanup}");
    let done = command_done(
        &portal,
        &id,
        cleanup["command_id"].as_u64().context("no command_id")?,
    )
    .await?;
    assert_eq!(done["status"], "done", "{done}");
    let record = portal.agent(&id).await?;
    assert_eq!(record["name"], "Kept name");
    assert_eq!(record["status"], "active");
    assert_eq!(record["data_epoch"], 1);
    assert_eq!(agent.status()?["name"], "Kept name");
    assert_eq!(agent.status()?["state"], "active");

    assert_eq!(agent.stop(), Some(0));
    portal
        .wait_agent(&id, "offline", |a| a["online"] == false)
        .await?;

    // Speaking as the stopped agent: a report from before the cleanup (epoch 0) is dropped, one from the
    // current epoch is kept.
    let mut as_agent = mqtt::connect(mqtt::agent_session(&agent.identity()?)?).await?;
    let topic = mqtt::report_topic(&id)?;
    as_agent
        .publish(&topic, mqtt::report(0, 0, "stale"))
        .await?;
    as_agent
        .publish(&topic, mqtt::report(0, 1, "current"))
        .await?;
    let data = wait_for(
        "the current-epoch report",
        Duration::from_secs(10),
        || async {
            let d = portal.reports(&id).await?;
            Ok(has_report(&d, "current").then_some(d))
        },
    )
    .await?;
    assert!(
        !has_report(&data, "stale"),
        "a stale-epoch report came back: {data}"
    );
    let epochs_ok = data["reports"]
        .as_array()
        .is_some_and(|r| r.iter().all(|r| r["epoch"] == 1));
    assert!(epochs_ok, "pre-cleanup data survived: {data}");
    drop(as_agent);
    // The probe took the agent's place; make sure the broker has let go of it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Offline cleanup: queued, applied when the agent next connects.
    let cleanup = portal.cleanup(&id).await?;
    assert_eq!(cleanup["data_epoch"], 2);
    let cid = cleanup["command_id"].as_u64().context("no command_id")?;
    let pending = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/commands/{cid}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(pending["status"], "pending");
    let d = portal.reports(&id).await?;
    assert!(d["reports"].as_array().is_some_and(|r| r.is_empty()), "{d}");
    agent.start()?;
    let done = command_done(&portal, &id, cid)
        .await
        .with_context(|| agent.log_tail())?;
    assert_eq!(done["status"], "done");
    assert_eq!(agent.status()?["name"], "Kept name");

    let history = portal.history(&id).await?;
    let cleanups = history["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["action"] == "cleanup").count());
    assert_eq!(cleanups, 2, "{history}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_is_refused_while_connected_and_the_deleted_agent_resets_itself() -> Result<()> {
    let portal = Portal::start().await?;
    let (mut agent, id) = running_agent(&portal).await?;
    let name = portal.agent(&id).await?["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (status, body) = portal
        .api(Method::DELETE, &format!("/agents/{id}"), None)
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("agent_connected")),
        "{body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(portal.agent(&id).await?["status"], "active");

    assert_eq!(agent.stop(), Some(0));
    portal
        .wait_agent(&id, "offline", |a| a["online"] == false)
        .await?;
    portal
        .api_ok(
            Method::DELETE,
            &format!("/agents/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    let (status, _) = portal
        .api(Method::GET, &format!("/agents/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = portal
        .api(Method::GET, &format!("/agents/{id}/data"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let list = portal
        .api_ok(Method::GET, "/agents", None, StatusCode::OK)
        .await?;
    assert_eq!(list["total"], 0, "{list}");
    let history = portal
        .api_ok(Method::GET, "/history", None, StatusCode::OK)
        .await?;
    let entries = history["entries"].as_array().context("no entries")?;
    let deleted: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{history}");
    assert!(deleted[0]["agent_name"] == name.as_str(), "{history}");
    assert!(
        entries
            .iter()
            .filter(|e| e["agent_id"] == id.as_str())
            .all(|e| e["action"] == "deleted"),
        "of the deleted agent's history only the deletion line stays: {history}"
    );

    // The agent can no longer connect; it learns why, wipes its state and is ready for a new code.
    agent.start()?;
    let code = agent.wait_exit(Duration::from_secs(30)).await?;
    assert_eq!(code, Some(3), "{}", agent.log_tail());
    let status = agent.status()?;
    assert_eq!(status["state"], "deleted", "{status}");
    assert!(!agent.state().join("identity.json").exists());

    let new_id = agent.activate_new(&portal)?;
    assert_ne!(new_id, id);
    agent.start()?;
    portal
        .wait_agent(&new_id, "the re-activated agent online", |a| {
            a["online"] == true
        })
        .await?;
    Ok(())
}
