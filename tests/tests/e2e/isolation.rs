//! The broker keeps agents apart and has no way in without TLS and credentials.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use outpost_cloud_link::protocol::{Command, CommandEnvelope};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::topics;
use outpost_cloud_link::AgentId;
use outpost_tests::{wait_for, Agent, Portal};
use rumqttc::{Incoming, SubscribeReasonCode};
use serde_json::Value;

use crate::mqtt;
use crate::presence::admin_session;

/// The id of A's forged command: far above any id the portal hands out in a test.
const FORGED_ID: u64 = 900_000_001;

/// Waits until `status --json` of `agent` shows `name`.
async fn wait_status_name(agent: &Agent, name: &str) -> Result<()> {
    wait_for(
        &format!("the agent to call itself {name:?}"),
        Duration::from_secs(15),
        || async { Ok((agent.status()?["name"] == name).then_some(())) },
    )
    .await
    .with_context(|| agent.log_tail())
}

fn has_report(data: &Value, kind: &str) -> bool {
    data["reports"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["kind"] == kind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_read_or_write_another_agents_topics() -> Result<()> {
    let portal = Portal::start().await?;
    let a = Agent::new()?;
    let a_id = a.activate_new(&portal)?;
    let mut b = Agent::new()?;
    let b_id = b.activate_new(&portal)?;
    b.start()?;
    portal
        .wait_agent(&b_id, "B online", |x| x["online"] == true)
        .await?;

    let mut as_a = mqtt::connect(mqtt::agent_session(&a.identity()?)?).await?;
    for filter in [
        format!("agents/{b_id}/down/#"),
        format!("agents/{b_id}/up/#"),
        "#".into(),
        "agents/+/down/cmd".into(),
    ] {
        let codes = as_a.subscribe(&filter).await?;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Failure],
            "A may not subscribe to {filter}"
        );
    }
    let own = as_a.subscribe(&format!("agents/{a_id}/down/#")).await?;
    assert!(
        matches!(own[..], [SubscribeReasonCode::Success(_)]),
        "A's own commands: {own:?}"
    );

    // A command to B never reaches A, even once B has provably received it.
    portal.rename(&b_id, "B renamed").await?;
    wait_status_name(&b, "B renamed").await?;
    let leaked = as_a
        .next_matching(Duration::from_secs(1), |i| match i {
            Incoming::Publish(p) => Some(p.topic.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(leaked, None, "A received another agent's message");

    // The dangerous direction: A forges a well-formed command into B's command topic. Mosquitto 2.0 on
    // MQTT 3.1.1 acknowledges a denied QoS 1 publish like any other (v3.1.1 has no reason code) and drops
    // it; A stays connected. B must not run it.
    let b_topic = topics::commands(&AgentId::parse(&b_id)?);
    let forged = CommandEnvelope::new(
        FORGED_ID,
        Command::Rename {
            name: "forged-by-A".into(),
        },
    )
    .encode();
    as_a.publish(&b_topic, forged.clone())
        .await
        .context("the broker should PUBACK (and drop) a denied publish on MQTT 3.1.1")?;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let name = b.status()?["name"].clone();
        assert_eq!(
            name,
            "B renamed",
            "A's forged command renamed B: {}",
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(portal.agent(&b_id).await?["name"], "B renamed");
    assert!(
        b.is_running(),
        "B died after A's forged command:\n{}",
        b.log_tail()
    );
    let dropped = as_a
        .next_matching(Duration::from_millis(100), |i| {
            matches!(i, Incoming::Disconnect).then_some(())
        })
        .await?;
    assert_eq!(
        dropped, None,
        "the broker disconnected A for a denied publish"
    );

    // What A publishes into B's subtree goes nowhere; into its own, it arrives (so A's connection is alive).
    as_a.publish(&mqtt::report_topic(&b_id)?, mqtt::report(0, 0, "spoofed"))
        .await?;
    as_a.publish(&mqtt::report_topic(&a_id)?, mqtt::report(0, 0, "genuine"))
        .await?;
    wait_for("A's own report", Duration::from_secs(10), || async {
        let d = portal.reports(&a_id).await?;
        Ok(has_report(&d, "genuine").then_some(()))
    })
    .await?;
    let b_data = portal.reports(&b_id).await?;
    assert!(
        !has_report(&b_data, "spoofed"),
        "A wrote into B's data: {b_data}"
    );

    // The control: the very same bytes, published by the portal's admin, do rename B. So the forged
    // command was well formed and its id unused; only the broker kept it from B.
    let mut admin = mqtt::connect(admin_session(&portal, "e2e-isolation-admin")?).await?;
    admin.publish(&b_topic, forged).await?;
    wait_status_name(&b, "forged-by-A").await?;

    // A's credentials do not log in as B.
    let mut as_b = mqtt::agent_session(&a.identity()?)?;
    as_b.username = b_id.clone();
    as_b.client_id = b_id.clone();
    assert!(
        mqtt::connect(as_b).await.is_err(),
        "A's secret opened B's account"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_mqtt_and_wrong_secrets_are_refused() -> Result<()> {
    let portal = Portal::start().await?;
    let a = Agent::new()?;
    a.activate_new(&portal)?;

    // A plaintext MQTT 3.1.1 CONNECT to the listener gets no CONNACK.
    let mut tcp = TcpStream::connect(("127.0.0.1", portal.mqtts))?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    let connect: &[u8] = &[
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, b'p',
        b'l', b'a', b'n',
    ];
    tcp.write_all(connect)?;
    let mut buf = [0u8; 4];
    let got = tcp.read(&mut buf).unwrap_or(0);
    assert!(
        got == 0 || buf[0] != 0x20,
        "the listener answered plaintext MQTT with a CONNACK"
    );

    // The broker's configuration has exactly one listener, and it is TLS.
    let conf = std::fs::read_to_string(portal.data().join("data/broker/mosquitto.conf"))?;
    let listeners: Vec<_> = conf
        .lines()
        .filter(|l| l.trim_start().starts_with("listener "))
        .collect();
    assert_eq!(listeners.len(), 1, "{conf}");
    assert!(
        conf.lines()
            .any(|l| l.trim_start().starts_with("certfile ")),
        "{conf}"
    );
    assert!(
        conf.lines().any(|l| l.trim() == "allow_anonymous false"),
        "{conf}"
    );

    // TLS with a wrong secret is refused.
    let mut wrong = mqtt::agent_session(&a.identity()?)?;
    wrong.password = "not-the-secret".into();
    assert!(mqtt::connect(wrong).await.is_err());

    // TLS with no account at all is refused.
    let ca = std::fs::read(portal.ca_path())?;
    let nobody = SessionConfig::for_agent(
        &format!("127.0.0.1:{}", portal.mqtts),
        &AgentId::parse("nobody")?,
        "x",
        ca,
    );
    assert!(mqtt::connect(nobody).await.is_err());

    // And the right secret works, so the refusals above are about the secret.
    let right = mqtt::agent_session(&a.identity()?)?;
    mqtt::connect(right)
        .await
        .context("the real credentials should connect")?;
    Ok(())
}
