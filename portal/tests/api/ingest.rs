//! Ingest: sequence dedupe and gap counting, the last will, hello facts, heartbeats, unknown agents.

use outpost_cloud_link::protocol::{AgentMessage, Heartbeat, Presence};
use outpost_portal::ingest::Disposition;

use crate::harness::{hello, id_of, Harness};

fn heartbeat(depth: u64, dropped: u64) -> AgentMessage {
    AgentMessage::Heartbeat(Heartbeat {
        uptime_s: 1,
        outbox_depth: depth,
        outbox_dropped: dropped,
    })
}

#[tokio::test]
async fn duplicates_are_dropped_and_gaps_counted() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    let hb = || heartbeat(0, 0);
    assert_eq!(h.send_seq(&id, 1, 0, hb()).await, Disposition::Applied);
    assert_eq!(h.send_seq(&id, 2, 0, hb()).await, Disposition::Applied);
    assert_eq!(h.send_seq(&id, 2, 0, hb()).await, Disposition::Duplicate);
    assert_eq!(h.send_seq(&id, 1, 0, hb()).await, Disposition::Duplicate);
    assert_eq!(h.send_seq(&id, 5, 0, hb()).await, Disposition::Applied);
    assert_eq!(h.send_seq(&id, 6, 0, hb()).await, Disposition::Applied);
    assert_eq!(
        h.send_seq(&id, 9, 0, heartbeat(4, 2)).await,
        Disposition::Applied
    );
    let link = h.agent(&id).await["link"].clone();
    assert_eq!(link["last_seq"], 9);
    assert_eq!(link["received"], 5);
    assert_eq!(link["duplicates"], 2);
    assert_eq!(link["gaps"], 4, "3, 4, 7 and 8 never arrived");
    assert_eq!(link["outbox_depth"], 4);
    assert_eq!(link["outbox_dropped"], 2);
}

#[tokio::test]
async fn the_last_will_is_never_a_duplicate_and_marks_the_agent_offline() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.send_seq(&id, 1, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    h.send_seq(&id, 2, 0, hello("gw")).await;
    assert_eq!(h.agent(&id).await["online"], true);
    for _ in 0..2 {
        let will = AgentMessage::Presence(Presence { online: false });
        assert_eq!(h.send_seq(&id, 0, 0, will).await, Disposition::Applied);
    }
    let agent = h.agent(&id).await;
    assert_eq!(agent["online"], false);
    assert_eq!(agent["link"]["last_seq"], 2);
    assert_eq!(agent["link"]["duplicates"], 0);
    assert_eq!(
        agent["link"]["received"], 2,
        "the broker's last will is not the agent's message"
    );
}

#[tokio::test]
async fn hello_records_what_the_agent_says_about_itself() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("gw").await);
    h.connect(&id, "gw", 0).await;
    let agent = h.agent(&id).await;
    assert_eq!(agent["version"], "0.1.1");
    assert_eq!(agent["platform"], "router");
    assert_eq!(agent["hostname"], "gw-host");
    assert_eq!(agent["mac"], "02:00:00:00:00:02");
    assert_eq!(agent["local_ip"], "192.0.2.9");
    assert_eq!(agent["online"], true);
    assert_eq!(agent["last_seen"], "2026-01-15T12:00:00.000Z");
    assert_eq!(
        agent["name"], "gw",
        "the agent's hello never renames it on the portal"
    );
}

#[tokio::test]
async fn messages_of_unknown_agents_are_ignored() {
    let h = Harness::new().await;
    assert_eq!(
        h.send("ag-stranger", 0, hello("x")).await,
        Disposition::UnknownAgent
    );
    let list = h.op(axum::http::Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list.body["total"], 0);
}
