//! Command round trip: portal API call → agent executes → acknowledgement visible in the portal.
//!
//! `cargo bench -p outpost-tests --bench command_roundtrip` (N commands, default 1000: `OUTPOST_BENCH_N`).
//! Starts a real portal, Mosquitto and agent on loopback. For comparison it also measures, in the same run and
//! through the same broker, the floor: a bare MQTT QoS 1 request/echo between two TLS clients with no portal,
//! agent, database or HTTPS in the path. Also reports the agent's RSS and the size of its sled store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::AgentId;
use outpost_tests::{Agent, Portal};
use reqwest::Method;
use rumqttc::{Event, Incoming, QoS};
use serde_json::json;

const CONFIG: &str = "interfaces = []\nheartbeat_secs = 30\n[discovery]\nenabled = false\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    let max = samples.last().copied().unwrap_or_default();
    println!(
        "{name:<28} n={:<5} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    (p50, p99)
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The floor: publish to a `down` topic as the portal's admin, echo back on `up` with the agent's credentials,
/// wait for it.
async fn bare_mqtt_round_trips(
    portal: &Portal,
    identity: &serde_json::Value,
    n: usize,
) -> Result<Vec<Duration>> {
    let broker = format!("127.0.0.1:{}", portal.mqtts);
    let ca = std::fs::read(portal.ca_path())?;
    let id = AgentId::parse(identity["agent_id"].as_str().context("no agent id")?)?;
    let (user, pass) = portal.admin_credentials()?;
    let mut admin = SessionConfig::for_agent(&broker, &id, &pass, ca.clone());
    admin.username = user;
    admin.client_id = "bench-admin".into();
    admin.clean_session = true;
    admin.last_will = None;
    let mut echo = SessionConfig::for_agent(
        &broker,
        &id,
        identity["secret"].as_str().context("no secret")?,
        ca,
    );
    echo.clean_session = true;
    echo.last_will = None;

    let down = format!("agents/{id}/down/bench");
    let up = format!("agents/{id}/up/bench");
    let (echo_client, mut echo_loop) = echo.connect(64)?;
    echo_client.subscribe(&down, QoS::AtLeastOnce).await?;
    let up_topic = up.clone();
    let echo_task = tokio::spawn(async move {
        while let Ok(ev) = echo_loop.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = ev {
                let _ = echo_client
                    .publish(&up_topic, QoS::AtLeastOnce, false, p.payload.to_vec())
                    .await;
            }
        }
    });
    let (admin_client, mut admin_loop) = admin.connect(64)?;
    admin_client.subscribe(&up, QoS::AtLeastOnce).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let admin_task = tokio::spawn(async move {
        while let Ok(ev) = admin_loop.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = ev {
                let _ = tx.send(p.payload.to_vec());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let body = format!("{i}").into_bytes();
        let t = Instant::now();
        admin_client
            .publish(&down, QoS::AtLeastOnce, false, body.clone())
            .await?;
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .context("echo timed out")?;
            if got.as_deref() == Some(&body[..]) {
                break;
            }
        }
        if i >= 50 {
            samples.push(t.elapsed());
        }
    }
    echo_task.abort();
    admin_task.abort();
    Ok(samples)
}

async fn run() -> Result<()> {
    let n: usize = std::env::var("OUTPOST_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let portal = Portal::start().await?;
    let mut agent = Agent::with_config(CONFIG)?;
    let id = agent.activate_new(&portal)?;
    // The floor first: the broker pins the agent's client id, so the echo takes the agent's place before it runs.
    let floor = bare_mqtt_round_trips(&portal, &agent.identity()?, n).await?;
    agent.start()?;
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;
    let rss_idle = agent.pid().and_then(|p| proc_kib(p, "VmRSS:"));

    let path = format!("/agents/{id}/commands?wait_ms=5000");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let t = Instant::now();
        let (status, body) = portal
            .api(Method::POST, &path, Some(json!({ "type": "ping" })))
            .await?;
        let elapsed = t.elapsed();
        if !status.is_success() || body["status"] != "done" {
            bail!("ping {i}: {status} {body}");
        }
        if i >= 50 {
            samples.push(elapsed);
        }
    }
    println!(
        "command round trip through portal API, broker and agent ({n} commands after 50 warm-up):"
    );
    let (p50, p99) = summary("api → agent → ack", samples);
    let (f50, f99) = summary("bare MQTT echo (floor)", floor);
    println!(
        "ratio to the bare MQTT floor: p50 {:.2}x, p99 {:.2}x",
        p50.as_secs_f64() / f50.as_secs_f64(),
        p99.as_secs_f64() / f99.as_secs_f64()
    );
    let pid = agent.pid().context("agent not running")?;
    println!(
        "agent RSS: idle {} KiB, after the run {} KiB (peak {} KiB)",
        rss_idle.unwrap_or(0),
        proc_kib(pid, "VmRSS:").unwrap_or(0),
        proc_kib(pid, "VmHWM:").unwrap_or(0)
    );
    println!(
        "agent sled store on disk: {} KiB",
        dir_bytes(&agent.state().join("db")) / 1024
    );
    let record = portal.agent(&id).await?;
    println!("link counters: {}", record["link"]);
    let target = Duration::from_millis(50);
    println!(
        "p99 target {} ms: {}",
        target.as_millis(),
        if p99 < target { "met" } else { "MISSED" }
    );
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
