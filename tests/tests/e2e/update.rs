//! Over-the-air updates end to end: a real portal and broker, an agent started as its service starts it
//! (`outpost-agent launch`), releases signed by a publisher whose key the agent trusts, and three builds of
//! the agent under other versions: a good one, one that crashes at start, one that never reaches the portal
//! (`outpost_tests::ota`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use outpost_tests::ota::{self, Publisher, CRASHES, GOOD, NEVER_HEALTHY};
use outpost_tests::{wait_for, Agent, Portal, FAST_CONFIG};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A portal, a publisher, and an activated agent running under its launcher, online.
struct Site {
    portal: Portal,
    publisher: Publisher,
    agent: Agent,
    id: String,
    /// The version the agent runs before any update.
    base: String,
    /// The target triple the agent reports.
    target: String,
}

async fn site(launch_args: &[&str], update_config: &str) -> Result<Site> {
    let publisher = Publisher::new()?;
    let portal = Portal::start().await?;
    let config = format!(
        "{FAST_CONFIG}\n[update]\nrelease_keys = \"{}\"\n{update_config}\n",
        publisher.keys_dir().display()
    );
    let mut agent = Agent::with_config(&config)?;
    let id = agent.activate_new(&portal)?;
    agent.start_launched(launch_args)?;
    let a = portal
        .wait_agent(&id, "the agent online and updatable", |a| {
            a["online"] == true && a["updatable"] == true && a["target"].is_string()
        })
        .await
        .with_context(|| agent.log_tail())?;
    Ok(Site {
        base: a["version"].as_str().context("no version")?.to_owned(),
        target: a["target"].as_str().context("no target")?.to_owned(),
        portal,
        publisher,
        agent,
        id,
    })
}

impl Site {
    /// Signs `binary` as `version` (for `target`, default the agent's) and stores it in the portal.
    fn publish(&self, binary: &Path, version: &str, target: Option<&str>) -> Result<i64> {
        let name = format!("outpost-agent-{version}-{}", target.unwrap_or("host"));
        let (release, bin) =
            self.publisher
                .sign(binary, &name, version, target.unwrap_or(&self.target), &[])?;
        let out = self.portal.cli(&[
            "releases",
            "add",
            &release.display().to_string(),
            &bin.display().to_string(),
        ])?;
        out.split('\t')
            .next()
            .and_then(|id| id.trim().parse().ok())
            .with_context(|| format!("releases add printed {out:?}"))
    }

    /// Starts a rollout of release `rid` to this agent alone.
    async fn update(&self, rid: i64) -> Result<Value> {
        self.portal
            .api_ok(
                Method::POST,
                "/rollouts",
                Some(json!({ "release_id": rid, "agent_id": self.id })),
                StatusCode::CREATED,
            )
            .await
    }

    /// Waits until the agent's latest update attempt is in `state`.
    async fn wait_update(&self, state: &str, timeout: Duration) -> Result<Value> {
        self.wait_attempt(None, state, timeout).await
    }

    /// Waits until the agent's latest update attempt (of `version`, if given) is in `state`.
    async fn wait_attempt(
        &self,
        version: Option<&str>,
        state: &str,
        timeout: Duration,
    ) -> Result<Value> {
        wait_for(&format!("the update to be {state}"), timeout, || async {
            let a = self.portal.agent(&self.id).await?;
            if version.is_some_and(|v| a["update"]["version"] != v) {
                return Ok(None);
            }
            let st = a["update"]["state"].as_str().unwrap_or("");
            if st != state && ["committed", "rolled_back", "failed"].contains(&st) {
                bail!("the update ended {st} instead of {state}: {}", a["update"]);
            }
            Ok((st == state).then_some(a))
        })
        .await
        .with_context(|| self.agent.log_tail())
    }

    /// The portal's database (to play a compromised portal).
    async fn db(&self) -> Result<sqlx::SqlitePool> {
        let url = format!(
            "sqlite://{}",
            self.portal.data().join("data").join("portal.db").display()
        );
        Ok(sqlx::SqlitePool::connect(&url).await?)
    }

    fn update_dir(&self) -> PathBuf {
        self.agent.state().join("update")
    }

    /// The running version as the agent's own `status` tells it.
    fn running_version(&self) -> Result<String> {
        let s = self.agent.status()?;
        Ok(s["version"].as_str().unwrap_or("").to_owned())
    }
}

fn history_text(history: &Value) -> String {
    history.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_update_commits_and_what_was_queued_before_it_arrives_after_it() -> Result<()> {
    let builds = ota::test_builds()?;
    let size = std::fs::metadata(&builds.good)?.len();
    // The download takes about 5 s: long enough to freeze the broker while it runs.
    let rate = (size / 5).max(1024);
    let s = site(&[], &format!("max_download_rate = {rate}")).await?;
    let rid = s.publish(&builds.good, GOOD, None)?;
    let before = s.portal.agent(&s.id).await?;
    assert_eq!(before["version"], s.base.as_str());

    let rollout = s.update(rid).await?;
    assert_eq!(rollout["state"], "running", "{rollout}");
    s.wait_update("downloading", Duration::from_secs(20))
        .await?;
    // Freeze the broker: from now on everything the agent queues (heartbeats, the `installed` step, the
    // command's acknowledgement) waits in its outbox, across the restart into the new version.
    let broker = s.portal.broker_pid()?;
    kill(Pid::from_raw(broker), Signal::SIGSTOP)?;
    let frozen = wait_for(
        "the new version running with messages queued",
        Duration::from_secs(60),
        || async {
            let st = s.agent.status()?;
            Ok(
                (st["version"] == GOOD && st["outbox_depth"].as_u64().unwrap_or(0) > 10)
                    .then_some(st),
            )
        },
    )
    .await
    .with_context(|| s.agent.log_tail());
    kill(Pid::from_raw(broker), Signal::SIGCONT)?;
    let frozen = frozen?;
    // The portal heard nothing of the install while the broker was frozen.
    let during = s.portal.agent(&s.id).await?;
    assert_eq!(during["update"]["state"], "downloading", "{during}");

    let after = s
        .wait_update("committed", Duration::from_secs(60))
        .await
        .with_context(|| format!("queued while frozen: {frozen}"))?;
    assert_eq!(after["version"], GOOD);
    assert_eq!(after["update"]["version"], GOOD);
    // Nothing lost or doubled: every sequence number arrived once, across the restart.
    wait_for("the outbox to drain", Duration::from_secs(20), || async {
        Ok((s.agent.status()?["outbox_depth"] == 0).then_some(()))
    })
    .await?;
    let link = &s.portal.agent(&s.id).await?["link"];
    assert_eq!(link["gaps"], 0, "messages were lost: {link}");
    assert_eq!(link["received"], link["last_seq"], "{link}");
    // Each step is in the agent's history, the `installed` one queued by the old version.
    let history = history_text(&s.portal.history(&s.id).await?);
    for step in ["downloading", "installed", "committed"] {
        assert!(
            history.contains(step),
            "no {step} in the history: {history}"
        );
    }
    // The update stays; the previous binary is no longer kept.
    assert!(s.update_dir().join("current").exists());
    assert!(!s.update_dir().join("previous").exists());
    assert_eq!(s.running_version()?, GOOD);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_crashes_at_start_is_rolled_back() -> Result<()> {
    let builds = ota::test_builds()?;
    let s = site(&["--max-tries", "2", "--deadline-secs", "60"], "").await?;
    let rid = s.publish(&builds.crashes, CRASHES, None)?;
    s.update(rid).await?;
    let a = s
        .wait_update("rolled_back", Duration::from_secs(60))
        .await?;
    assert_eq!(a["update"]["code"], "crashed-at-start", "{}", a["update"]);
    assert_eq!(a["update"]["version"], CRASHES);
    let back = s
        .portal
        .wait_agent(&s.id, "the previous version back online", |a| {
            a["online"] == true && a["version"] == s.base.as_str()
        })
        .await?;
    assert_eq!(back["version"], s.base.as_str());
    assert_eq!(s.running_version()?, s.base);
    assert!(!s.update_dir().join("current").exists());
    let history = history_text(&s.portal.history(&s.id).await?);
    assert!(history.contains("rolled"), "{history}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_never_reaches_the_portal_is_rolled_back_at_the_deadline() -> Result<()> {
    let builds = ota::test_builds()?;
    let s = site(&["--deadline-secs", "5"], "").await?;
    let rid = s.publish(&builds.never_healthy, NEVER_HEALTHY, None)?;
    s.update(rid).await?;
    s.wait_update("installed", Duration::from_secs(30)).await?;
    let a = s
        .wait_update("rolled_back", Duration::from_secs(60))
        .await?;
    assert_eq!(a["update"]["code"], "not-healthy", "{}", a["update"]);
    assert!(
        a["update"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("within 5 s"),
        "{}",
        a["update"]
    );
    s.portal
        .wait_agent(&s.id, "the previous version back online", |a| {
            a["online"] == true && a["version"] == s.base.as_str()
        })
        .await?;
    assert_eq!(s.running_version()?, s.base);
    Ok(())
}

/// Rewrites the signed manifest inside a stored release file, keeping the signature (a tampered release).
fn tamper_manifest(release_file: &str) -> Result<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut file: Value = serde_json::from_str(release_file)?;
    let manifest = b64.decode(file["manifest"].as_str().context("no manifest")?)?;
    let mut manifest: Value = serde_json::from_slice(&manifest)?;
    manifest["notes"] = json!("harmless, promise");
    file["manifest"] = json!(b64.encode(serde_json::to_vec(&manifest)?));
    Ok(file.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_mis_hashed_wrong_target_and_older_releases_are_refused_and_the_agent_keeps_running(
) -> Result<()> {
    let builds = ota::test_builds()?;
    let s = site(&[], "").await?;
    let pid = s.agent.pid();
    let db = s.db().await?;

    // A compromised portal serves releases that do not match what the publisher signed; the agent checks
    // what was signed, with its own keys.
    let tampered = s.publish(&builds.good, "90.5.0", None)?;
    let file: String = sqlx::query_scalar("SELECT release_file FROM releases WHERE id = ?")
        .bind(tampered)
        .fetch_one(&db)
        .await?;
    sqlx::query("UPDATE releases SET release_file = ? WHERE id = ?")
        .bind(tamper_manifest(&file)?)
        .bind(tampered)
        .execute(&db)
        .await?;

    let mis_hashed = s.publish(&builds.good, "90.6.0", None)?;
    let path: String = sqlx::query_scalar("SELECT binary_path FROM releases WHERE id = ?")
        .bind(mis_hashed)
        .fetch_one(&db)
        .await?;
    let stored = s.portal.data().join("data").join(path);
    let mut bytes = std::fs::read(&stored)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes)?;

    // Signed for another target, passed off as this agent's.
    let wrong_target = s.publish(
        &builds.good,
        "90.7.0",
        Some("armv7-unknown-linux-gnueabihf"),
    )?;
    sqlx::query("UPDATE releases SET target = ? WHERE id = ?")
        .bind(&s.target)
        .bind(wrong_target)
        .execute(&db)
        .await?;

    // Signed as an old version (not marked as a rollback), passed off as a new one.
    let older = s.publish(&builds.good, "0.0.1", None)?;
    sqlx::query("UPDATE releases SET version = '90.8.0' WHERE id = ?")
        .bind(older)
        .execute(&db)
        .await?;

    for (rid, version, code, words) in [
        (
            tampered,
            "90.5.0",
            "signature-invalid",
            "changed after signing",
        ),
        (mis_hashed, "90.6.0", "hash-mismatch", "SHA-256"),
        (
            wrong_target,
            "90.7.0",
            "wrong-target",
            "armv7-unknown-linux-gnueabihf",
        ),
        (older, "90.8.0", "downgrade", "refusing a downgrade"),
    ] {
        s.update(rid).await?;
        let a = s
            .wait_attempt(Some(version), "failed", Duration::from_secs(30))
            .await?;
        let u = &a["update"];
        assert_eq!(u["code"], code, "release {rid}: {u}");
        assert!(
            u["reason"].as_str().unwrap_or("").contains(words),
            "release {rid}: the reason should say {words:?}: {u}"
        );
        // The running version is untouched: same process, same version, nothing installed.
        assert_eq!(s.agent.pid(), pid);
        assert_eq!(s.running_version()?, s.base);
        assert!(!s.update_dir().join("current").exists());
        assert!(!s.update_dir().join("pending.json").exists());
        assert_eq!(a["online"], true);
    }
    Ok(())
}
