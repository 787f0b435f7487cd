//! Activation by code: the happy path, every code error, rate limiting, and what the agent stores.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_creates_the_agent_and_it_links_up() -> Result<()> {
    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let out = agent.activate(&portal, &portal.new_code()?)?;
    ensure!(out.status.success(), "activation failed: {}", stderr(&out));

    let status = agent.status()?;
    assert_eq!(status["state"], "active", "{status}");
    let id = status["agent_id"]
        .as_str()
        .context("no agent_id")?
        .to_owned();
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{id}"
    );

    // The state directory is private and the secret stays in it.
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&agent.state())?, 0o700);
    assert_eq!(mode(&agent.state().join("identity.json"))?, 0o600);
    let secret = agent.identity()?["secret"]
        .as_str()
        .context("no secret")?
        .to_owned();
    assert!(secret.len() >= 16);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&secret) && !stderr(&out).contains(&secret)
    );

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned();
    let record = portal.agent(&id).await?;
    assert_eq!(record["status"], "active");
    assert_eq!(record["name"], hostname.as_str());
    assert_eq!(record["public_ip"], "127.0.0.1");
    assert_eq!(record["platform"], "linux");
    assert!(record["activated_at"].is_string(), "{record}");

    agent.start()?;
    let online = portal
        .wait_agent(&id, "the agent online with its hello", |a| {
            a["online"] == true && a["version"].is_string()
        })
        .await
        .with_context(|| agent.log_tail())?;
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(online["local_ip"], "127.0.0.1");
    let received = online["link"]["received"].as_u64().unwrap_or(0);
    portal
        .wait_agent(&id, "heartbeats", |a| {
            a["link"]["received"].as_u64().unwrap_or(0) >= received + 3
        })
        .await?;
    wait_for(
        "status to show the link up",
        Duration::from_secs(10),
        || async { Ok((agent.status()?["link"] == "up").then_some(())) },
    )
    .await?;

    assert_eq!(
        agent.stop(),
        Some(0),
        "a clean stop exits 0:\n{}",
        agent.log_tail()
    );
    portal
        .wait_agent(&id, "offline after a clean stop", |a| a["online"] == false)
        .await?;
    assert!(
        !std::fs::read_to_string(agent.log_path())?.contains(&secret),
        "the secret was logged"
    );
    assert!(
        !std::fs::read_to_string(portal.data().join("portal.log"))?.contains(&secret),
        "the portal logged the secret"
    );

    let history = portal.history(&id).await?;
    assert_eq!(history["entries"][0]["action"], "activated", "{history}");
    Ok(())
}

async fn activate_raw(portal: &Portal, code: &str) -> Result<(StatusCode, Value)> {
    let resp = portal
        .http()
        .post(format!("{}/api/v1/activate", portal.base_url()))
        .json(&json!({
            "code": code, "mac": "02:00:00:00:00:01", "hostname": "raw", "version": "0.0.1",
            "local_ip": "192.0.2.10", "platform": "box"
        }))
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_code_gets_its_own_clear_error() -> Result<()> {
    let portal = Portal::start().await?;

    // Used up: a single-use code works once.
    let code = portal.new_code()?;
    let first = Agent::new()?;
    ensure!(first.activate(&portal, &code)?.status.success());
    let (status, body) = activate_raw(&portal, &code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("code_used_up")),
        "{body}"
    );
    let second = Agent::new()?;
    let out = second.activate(&portal, &code)?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("used"),
        "{}",
        stderr(&out)
    );
    assert_eq!(second.status()?["state"], "unprovisioned");

    // A multi-use code serves as many activations as it says.
    let multi = portal.cli(&["codes", "new", "--uses", "2"])?;
    assert_eq!(activate_raw(&portal, &multi).await?.0, StatusCode::CREATED);
    assert_eq!(activate_raw(&portal, &multi).await?.0, StatusCode::CREATED);
    assert_eq!(activate_raw(&portal, &multi).await?.0, StatusCode::CONFLICT);

    // Malformed: wrong length, a character outside the alphabet, or a typo caught by the check character.
    for bad in ["ABC", "!!!!-!!!!-!!!!", &typo(&portal.new_code()?)] {
        let (status, body) = activate_raw(&portal, bad).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("malformed_code")),
            "{bad}: {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let out = Agent::new()?.activate(&portal, "ABC")?;
    assert!(!out.status.success());
    assert!(!stderr(&out).trim().is_empty());

    // Unknown: well formed, but issued by another portal.
    let other = tempfile::tempdir()?;
    let foreign = std::process::Command::new(outpost_tests::portal_bin()?)
        .args(["codes", "new", "--data"])
        .arg(other.path())
        .output()?;
    ensure!(
        foreign.status.success(),
        "codes new on an empty data dir: {}",
        stderr(&foreign)
    );
    let foreign = String::from_utf8(foreign.stdout)?.trim().to_owned();
    let (status, body) = activate_raw(&portal, &foreign).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_code")),
        "{body}"
    );

    // Expired: a code valid for 7 days, eight days later.
    let expiring = portal.cli(&["codes", "new", "--expires", "7d"])?;
    let later = now_plus_days(8);
    portal.set_clock(&later).await?;
    let (status, body) = activate_raw(&portal, &expiring).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::GONE, Some("code_expired")),
        "{body}"
    );
    let out = Agent::new()?.activate(&portal, &expiring)?;
    assert!(
        stderr(&out).to_lowercase().contains("expired"),
        "{}",
        stderr(&out)
    );

    // Codes from the API work like the CLI's.
    let made = portal
        .api_ok(
            Method::POST,
            "/activation-codes",
            Some(json!({ "uses": 1 })),
            StatusCode::CREATED,
        )
        .await?;
    let api_code = made["code"].as_str().context("no code")?;
    assert_eq!(
        activate_raw(&portal, api_code).await?.0,
        StatusCode::CREATED
    );
    Ok(())
}

/// Changes one character of a code so the check character no longer fits.
fn typo(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let i = chars
        .iter()
        .position(|c| c.is_ascii_alphanumeric())
        .unwrap_or(0);
    chars[i] = if chars[i] == '7' { '8' } else { '7' };
    chars.into_iter().collect()
}

/// RFC 3339 for now + `days`.
fn now_plus_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_attempts_are_rate_limited_per_address() -> Result<()> {
    let portal = Portal::start_with(PortalOptions {
        activation_rate: 3,
        ..Default::default()
    })
    .await?;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(activate_raw(&portal, "ABCD-EFGH-JKMN").await?);
    }
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !limited.is_empty(),
        "no 429 after 5 attempts at 3/min: {statuses:?}"
    );
    assert_eq!(limited[0].1["error"], "rate_limited");
    // Even a good code waits its turn: the limit is on attempts, not failures.
    let out = Agent::new()?.activate(&portal, &portal.new_code()?)?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("too many"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// The MAC `agent/src/hostinfo.rs` reports when its local address is the loopback (the portal here is on
/// 127.0.0.1): that of the first interface by name that is not the loopback and has a non-zero 6-byte
/// hardware address. Read from /sys/class/net (reading only).
fn expected_mac() -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dir = std::path::Path::new("/sys/class/net").join(&name);
        // ARPHRD_LOOPBACK
        if std::fs::read_to_string(dir.join("type"))
            .unwrap_or_default()
            .trim()
            == "772"
        {
            continue;
        }
        let addr = std::fs::read_to_string(dir.join("address")).unwrap_or_default();
        let addr = addr.trim();
        if is_mac(addr) && addr != "00:00:00:00:00:00" {
            return Ok(addr.to_owned());
        }
    }
    anyhow::bail!("this machine has no interface with a MAC besides the loopback")
}

/// Six lowercase hex pairs joined by colons.
fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':').all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_carries_the_hosts_facts_and_the_portal_keeps_them() -> Result<()> {
    use outpost_cloud_link::protocol::{AgentMessage, Envelope};
    use outpost_cloud_link::topics::{self, UpKind};
    use outpost_cloud_link::AgentId;

    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    let mac = expected_mac()?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned();

    // Activation already said who the host is.
    let record = portal.agent(&id).await?;
    assert_eq!(record["mac"], mac.as_str(), "MAC at activation: {record}");
    assert_eq!(record["hostname"], hostname.as_str(), "{record}");
    assert_eq!(record["version"], env!("CARGO_PKG_VERSION"), "{record}");

    // Hellos are not retained: listen, as the portal does, before the agent starts.
    let hello_topic = topics::up(&AgentId::parse(&id)?, UpKind::Hello);
    let mut watch =
        crate::presence::admin_subscribed(&portal, "e2e-hello-watch", &hello_topic).await?;
    agent.start()?;
    let p = crate::presence::next_publish(&mut watch, Duration::from_secs(20))
        .await?
        .with_context(|| format!("no hello within 20 s:\n{}", agent.log_tail()))?;
    let env = Envelope::decode(UpKind::Hello, &p.payload)?;
    let AgentMessage::Hello(hello) = env.msg else {
        anyhow::bail!("the hello topic carried {:?}", env.msg);
    };

    // What the hello says, checked against the host.
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(serde_json::to_value(hello.platform)?, "linux");
    assert_eq!(hello.hostname, hostname);
    assert_eq!(hello.local_ip.as_deref(), Some("127.0.0.1"), "{hello:?}");
    let hello_mac = hello.mac.clone().context("the hello has no MAC")?;
    assert!(is_mac(&hello_mac), "not a MAC: {hello_mac:?}");
    assert_eq!(hello_mac, mac, "the hello's MAC is not the host's");
    let carrier = hello
        .interfaces
        .iter()
        .find(|i| i.mac.as_deref() == Some(hello_mac.as_str()))
        .with_context(|| format!("no reported interface has the hello's MAC: {hello:?}"))?;
    let sys_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", carrier.name))?;
    assert_eq!(sys_mac.trim(), hello_mac, "interface {}", carrier.name);
    assert!(
        hello.interfaces.iter().all(|i| i.name != "lo"),
        "the loopback is reported: {hello:?}"
    );
    for cap in ["rename", "cleanup", "ping"] {
        assert!(
            hello.capabilities.iter().any(|c| c == cap),
            "the hello does not offer {cap}: {:?}",
            hello.capabilities
        );
    }
    assert!(
        !hello.capabilities.iter().any(|c| c == "discovery"),
        "discovery is off in this agent's config but offered: {:?}",
        hello.capabilities
    );
    let target = hello.target.clone().context("the hello has no target")?;

    // What the portal keeps of it.
    let record = portal
        .wait_agent(&id, "the portal to store the hello", |a| {
            a["online"] == true && a["target"].is_string()
        })
        .await
        .with_context(|| agent.log_tail())?;
    assert_eq!(record["mac"], hello_mac.as_str(), "{record}");
    assert_eq!(record["platform"], "linux", "{record}");
    assert_eq!(record["version"], hello.version.as_str(), "{record}");
    assert_eq!(record["hostname"], hostname.as_str(), "{record}");
    assert_eq!(record["local_ip"], "127.0.0.1", "{record}");
    assert_eq!(record["target"], target.as_str(), "{record}");
    let interfaces = wait_for(
        "the hello's interfaces in the agent's data",
        Duration::from_secs(10),
        || async {
            let data = portal.reports(&id).await?;
            Ok(data["reports"].as_array().and_then(|r| {
                r.iter()
                    .find(|r| r["kind"] == "interfaces")
                    .map(|r| r["body"].clone())
            }))
        },
    )
    .await?;
    assert_eq!(
        interfaces,
        serde_json::to_value(&hello.interfaces)?,
        "the portal's interfaces are not the hello's"
    );
    Ok(())
}
