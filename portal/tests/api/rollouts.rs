//! Over-the-air update rollouts (issue 8, portal side): a single agent's update end to end (command,
//! reports, the `UpdateHealthy` confirmation of the new version, committed on the agent JSON and in its
//! history), a failed acknowledgement, a rollback, fleet rollouts in stages that advance, pause over the
//! failure threshold, resume and cancel, skipped agents with their reasons, validation, the 30-minute
//! timeout, and update reports applied whatever their data epoch.

use axum::http::{Method, StatusCode};
use outpost_cloud_link::protocol::{
    Ack, AgentMessage, Command, Outcome, PortalNotice, Presence, Report,
};
use outpost_cloud_link::release::{sign_with, Manifest, SigningKey};
use outpost_cloud_link::update::{UpdateReport, UpdateState, UPDATE_REPORT};
use outpost_portal::access::Role;
use outpost_portal::app::Actor;
use serde_json::{json, Value};

use crate::harness::{agent_lines, hello, id_of, Auth, Harness};
use crate::people::{group, token_for};

const ARM64: &str = "aarch64-unknown-linux-musl";
const ARMV7: &str = "armv7-unknown-linux-gnueabihf";

/// Stores a signed release of `version` for `target` (a small pretend binary); its id.
async fn release(h: &Harness, version: &str, target: &str, rollback: bool) -> i64 {
    let bin: Vec<u8> = (0..512u32).map(|i| (i * 13 % 251) as u8).collect();
    let manifest = Manifest::for_binary(bin.as_slice(), version, target, rollback, None).unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    let file = sign_with(&manifest, &key).unwrap().to_json();
    h.app
        .add_release(&file, std::io::Cursor::new(bin), None, &Actor::system())
        .await
        .unwrap()
        .id
}

/// The agent's hello as a given version on a given target.
fn hello_as(name: &str, version: &str, target: Option<&str>, updatable: bool) -> AgentMessage {
    let AgentMessage::Hello(mut hl) = hello(name) else {
        unreachable!()
    };
    hl.version = version.into();
    hl.target = target.map(str::to_owned);
    hl.updatable = updatable;
    AgentMessage::Hello(hl)
}

/// An activated agent, connected and saying hello as `version` on `target`; its id.
async fn agent(
    h: &Harness,
    name: &str,
    version: &str,
    target: Option<&str>,
    updatable: bool,
) -> String {
    let id = id_of(&h.activate(name).await);
    h.send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    h.send_noticed(&id, 0, hello_as(name, version, target, updatable))
        .await;
    id
}

fn report(version: &str, from: &str, state: UpdateState, command: Option<u64>) -> UpdateReport {
    UpdateReport {
        release_id: None,
        command_id: command,
        version: version.into(),
        from_version: from.into(),
        state,
        reason: None,
        code: None,
    }
}

fn msg(r: &UpdateReport) -> AgentMessage {
    AgentMessage::Report(Report {
        kind: UPDATE_REPORT.into(),
        body: serde_json::to_value(r).unwrap(),
    })
}

/// The update commands sent to the agent: (command id, release id, version).
fn updates_sent(h: &Harness, agent: &str) -> Vec<(u64, i64, String)> {
    h.sent_to(agent)
        .into_iter()
        .filter_map(|c| match c.cmd {
            Command::Update {
                release_id,
                version,
            } => Some((c.id, release_id, version)),
            _ => None,
        })
        .collect()
}

async fn start(h: &Harness, body: Value) -> Value {
    let resp = h.op(Method::POST, "/api/v1/rollouts", Some(body)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    resp.body
}

async fn rollout(h: &Harness, id: i64) -> Value {
    let resp = h
        .op(Method::GET, &format!("/api/v1/rollouts/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body
}

fn agent_state(rollout: &Value, agent: &str) -> String {
    rollout["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent)
        .unwrap_or_else(|| panic!("{agent} not in {rollout}"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn history_details(h: &Harness, agent: &str) -> Vec<String> {
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await;
    agent_lines(&resp.body)
        .iter()
        .filter(|l| l["action"] == "update")
        .map(|l| l["details"].as_str().unwrap().to_owned())
        .collect()
}

/// The agents of the rollout's stage `stage` (1-based), in order.
fn stage_agents(rollout: &Value, stage: u64) -> Vec<String> {
    rollout["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["stage"] == stage)
        .map(|a| a["agent_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The agent goes through the whole update: downloading, installed, ack, hello as the new version,
/// committed.
async fn commit(h: &Harness, agent: &str, from: &str, to: &str) {
    let (cmd, _, _) = updates_sent(h, agent).last().cloned().unwrap();
    for st in [UpdateState::Downloading, UpdateState::Installed] {
        h.send_noticed(agent, 0, msg(&report(to, from, st, Some(cmd))))
            .await;
    }
    h.send_noticed(
        agent,
        0,
        AgentMessage::Ack(Ack {
            command_id: cmd,
            outcome: Outcome::Done,
            result: None,
        }),
    )
    .await;
    h.send_noticed(agent, 0, hello_as("x", to, Some(ARM64), true))
        .await;
    h.send_noticed(
        agent,
        0,
        msg(&report(to, from, UpdateState::Committed, Some(cmd))),
    )
    .await;
}

async fn fail(h: &Harness, agent: &str, code: &str) {
    let (cmd, _, _) = updates_sent(h, agent).last().cloned().unwrap();
    h.send_noticed(
        agent,
        0,
        AgentMessage::Ack(Ack {
            command_id: cmd,
            outcome: Outcome::failed_with(code, "the binary's SHA-256 does not match the release"),
            result: None,
        }),
    )
    .await;
}

#[tokio::test]
async fn a_single_agent_update_goes_end_to_end_and_the_new_version_is_confirmed() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    let before = h.agent(&a).await;
    assert_eq!(before["target"], ARM64);
    assert_eq!(before["updatable"], true);
    assert!(before["update"].is_null());

    let r = start(&h, json!({ "release_id": rel, "agent_id": a })).await;
    assert_eq!(r["state"], "running");
    assert_eq!(r["stages"], json!([100]));
    assert_eq!(r["scope"]["kind"], "agent");
    assert_eq!(agent_state(&r, &a), "pending");
    let sent = updates_sent(&h, &a);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (cmd, release_id, version) = sent[0].clone();
    assert_eq!((release_id, version.as_str()), (rel, "1.0.0"));

    h.send_noticed(
        &a,
        0,
        msg(&report(
            "1.0.0",
            "0.9.0",
            UpdateState::Downloading,
            Some(cmd),
        )),
    )
    .await;
    assert_eq!(h.agent(&a).await["update"]["state"], "downloading");
    h.send_noticed(
        &a,
        0,
        msg(&report("1.0.0", "0.9.0", UpdateState::Installed, Some(cmd))),
    )
    .await;
    h.send_noticed(
        &a,
        0,
        AgentMessage::Ack(Ack {
            command_id: cmd,
            outcome: Outcome::Done,
            result: None,
        }),
    )
    .await;
    assert_eq!(h.agent(&a).await["update"]["state"], "installed");
    assert!(
        h.notices_to(&a).is_empty(),
        "the old version is still running: nothing to confirm yet"
    );

    // The new version says hello: confirmed, at every such hello.
    h.send_noticed(&a, 0, hello_as("shop", "1.0.0", Some(ARM64), true))
        .await;
    let healthy = PortalNotice::UpdateHealthy {
        version: "1.0.0".into(),
    };
    assert_eq!(h.notices_to(&a), vec![healthy.clone()]);
    h.send_noticed(&a, 0, hello_as("shop", "1.0.0", Some(ARM64), true))
        .await;
    assert_eq!(h.notices_to(&a), vec![healthy.clone(), healthy.clone()]);

    h.send_noticed(
        &a,
        0,
        msg(&report("1.0.0", "0.9.0", UpdateState::Committed, Some(cmd))),
    )
    .await;
    let after = h.agent(&a).await;
    assert_eq!(after["version"], "1.0.0");
    assert_eq!(after["update"]["state"], "committed");
    assert_eq!(after["update"]["version"], "1.0.0");
    // Committed: no more confirmations.
    h.send_noticed(&a, 0, hello_as("shop", "1.0.0", Some(ARM64), true))
        .await;
    assert_eq!(h.notices_to(&a).len(), 2);

    let r = rollout(&h, r["id"].as_i64().unwrap()).await;
    assert_eq!(r["state"], "done");
    assert_eq!(agent_state(&r, &a), "committed");
    assert_eq!(r["counts"]["committed"], 1);
    let lines = history_details(&h, &a).await;
    assert!(
        lines[0].starts_with("update 1.0.0: sent (rollout "),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..],
        [
            "update 1.0.0: downloading",
            "update 1.0.0: installed",
            "update 1.0.0: committed"
        ],
        "the ack's `installed` adds no second line"
    );
    let updates = h
        .op(Method::GET, &format!("/api/v1/agents/{a}/updates"), None)
        .await;
    assert_eq!(updates.status, StatusCode::OK);
    let list = updates.body["updates"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "committed");
    assert_eq!(list[0]["from_version"], "0.9.0");
    assert_eq!(list[0]["command_id"], cmd);
}

#[tokio::test]
async fn a_new_version_whose_hello_beats_the_installed_step_is_confirmed_when_the_step_arrives() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    start(&h, json!({ "release_id": rel, "agent_id": a })).await;
    let (cmd, _, _) = updates_sent(&h, &a)[0].clone();
    h.send_noticed(
        &a,
        0,
        msg(&report(
            "1.0.0",
            "0.9.0",
            UpdateState::Downloading,
            Some(cmd),
        )),
    )
    .await;
    // The restarted agent says hello first, then its outbox delivers the installed step.
    h.send_noticed(&a, 0, hello_as("shop", "1.0.0", Some(ARM64), true))
        .await;
    assert!(h.notices_to(&a).is_empty());
    h.send_noticed(
        &a,
        0,
        msg(&report("1.0.0", "0.9.0", UpdateState::Installed, Some(cmd))),
    )
    .await;
    assert_eq!(
        h.notices_to(&a),
        vec![PortalNotice::UpdateHealthy {
            version: "1.0.0".into()
        }]
    );
}

#[tokio::test]
async fn a_failed_acknowledgement_fails_the_update_with_the_agents_code() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    let r = start(&h, json!({ "release_id": rel, "agent_id": a })).await;
    fail(&h, &a, "hash-mismatch").await;
    // The agent's `failed` report repeats it: no second line.
    let (cmd, _, _) = updates_sent(&h, &a)[0].clone();
    let mut failed = report("1.0.0", "0.9.0", UpdateState::Failed, Some(cmd));
    failed.code = Some("hash-mismatch".into());
    failed.reason = Some("the binary's SHA-256 does not match the release".into());
    h.send_noticed(&a, 0, msg(&failed)).await;

    let update = &h.agent(&a).await["update"];
    assert_eq!(update["state"], "failed");
    assert_eq!(update["code"], "hash-mismatch");
    assert!(
        update["reason"].as_str().unwrap().contains("SHA-256"),
        "{update}"
    );
    let r = rollout(&h, r["id"].as_i64().unwrap()).await;
    assert_eq!(
        r["state"], "done",
        "a single agent's update ends with its attempt: {r}"
    );
    assert_eq!(agent_state(&r, &a), "failed");
    let lines = history_details(&h, &a).await;
    assert_eq!(
        lines[1..],
        ["update 1.0.0: failed (hash-mismatch: the binary's SHA-256 does not match the release)"]
    );
}

#[tokio::test]
async fn a_rolled_back_update_shows_why_and_is_not_confirmed() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    start(&h, json!({ "release_id": rel, "agent_id": a })).await;
    let (cmd, _, _) = updates_sent(&h, &a)[0].clone();
    h.send_noticed(
        &a,
        0,
        msg(&report("1.0.0", "0.9.0", UpdateState::Installed, Some(cmd))),
    )
    .await;
    // The launcher restored 0.9.0, which connects and tells.
    h.send_noticed(&a, 0, hello_as("shop", "0.9.0", Some(ARM64), true))
        .await;
    assert!(
        h.notices_to(&a).is_empty(),
        "0.9.0 is not the version installed"
    );
    let mut back = report("1.0.0", "0.9.0", UpdateState::RolledBack, Some(cmd));
    back.code = Some("crashed-at-start".into());
    back.reason = Some("the new version exited 3 times at start".into());
    h.send_noticed(&a, 0, msg(&back)).await;
    let update = &h.agent(&a).await["update"];
    assert_eq!(update["state"], "rolled_back");
    assert_eq!(update["code"], "crashed-at-start");
    let lines = history_details(&h, &a).await;
    assert_eq!(
        lines.last().unwrap(),
        "update 1.0.0: rolled back (crashed-at-start: the new version exited 3 times at start)"
    );
}

/// Four updatable agents on 0.9.0 (aarch64).
async fn fleet(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["a", "b", "c", "d"] {
        out.push(agent(h, name, "0.9.0", Some(ARM64), true).await);
    }
    out
}

#[tokio::test]
async fn a_fleet_rollout_in_stages_advances_when_the_first_stage_commits() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let agents = fleet(&h).await;
    let r = start(
        &h,
        json!({ "release_id": rel, "fleet": true, "stages": [50, 100] }),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    assert_eq!(r["eligible"], 4);
    assert_eq!(r["stage"], 1);
    let first = stage_agents(&r, 1);
    let second = stage_agents(&r, 2);
    assert_eq!((first.len(), second.len()), (2, 2), "{r}");
    for a in &first {
        assert_eq!(updates_sent(&h, a).len(), 1, "{a}");
    }
    for a in &second {
        assert!(updates_sent(&h, a).is_empty(), "{a} is in the second stage");
    }
    assert_eq!(r["counts"], json!({ "pending": 2, "not_started": 2 }));

    commit(&h, &first[0], "0.9.0", "1.0.0").await;
    assert!(
        updates_sent(&h, &second[0]).is_empty(),
        "the stage is not complete"
    );
    commit(&h, &first[1], "0.9.0", "1.0.0").await;
    let r = rollout(&h, id).await;
    assert_eq!(r["stage"], 2, "{r}");
    for a in &second {
        assert_eq!(updates_sent(&h, a).len(), 1, "{a}");
    }
    for a in &second {
        commit(&h, a, "0.9.0", "1.0.0").await;
    }
    let r = rollout(&h, id).await;
    assert_eq!(r["state"], "done");
    assert_eq!(r["counts"], json!({ "committed": 4 }));
    for a in &agents {
        assert_eq!(h.agent(a).await["update"]["state"], "committed");
    }
    let list = h.op(Method::GET, "/api/v1/rollouts", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["rollouts"][0]["id"], id);
    assert!(
        list.body["rollouts"][0]["agents"].is_null(),
        "the list shows counts only"
    );
}

/// Deleting an agent whose update is under way removes its attempt and its place in the rollout (no
/// table keeps its id), and the stage that waited for it still completes: the rollout goes on with the
/// agents still there and finishes.
#[tokio::test]
async fn a_stage_whose_agent_is_deleted_still_completes() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let agents = fleet(&h).await;
    let r = start(
        &h,
        json!({ "release_id": rel, "fleet": true, "stages": [50, 100] }),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    let first = stage_agents(&r, 1);
    let second = stage_agents(&r, 2);
    assert_eq!((first.len(), second.len()), (2, 2), "{r}");
    let gone = first[1].clone();
    assert_eq!(updates_sent(&h, &gone).len(), 1);
    // The agent goes offline with its update pending and is deleted.
    h.send_seq(
        &gone,
        0,
        0,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{gone}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    assert_eq!(
        h.left_after_deletion(&gone).await,
        Vec::<String>::new(),
        "the deleted agent's id is still in these tables"
    );
    let r = rollout(&h, id).await;
    assert_eq!(r["eligible"], 3, "{r}");
    assert!(
        !r["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == gone.as_str()),
        "{r}"
    );
    // The rollout goes on over the three agents left (the deleted one's stage now takes in the next
    // agent in the order) and finishes.
    let mut committed = std::collections::HashSet::new();
    for _ in 0..4 {
        h.app.drive_rollouts().await.unwrap();
        for a in agents.iter().filter(|a| **a != gone) {
            if updates_sent(&h, a).len() == 1 && committed.insert(a.clone()) {
                commit(&h, a, "0.9.0", "1.0.0").await;
            }
        }
    }
    assert_eq!(committed.len(), 3, "{second:?}");
    let r = rollout(&h, id).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["counts"], json!({ "committed": 3 }), "{r}");
    for a in agents.iter().filter(|a| **a != gone) {
        assert_eq!(h.agent(a).await["update"]["state"], "committed", "{a}");
    }
}

#[tokio::test]
async fn a_stage_over_the_failure_threshold_pauses_and_resume_and_cancel_work() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    fleet(&h).await;
    let r = start(
        &h,
        json!({ "release_id": rel, "fleet": true, "stages": [50, 100], "max_failure_pct": 20 }),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    let first = stage_agents(&r, 1);
    let second = stage_agents(&r, 2);
    fail(&h, &first[0], "signature-invalid").await;
    commit(&h, &first[1], "0.9.0", "1.0.0").await;
    let r = rollout(&h, id).await;
    assert_eq!(r["state"], "paused", "{r}");
    let reason = r["pause_reason"].as_str().unwrap();
    assert!(
        reason.contains("1 of 2") && reason.contains("20%"),
        "{reason}"
    );
    assert_eq!(r["stage"], 1);
    // Paused: the sweeper's drive sends nothing.
    h.app.drive_rollouts().await.unwrap();
    for a in &second {
        assert!(updates_sent(&h, a).is_empty(), "{a}");
    }
    let again = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/pause"), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error(), "invalid_state");

    // Resumed: the first stage's failure is accepted and the second stage goes out.
    let resumed = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{:?}", resumed.body);
    assert_eq!(resumed.body["state"], "running");
    assert_eq!(resumed.body["stage"], 2);
    for a in &second {
        assert_eq!(updates_sent(&h, a).len(), 1, "{a}");
    }
    // A person pauses and resumes mid-stage.
    let paused = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/pause"), None)
        .await;
    assert_eq!(paused.body["state"], "paused");
    assert!(paused.body["pause_reason"]
        .as_str()
        .unwrap()
        .starts_with("paused by user:"));
    let resumed = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/resume"), None)
        .await;
    assert_eq!(resumed.body["state"], "running");
    assert_eq!(resumed.body["stage"], 2);

    // Cancelled: the updates under way still finish and are recorded; the rollout stays cancelled.
    let cancelled = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["state"], "cancelled");
    commit(&h, &second[0], "0.9.0", "1.0.0").await;
    commit(&h, &second[1], "0.9.0", "1.0.0").await;
    let r = rollout(&h, id).await;
    assert_eq!(r["state"], "cancelled");
    assert_eq!(agent_state(&r, &second[0]), "committed");
    let resume = h
        .op(Method::POST, &format!("/api/v1/rollouts/{id}/resume"), None)
        .await;
    assert_eq!(resume.status, StatusCode::CONFLICT);
    let account = h
        .op(Method::GET, "/api/v1/history?action=rollout-", None)
        .await;
    let actions: Vec<&str> = account.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.starts_with(&[
            "rollout-created",
            "rollout-paused",
            "rollout-resumed",
            "rollout-paused",
            "rollout-resumed",
            "rollout-cancelled"
        ]),
        "{actions:?}"
    );
}

#[tokio::test]
async fn agents_that_cannot_take_the_release_are_skipped_with_the_reason() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let north = group(&h, "North", None).await;
    let south = group(&h, "South", Some(north)).await;
    let ok = agent(&h, "ok", "0.9.0", Some(ARM64), true).await;
    let armv7 = agent(&h, "armv7", "0.9.0", Some(ARMV7), true).await;
    let bare = agent(&h, "bare", "0.9.0", Some(ARM64), false).await;
    let newer = agent(&h, "newer", "1.1.0", Some(ARM64), true).await;
    let same = agent(&h, "same", "1.0.0", Some(ARM64), true).await;
    let old = agent(&h, "old", "0.8.0", None, false).await;
    let elsewhere = agent(&h, "elsewhere", "0.9.0", Some(ARM64), true).await;
    for (a, g) in [
        (&ok, south),
        (&armv7, north),
        (&bare, north),
        (&newer, south),
        (&same, north),
        (&old, north),
    ] {
        let moved = h
            .op(
                Method::PUT,
                &format!("/api/v1/agents/{a}/group"),
                Some(json!({ "group": g })),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    }
    let r = start(&h, json!({ "release_id": rel, "group_id": north })).await;
    assert_eq!(r["eligible"], 1, "{r}");
    assert_eq!(
        agent_state(&r, &ok),
        "pending",
        "sub-groups are in the scope"
    );
    let skipped: std::collections::HashMap<String, String> = r["skipped_agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["agent_id"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert!(skipped[&armv7].contains(ARMV7) && skipped[&armv7].contains(ARM64));
    assert!(
        skipped[&bare].contains("outpost-agent launch"),
        "{}",
        skipped[&bare]
    );
    assert!(
        skipped[&newer].contains("already runs 1.1.0"),
        "{}",
        skipped[&newer]
    );
    assert!(
        skipped[&same].contains("already runs 1.0.0"),
        "{}",
        skipped[&same]
    );
    assert!(
        skipped[&old].contains("has not reported its target"),
        "{}",
        skipped[&old]
    );
    assert!(!skipped.contains_key(&elsewhere), "not in the group");
    assert!(updates_sent(&h, &elsewhere).is_empty());

    // An agent with an update under way is skipped by the next rollout.
    let again = h
        .op(
            Method::POST,
            "/api/v1/rollouts",
            Some(json!({ "release_id": rel, "agent_id": ok })),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    assert!(again.body["message"]
        .as_str()
        .unwrap()
        .contains("already under way"));

    // A release for a target nobody in the scope runs.
    let v7 = release(&h, "1.0.0", ARMV7, false).await;
    let none = h
        .op(
            Method::POST,
            "/api/v1/rollouts",
            Some(json!({ "release_id": v7, "group_id": south })),
        )
        .await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{:?}", none.body);
    assert_eq!(none.error(), "no_eligible_agents");
    assert_eq!(
        none.body["message"],
        format!("release {v7} is for {ARMV7} but no agent in the scope runs that target; pick the release for their target")
    );

    // A rollback release goes to agents on another version, newer ones included.
    let back = release(&h, "0.9.5", ARM64, true).await;
    let r = start(&h, json!({ "release_id": back, "agent_id": newer })).await;
    assert_eq!(agent_state(&r, &newer), "pending");
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    for (body, status, needle) in [
        (
            json!({ "release_id": rel, "fleet": true, "stages": [50, 20, 100] }),
            StatusCode::BAD_REQUEST,
            "stages: 20 does not come after 50",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "stages": [10, 50] }),
            StatusCode::BAD_REQUEST,
            "stages: the last stage is 50",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "stages": [0, 100] }),
            StatusCode::BAD_REQUEST,
            "stages: 0 is not a percentage",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "stages": [] }),
            StatusCode::BAD_REQUEST,
            "stages: give at least one",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "max_failure_pct": 120 }),
            StatusCode::BAD_REQUEST,
            "max_failure_pct: 120",
        ),
        (
            json!({ "release_id": 999, "fleet": true }),
            StatusCode::BAD_REQUEST,
            "release_id: there is no release 999",
        ),
        (
            json!({ "fleet": true }),
            StatusCode::BAD_REQUEST,
            "release_id: give the id",
        ),
        (
            json!({ "release_id": rel }),
            StatusCode::BAD_REQUEST,
            "scope: give exactly one of",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "agent_id": a }),
            StatusCode::BAD_REQUEST,
            "scope: give exactly one of",
        ),
        (
            json!({ "release_id": rel, "agent_id": a, "stages": [50, 100] }),
            StatusCode::BAD_REQUEST,
            "single stage [100]",
        ),
        (
            json!({ "release_id": rel, "group_id": 999 }),
            StatusCode::NOT_FOUND,
            "no group 999",
        ),
        (
            json!({ "release_id": rel, "agent_id": "ag-nobody" }),
            StatusCode::NOT_FOUND,
            "no agent ag-nobody",
        ),
        (
            json!({ "release_id": rel, "fleet": true, "colour": "red" }),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ] {
        let resp = h
            .op(Method::POST, "/api/v1/rollouts", Some(body.clone()))
            .await;
        assert_eq!(resp.status, status, "{body}: {:?}", resp.body);
        let message = resp.body["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert!(updates_sent(&h, &a).is_empty(), "nothing was sent");
    let missing = h.op(Method::GET, "/api/v1/rollouts/77", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error(), "not_found");
}

#[tokio::test]
async fn what_a_caller_cannot_see_is_not_found_and_only_company_admins_roll_out() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let north = group(&h, "North", None).await;
    let south = group(&h, "South", None).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    let b = agent(&h, "depot", "0.9.0", Some(ARM64), true).await;
    for (x, g) in [(&a, north), (&b, south)] {
        h.op(
            Method::PUT,
            &format!("/api/v1/agents/{x}/group"),
            Some(json!({ "group": g })),
        )
        .await;
    }
    h.add_user(
        "sup@example.com",
        Role::Supervisor,
        Some("North"),
        "correct horse battery staple",
    )
    .await;
    h.add_user(
        "ga@example.com",
        Role::GroupAdmin,
        Some("North"),
        "correct horse battery staple",
    )
    .await;
    let sup = token_for(&h, "sup@example.com", false).await;
    let ga = token_for(&h, "ga@example.com", false).await;
    let in_north = start(&h, json!({ "release_id": rel, "group_id": north })).await;
    let in_south = start(&h, json!({ "release_id": rel, "group_id": south })).await;
    // The supervisor of North sees North's rollout and agent updates, not South's.
    let list = h
        .call(Method::GET, "/api/v1/rollouts", None, Auth::Bearer(&sup))
        .await;
    let ids: Vec<i64> = list.body["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![in_north["id"].as_i64().unwrap()]);
    let hidden = h
        .call(
            Method::GET,
            &format!("/api/v1/rollouts/{}", in_south["id"]),
            None,
            Auth::Bearer(&sup),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let updates = h
        .call(
            Method::GET,
            &format!("/api/v1/agents/{b}/updates"),
            None,
            Auth::Bearer(&sup),
        )
        .await;
    assert_eq!(updates.status, StatusCode::NOT_FOUND);
    let updates = h
        .call(
            Method::GET,
            &format!("/api/v1/agents/{a}/updates"),
            None,
            Auth::Bearer(&sup),
        )
        .await;
    assert_eq!(updates.status, StatusCode::OK);
    // A group admin may not start one, even for their own group.
    let refused = h
        .call(
            Method::POST,
            "/api/v1/rollouts",
            Some(json!({ "release_id": rel, "group_id": north })),
            Auth::Bearer(&ga),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error(), "forbidden");
}

#[tokio::test]
async fn an_update_the_agent_never_answers_fails_after_30_minutes() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let agents = fleet(&h).await;
    let r = start(
        &h,
        json!({ "release_id": rel, "fleet": true, "stages": [50, 100], "max_failure_pct": 50 }),
    )
    .await;
    let id = r["id"].as_i64().unwrap();
    let first = stage_agents(&r, 1);
    commit(&h, &first[0], "0.9.0", "1.0.0").await;
    // The other one went quiet after downloading.
    let (cmd, _, _) = updates_sent(&h, &first[1])[0].clone();
    h.send_noticed(
        &first[1],
        0,
        msg(&report(
            "1.0.0",
            "0.9.0",
            UpdateState::Downloading,
            Some(cmd),
        )),
    )
    .await;
    h.clock.advance(chrono::Duration::minutes(29));
    h.app.drive_rollouts().await.unwrap();
    assert_eq!(rollout(&h, id).await["stage"], 1, "not yet");
    h.clock.advance(chrono::Duration::minutes(2));
    h.app.drive_rollouts().await.unwrap();
    let r = rollout(&h, id).await;
    let silent = r["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == first[1].as_str())
        .unwrap()
        .clone();
    assert_eq!(silent["state"], "failed");
    assert_eq!(silent["code"], "no-answer");
    assert_eq!(
        silent["reason"],
        "no answer from the agent within 30 minutes"
    );
    assert_eq!(
        r["stage"], 2,
        "1 of 2 failed is within 50%: the rollout went on: {r}"
    );
    assert_eq!(agents.len(), 4);
    let lines = history_details(&h, &first[1]).await;
    assert_eq!(
        lines.last().unwrap(),
        "update 1.0.0: failed (no-answer: no answer from the agent within 30 minutes)"
    );
    // The agent's own word still wins if it comes back after all.
    h.send_noticed(
        &first[1],
        0,
        msg(&report(
            "1.0.0",
            "0.9.0",
            UpdateState::RolledBack,
            Some(cmd),
        )),
    )
    .await;
    assert_eq!(h.agent(&first[1]).await["update"]["state"], "rolled_back");
}

#[tokio::test]
async fn update_reports_are_applied_whatever_their_data_epoch() {
    let h = Harness::new().await;
    let rel = release(&h, "1.0.0", ARM64, false).await;
    let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
    start(&h, json!({ "release_id": rel, "agent_id": a })).await;
    let (cmd, _, _) = updates_sent(&h, &a)[0].clone();
    let cleanup = h
        .op(Method::POST, &format!("/api/v1/agents/{a}/cleanup"), None)
        .await;
    assert_eq!(cleanup.status, StatusCode::ACCEPTED, "{:?}", cleanup.body);
    assert_eq!(cleanup.body["data_epoch"], 1);
    // An ordinary report of epoch 0 is now stale; the update step of epoch 0 is not.
    let stale = h
        .send_noticed(
            &a,
            0,
            AgentMessage::Report(Report {
                kind: "something".into(),
                body: json!({}),
            }),
        )
        .await;
    assert_eq!(stale, outpost_portal::ingest::Disposition::StaleEpoch);
    let applied = h
        .send_noticed(
            &a,
            0,
            msg(&report(
                "1.0.0",
                "0.9.0",
                UpdateState::Downloading,
                Some(cmd),
            )),
        )
        .await;
    assert_eq!(applied, outpost_portal::ingest::Disposition::Applied);
    assert_eq!(h.agent(&a).await["update"]["state"], "downloading");
    // A malformed update report is dropped, not applied.
    let bad = h
        .send_noticed(
            &a,
            0,
            AgentMessage::Report(Report {
                kind: UPDATE_REPORT.into(),
                body: json!({ "state": "exploded" }),
            }),
        )
        .await;
    assert_eq!(bad, outpost_portal::ingest::Disposition::Malformed);
}

mod pages {
    //! The agent page's update section and the `/rollouts` page (list, buttons, start form, CSRF, roles).

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU8, Ordering};

    use axum::http::{Method, StatusCode};
    use outpost_portal::access::Role;
    use serde_json::json;

    use super::{agent, fail, release, start, updates_sent, ARM64};
    use crate::harness::{form, request, Harness, Page, Req};

    const PASSWORD: &str = "correct horse battery staple";
    static NEXT: AtomicU8 = AtomicU8::new(1);

    async fn sign_in(h: &Harness, email: &str) -> String {
        let from = IpAddr::V4(Ipv4Addr::new(
            10,
            8,
            0,
            NEXT.fetch_add(1, Ordering::Relaxed),
        ));
        let page = request(
            h,
            Method::POST,
            "/sign-in",
            Req {
                form: Some(form(&[
                    ("email", email),
                    ("password", PASSWORD),
                    ("next", "/agents"),
                ])),
                from: Some(from),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
        page.session()
    }

    async fn get(h: &Harness, path: &str, cookie: &str) -> Page {
        request(
            h,
            Method::GET,
            path,
            Req {
                cookie: Some(cookie),
                ..Req::default()
            },
        )
        .await
    }

    async fn post(h: &Harness, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Page {
        request(
            h,
            Method::POST,
            path,
            Req {
                cookie: Some(cookie),
                form: Some(form(fields)),
                headers: vec![("origin", "https://portal.example:8443".into())],
                ..Req::default()
            },
        )
        .await
    }

    fn csrf(page: &Page) -> String {
        let marker = "name=\"csrf\" value=\"";
        let at = page
            .text
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF in {}", page.text));
        let rest = &page.text[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    #[tokio::test]
    async fn the_agent_page_shows_version_target_and_the_update_state_with_why_it_failed() {
        let h = Harness::new().await;
        h.add_user("boss@example.com", Role::CompanyAdmin, None, PASSWORD)
            .await;
        let cookie = sign_in(&h, "boss@example.com").await;
        let rel = release(&h, "1.0.0", ARM64, false).await;
        let a = agent(&h, "shop", "0.9.0", Some(ARM64), true).await;
        let page = get(&h, &format!("/agents/{a}"), &cookie).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains(ARM64), "{}", page.text);
        assert!(
            page.text.contains("id=\"update-state\">none<"),
            "{}",
            page.text
        );
        start(&h, json!({ "release_id": rel, "agent_id": a })).await;
        let page = get(&h, &format!("/agents/{a}"), &cookie).await;
        assert!(
            page.text.contains("1.0.0: sent, waiting for the agent"),
            "{}",
            page.text
        );
        fail(&h, &a, "hash-mismatch").await;
        let page = get(&h, &format!("/agents/{a}"), &cookie).await;
        assert!(
            page.text
                .contains("1.0.0: failed — <code>hash-mismatch</code>"),
            "{}",
            page.text
        );
        assert!(
            page.text.contains("id=\"update-attempts\""),
            "{}",
            page.text
        );
        assert!(
            page.text.contains("update 1.0.0: failed (hash-mismatch"),
            "history: {}",
            page.text
        );
    }

    #[tokio::test]
    async fn company_admins_start_and_steer_rollouts_from_the_page_and_supervisors_only_look() {
        let h = Harness::new().await;
        h.add_user("boss@example.com", Role::CompanyAdmin, None, PASSWORD)
            .await;
        h.add_user("sup@example.com", Role::Supervisor, Some("North"), PASSWORD)
            .await;
        let boss = sign_in(&h, "boss@example.com").await;
        let sup = sign_in(&h, "sup@example.com").await;
        let rel = release(&h, "1.0.0", ARM64, false).await;
        let mut agents = Vec::new();
        for name in ["a", "b", "c", "d"] {
            agents.push(agent(&h, name, "0.9.0", Some(ARM64), true).await);
        }
        let page = get(&h, "/rollouts", &boss).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("id=\"new-rollout\""), "{}", page.text);
        assert!(page.text.contains("href=\"/rollouts\">Updates</a>"));
        let token = csrf(&page);
        // Without the CSRF token: refused, nothing started.
        let refused = post(
            &h,
            "/rollouts/new",
            &boss,
            &[("release", &rel.to_string()), ("scope", "fleet")],
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(agents.iter().all(|a| updates_sent(&h, a).is_empty()));
        // A bad stage list is refused on the page, naming the field.
        let bad = post(
            &h,
            "/rollouts/new",
            &boss,
            &[
                ("csrf", &token),
                ("release", &rel.to_string()),
                ("scope", "fleet"),
                ("stages", "50,20"),
            ],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(
            bad.text.contains("stages: 20 does not come after 50"),
            "{}",
            bad.text
        );
        let started = post(
            &h,
            "/rollouts/new",
            &boss,
            &[
                ("csrf", &token),
                ("release", &rel.to_string()),
                ("scope", "fleet"),
                ("stages", "50,100"),
                ("max_failure_pct", "20"),
            ],
        )
        .await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
        assert_eq!(started.location(), "/rollouts?ok=created");
        let sent: usize = agents.iter().map(|a| updates_sent(&h, a).len()).sum();
        assert_eq!(sent, 2, "the first stage: half of four");
        let list = h.op(Method::GET, "/api/v1/rollouts", None).await;
        let id = list.body["rollouts"][0]["id"].as_i64().unwrap();
        let page = get(&h, "/rollouts", &boss).await;
        assert!(
            page.text
                .contains(&format!("action=\"/rollouts/{id}/pause\"")),
            "{}",
            page.text
        );
        assert!(page.text.contains("2 pending"), "{}", page.text);

        // The supervisor sees the page (the fleet rollout is the company's, not North's: not listed)
        // but no form and may not pause.
        let page = get(&h, "/rollouts", &sup).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("id=\"new-rollout\""), "{}", page.text);
        assert!(!page.text.contains("/pause\""), "{}", page.text);
        let sup_token = csrf(&page);
        let no = post(
            &h,
            &format!("/rollouts/{id}/pause"),
            &sup,
            &[("csrf", &sup_token)],
        )
        .await;
        assert_eq!(no.status, StatusCode::FORBIDDEN, "{}", no.text);

        let paused = post(
            &h,
            &format!("/rollouts/{id}/pause"),
            &boss,
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.text);
        assert_eq!(paused.location(), "/rollouts?ok=paused");
        let r = h
            .op(Method::GET, &format!("/api/v1/rollouts/{id}"), None)
            .await;
        assert_eq!(r.body["state"], "paused");
        let page = get(&h, "/rollouts?ok=paused", &boss).await;
        assert!(
            page.text
                .contains(&format!("action=\"/rollouts/{id}/resume\"")),
            "{}",
            page.text
        );
        let cancelled = post(
            &h,
            &format!("/rollouts/{id}/cancel"),
            &boss,
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(cancelled.location(), "/rollouts?ok=cancelled");
        let again = post(
            &h,
            &format!("/rollouts/{id}/cancel"),
            &boss,
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
        assert!(again.text.contains("cancelled already"), "{}", again.text);
    }
}
