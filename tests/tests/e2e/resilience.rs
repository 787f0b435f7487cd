//! Broker outages and agent restarts: the agent reconnects by itself and what it queued arrives once, in order.

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use outpost_tests::{wait_for, Agent, Portal};
use serde_json::Value;

/// Every message the agent sent arrived at the portal exactly once, in order: no gaps, and as many
/// accepted messages as sequence numbers.
fn assert_exactly_once(record: &Value) {
    let link = &record["link"];
    assert_eq!(link["gaps"], 0, "messages were lost: {link}");
    assert_eq!(
        link["received"], link["last_seq"],
        "accepted messages do not match sequence numbers: {link}"
    );
}

async fn new_broker_pid(portal: &Portal, old: i32) -> Result<i32> {
    wait_for(
        "the portal to restart its broker",
        Duration::from_secs(20),
        || async {
            Ok(portal
                .broker_pid()
                .ok()
                .filter(|p| *p != old && kill(Pid::from_raw(*p), None).is_ok()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_a_broker_crash_and_nothing_is_lost_or_doubled() -> Result<()> {
    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    let before = portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;
    let seq_before = before["link"]["last_seq"].as_u64().unwrap_or(0);

    let old = portal.broker_pid()?;
    kill(Pid::from_raw(old), Signal::SIGKILL)?;
    new_broker_pid(&portal, old).await?;

    let after = portal
        .wait_agent(&id, "the agent back, with later heartbeats", |a| {
            a["online"] == true && a["link"]["last_seq"].as_u64().unwrap_or(0) > seq_before + 10
        })
        .await
        .with_context(|| agent.log_tail())?;
    assert_exactly_once(&after);
    wait_for("the outbox to drain", Duration::from_secs(10), || async {
        Ok((agent.status()?["outbox_depth"] == 0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_agent_queued_during_an_outage_survives_its_restart() -> Result<()> {
    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    let before = portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;
    let seq_before = before["link"]["last_seq"].as_u64().unwrap_or(0);

    // Freeze the broker: the agent keeps queueing heartbeats that get no PUBACK.
    let broker = portal.broker_pid()?;
    kill(Pid::from_raw(broker), Signal::SIGSTOP)?;
    let queued = wait_for(
        "heartbeats piling up in the outbox",
        Duration::from_secs(20),
        || async {
            let s = agent.status()?;
            Ok(s["outbox_depth"].as_u64().filter(|d| *d >= 5))
        },
    )
    .await;
    // Stop the agent with its queue unsent, then kill the frozen broker so nothing it buffered survives.
    let stopped = agent.stop();
    kill(Pid::from_raw(broker), Signal::SIGKILL)?;
    let _ = kill(Pid::from_raw(broker), Signal::SIGCONT);
    let queued = queued.with_context(|| agent.log_tail())?;
    assert_eq!(stopped, Some(0), "{}", agent.log_tail());
    new_broker_pid(&portal, broker).await?;

    let st = agent.status()?;
    assert!(
        st["outbox_depth"].as_u64().unwrap_or(0) >= queued,
        "the outbox lost messages across the restart: {st}"
    );
    agent.start()?;
    let record = portal
        .wait_agent(&id, "the queued messages delivered", |a| {
            a["online"] == true
                && a["link"]["last_seq"].as_u64().unwrap_or(0) > seq_before + queued + 2
        })
        .await
        .with_context(|| agent.log_tail())?;
    assert_exactly_once(&record);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_the_oldest_and_the_portal_accounts_for_every_message() -> Result<()> {
    let portal = Portal::start().await?;
    // The smallest outbox the agent accepts, filled fast.
    let config = "heartbeat_secs = 0.05\noutbox_max_bytes = 16384\nreconnect_initial_ms = 100\nreconnect_max_secs = 1\n[discovery]\nenabled = false\n";
    let mut agent = Agent::with_config(config)?;
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await
        .with_context(|| agent.log_tail())?;

    // Freeze the broker until the outbox has dropped a good number, then kill it so that nothing it
    // buffered is delivered: what the outbox dropped is gone for good.
    let broker = portal.broker_pid()?;
    kill(Pid::from_raw(broker), Signal::SIGSTOP)?;
    let dropped = wait_for(
        "the outbox to overflow",
        Duration::from_secs(30),
        || async {
            let s = agent.status()?;
            Ok(s["outbox_dropped"].as_u64().filter(|d| *d >= 10))
        },
    )
    .await;
    kill(Pid::from_raw(broker), Signal::SIGKILL)?;
    let dropped = dropped.with_context(|| agent.log_tail())?;
    new_broker_pid(&portal, broker).await?;

    // Once the outbox has drained nothing more is dropped, and the portal learns the final count from the
    // next heartbeat.
    wait_for("the outbox to drain", Duration::from_secs(20), || async {
        Ok((agent.status()?["outbox_depth"].as_u64() == Some(0)).then_some(()))
    })
    .await
    .with_context(|| agent.log_tail())?;
    let final_dropped = agent.status()?["outbox_dropped"].as_u64().unwrap_or(0);
    let record = portal
        .wait_agent(&id, "the agent back, reporting all its drops", |a| {
            a["online"] == true && a["link"]["outbox_dropped"].as_u64() == Some(final_dropped)
        })
        .await
        .with_context(|| agent.log_tail())?;
    let link = &record["link"];
    let num = |k: &str| link[k].as_u64().unwrap_or(0);
    assert_eq!(
        num("received") + num("gaps"),
        num("last_seq"),
        "a message is neither received nor missing: {link}"
    );
    assert!(
        num("gaps") <= num("outbox_dropped"),
        "more missing than the agent dropped: {link}"
    );
    assert!(
        num("gaps") + 2 >= dropped,
        "dropped messages arrived after all: {link}"
    );
    let depth = agent.status()?["outbox_depth"].as_u64().unwrap_or(u64::MAX);
    assert!(depth < 200, "the bound did not hold: {depth} queued");
    Ok(())
}
