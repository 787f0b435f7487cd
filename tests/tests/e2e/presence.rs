//! Presence: the agent's online presence is retained, and when it vanishes without a word (SIGKILL) the
//! broker publishes its last will, an unsequenced (`seq` 0) offline presence, retained too; the portal
//! shows it offline from that will alone, long before its `--offline-after` silence rule could.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use outpost_cloud_link::protocol::{AgentMessage, Envelope, Presence};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::topics::{self, UpKind};
use outpost_cloud_link::AgentId;
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use rumqttc::{Incoming, Publish, SubscribeReasonCode};

use crate::mqtt;

/// The agent's MQTT keepalive (`SessionConfig::for_agent`): Mosquitto gives up on a silent client after
/// 1.5 times this, so a will must be out by then at the latest.
const AGENT_KEEPALIVE: Duration = Duration::from_secs(30);

/// A session with the portal's own broker credentials (its dynsec role may read every agent's `up/` and
/// publish to every agent's `down/`), under a client id of its own so the portal's connection is left alone.
pub fn admin_session(portal: &Portal, client_id: &str) -> Result<SessionConfig> {
    let (user, pass) = portal.admin_credentials()?;
    let mut cfg = SessionConfig::for_agent(
        &format!("127.0.0.1:{}", portal.mqtts),
        &AgentId::parse(client_id)?,
        &pass,
        std::fs::read(portal.ca_path())?,
    );
    cfg.username = user;
    cfg.client_id = client_id.into();
    cfg.clean_session = true;
    cfg.last_will = None;
    Ok(cfg)
}

/// Connects as the portal's admin and subscribes to `filter`, failing unless the broker grants it.
pub async fn admin_subscribed(
    portal: &Portal,
    client_id: &str,
    filter: &str,
) -> Result<mqtt::Client> {
    let mut admin = mqtt::connect(admin_session(portal, client_id)?).await?;
    let codes = admin.subscribe(filter).await?;
    if !matches!(codes[..], [SubscribeReasonCode::Success(_)]) {
        bail!("the portal's admin may not subscribe to {filter}: {codes:?}");
    }
    Ok(admin)
}

/// The next PUBLISH on `client` within `timeout` (`None`: none came).
pub async fn next_publish(client: &mut mqtt::Client, timeout: Duration) -> Result<Option<Publish>> {
    client
        .next_matching(timeout, |i| match i {
            Incoming::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
}

/// Decodes a presence message (failing on anything else).
fn presence(p: &Publish) -> Result<(Envelope, bool)> {
    let env = Envelope::decode(UpKind::Presence, &p.payload)
        .with_context(|| format!("not a presence on {}: {:?}", p.topic, p.payload))?;
    match env.msg {
        AgentMessage::Presence(Presence { online }) => Ok((env, online)),
        ref other => bail!("a presence topic carried {other:?}"),
    }
}

fn presence_topic(id: &str) -> Result<String> {
    Ok(topics::up(&AgentId::parse(id)?, UpKind::Presence))
}

/// Starts a portal and a running agent, online; returns them with the agent id.
async fn online_agent(opts: PortalOptions) -> Result<(Portal, Agent, String)> {
    let portal = Portal::start_with(opts).await?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    portal
        .wait_agent(&id, "the agent online", |a| a["online"] == true)
        .await
        .with_context(|| agent.log_tail())?;
    Ok((portal, agent, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_gets_the_retained_online_presence_and_a_goodbye_replaces_it() -> Result<()>
{
    let (portal, mut agent, id) = online_agent(PortalOptions::default()).await?;
    let topic = presence_topic(&id)?;

    // Subscribed only now, well after the agent said it is online: what comes is the broker's retained copy.
    let mut late = admin_subscribed(&portal, "e2e-presence-late", &topic).await?;
    let first = next_publish(&mut late, Duration::from_secs(5))
        .await?
        .context(
            "a subscriber arriving after the agent went online got no presence: it is not retained",
        )?;
    assert!(
        first.retain,
        "the first presence a late subscriber gets is not the retained one: {first:?}"
    );
    let (env, online) = presence(&first)?;
    assert!(
        online,
        "the retained presence of a running agent says offline: {env:?}"
    );
    assert!(
        env.seq > 0,
        "the online presence is the agent's own, sequenced message: {env:?}"
    );
    drop(late);

    // A clean stop says goodbye: a sequenced offline presence, which replaces the retained online one.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_tail());
    portal
        .wait_agent(&id, "offline after a clean stop", |a| a["online"] == false)
        .await?;
    let mut after = admin_subscribed(&portal, "e2e-presence-after-stop", &topic).await?;
    let retained = next_publish(&mut after, Duration::from_secs(5))
        .await?
        .context("no retained presence after the agent's goodbye")?;
    assert!(retained.retain, "{retained:?}");
    let (env, online) = presence(&retained)?;
    assert!(
        !online,
        "the retained presence still says online after a clean stop: {env:?}"
    );
    assert!(
        env.seq > 0,
        "a clean stop's offline presence is the agent's goodbye, not its will: {env:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_shown_offline_by_its_last_will() -> Result<()> {
    // The silence rule would need 10 minutes: an offline within the keepalive bound can only come from a
    // presence message.
    let (portal, mut agent, id) = online_agent(PortalOptions {
        offline_after_s: 600,
        ..Default::default()
    })
    .await?;
    let topic = presence_topic(&id)?;
    let everything = topics::agent_up_filter(&AgentId::parse(&id)?);

    // Watch all the agent sends, as the portal does, from before the kill.
    let mut watch = admin_subscribed(&portal, "e2e-presence-watch", &everything).await?;
    // Read the retained online presence and a couple of heartbeats, so the watch is known to be live.
    let mut last_seq_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heartbeats = 0;
    while heartbeats < 2 {
        if Instant::now() > deadline {
            bail!(
                "no heartbeats seen on {everything} within 10 s:\n{}",
                agent.log_tail()
            );
        }
        if let Some(p) = next_publish(&mut watch, Duration::from_secs(1)).await? {
            let kind = topics::parse_up(&p.topic).map(|(_, k)| k);
            let env = Envelope::decode(kind.context("not an up topic")?, &p.payload)?;
            last_seq_seen = last_seq_seen.max(env.seq);
            if kind == Some(UpKind::Heartbeat) {
                heartbeats += 1;
            }
        }
    }

    // SIGKILL: no goodbye is possible; only this agent's own pid is signalled.
    let pid = agent.pid().context("the agent is not running")?;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    let killed_at = Instant::now();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(10)).await?,
        None,
        "the agent should have died of SIGKILL"
    );

    // On the wire: what the agent had in flight, then the will, with seq 0, and no sequenced offline.
    let will = loop {
        let p = next_publish(&mut watch, AGENT_KEEPALIVE * 3 / 2)
            .await?
            .with_context(|| {
                format!(
                    "no offline presence within {:?} of the SIGKILL",
                    AGENT_KEEPALIVE * 3 / 2
                )
            })?;
        let kind = topics::parse_up(&p.topic).map(|(_, k)| k);
        if kind == Some(UpKind::Presence) {
            let (env, online) = presence(&p)?;
            assert!(!online, "an online presence after the SIGKILL: {env:?}");
            break (p, env);
        }
        let env = Envelope::decode(kind.context("not an up topic")?, &p.payload)?;
        last_seq_seen = last_seq_seen.max(env.seq);
    };
    let will_after = killed_at.elapsed();
    let (will_pub, will_env) = will;
    assert_eq!(
        will_env.seq, 0,
        "the offline presence after a SIGKILL is not the broker's last will (seq 0) but a goodbye: {will_env:?}"
    );
    assert_eq!(will_env, Envelope::last_will(), "{will_pub:?}");

    // The portal shows it offline from that will, within the broker's bound (keepalive × 1.5).
    let record = wait_for(
        "the portal to show the killed agent offline",
        AGENT_KEEPALIVE * 3 / 2,
        || async {
            let a = portal.agent(&id).await?;
            Ok((a["online"] == false).then_some(a))
        },
    )
    .await
    .with_context(|| portal.log_tail())?;
    let offline_after = killed_at.elapsed();
    eprintln!(
        "SIGKILL -> will on the wire: {will_after:?}; SIGKILL -> portal shows offline: {offline_after:?}"
    );
    // No goodbye reached the portal: the will is not part of the agent's sequence, so the last sequenced
    // message the portal counted is the last one seen before the will.
    assert_eq!(
        record["link"]["last_seq"].as_u64(),
        Some(last_seq_seen),
        "the portal counted a sequenced message the watch did not see before the will: {record}"
    );
    assert_eq!(record["link"]["gaps"], 0, "{record}");

    // The will is retained: a newcomer learns the agent is offline, from the will.
    let mut late = admin_subscribed(&portal, "e2e-presence-late", &topic).await?;
    let retained = next_publish(&mut late, Duration::from_secs(5))
        .await?
        .context("no retained presence after the will")?;
    assert!(retained.retain, "{retained:?}");
    let (env, online) = presence(&retained)?;
    assert!(
        !online && env.seq == 0,
        "the retained presence is not the will: {env:?}"
    );
    Ok(())
}
