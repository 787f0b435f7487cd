//! Device control through the API: block, unblock and power round trips with simulated acknowledgements
//! (done, and failed with the agent's code), `202` without a wait, what the commands carry, outlet bindings
//! (validation, redaction, history), the blockable marking per platform and segment, the agent's `blocks`
//! report, cleanup and deletion, and the 400/404/409 answers.

use std::net::Ipv4Addr;

use axum::http::{Method, StatusCode};
use outpost_cloud_link::control::{
    codes, BlockMethod, BlockRecord, BlocksReport, DeviceRef, Outlet, PowerAction, BLOCKS_REPORT,
};
use outpost_cloud_link::inventory::{delta_reports, snapshot_reports, Device};
use outpost_cloud_link::protocol::{
    Ack, AgentMessage, Command, CommandEnvelope, Outcome, Platform, Presence, Report, Segment,
};
use outpost_portal::ingest::Disposition;
use serde_json::{json, Value};

use crate::harness::{hello_on, sample_device, Harness, Response};

const PLAIN: &str = "00:1a:11:00:00:01";
const TAGGED: &str = "00:1a:11:00:00:14";
const SHELLY_PASSWORD: &str = "plug-pass-0001";
const COMMUNITY: &str = "community-0002";
const AUTH_PASSWORD: &str = "auth-pass-0003";
const PRIV_PASSWORD: &str = "priv-pass-0004";

fn device(mac: &str, vlan: Option<u16>, interface: &str, ipv4: [u8; 4]) -> Device {
    sample_device(mac, vlan, interface, Ipv4Addr::from(ipv4))
}

/// `PLAIN` on the untagged `lan0`, `TAGGED` on `lan0.20` (VLAN 20, tagged).
fn devices() -> Vec<Device> {
    vec![
        device(PLAIN, None, "lan0", [192, 0, 2, 50]),
        device(TAGGED, Some(20), "lan0.20", [198, 51, 100, 7]),
    ]
}

fn segments() -> Vec<Segment> {
    vec![
        Segment {
            interface: "lan0".into(),
            vlan: None,
            tagged: false,
        },
        Segment {
            interface: "lan0.20".into(),
            vlan: Some(20),
            tagged: true,
        },
    ]
}

/// An activated agent on `platform`, connected (presence + hello with the segments), with the two devices.
async fn site(h: &Harness, platform: Platform) -> String {
    let id = h.activate("gw").await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    h.send(&id, 0, hello_on("gw", platform, segments())).await;
    for r in delta_reports(&devices(), &[]) {
        assert_eq!(
            h.send(&id, 0, AgentMessage::Report(r)).await,
            Disposition::Applied
        );
    }
    id
}

fn tagged_id() -> String {
    format!("{TAGGED}@20")
}

fn path(id: &str, device: &str, rest: &str) -> String {
    format!("/api/v1/agents/{id}/devices/{device}{rest}")
}

/// Posts to a control route while a simulated agent acknowledges the next command sent with `outcome`
/// and `result`; returns the answer and the command the agent got.
async fn with_ack(
    h: &Harness,
    path: &str,
    body: Option<Value>,
    outcome: Outcome,
    result: Option<Value>,
) -> (Response, CommandEnvelope) {
    let request = h.op(Method::POST, path, body);
    let agent = async {
        let (to, cmd) = h.sent_rx.lock().await.recv().await.unwrap();
        let ack = Ack {
            command_id: cmd.id,
            outcome,
            result,
        };
        assert_eq!(
            h.send(to.as_str(), 0, AgentMessage::Ack(ack)).await,
            Disposition::Applied
        );
        cmd
    };
    tokio::join!(request, agent)
}

async fn get(h: &Harness, path: &str) -> Value {
    let resp = h.op(Method::GET, path, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{path}: {:?}", resp.body);
    resp.body
}

/// The listed device with this id.
async fn listed(h: &Harness, id: &str, device: &str) -> Value {
    let list = get(h, &format!("/api/v1/agents/{id}/devices")).await;
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device)
        .unwrap_or_else(|| panic!("{device} not listed: {list}"))
        .clone()
}

async fn history(h: &Harness, id: &str) -> Vec<Value> {
    get(h, &format!("/api/v1/agents/{id}/history")).await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn count_rows(h: &Harness, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE agent_id = ?"))
        .bind(id)
        .fetch_one(h.app.store().pool())
        .await
        .unwrap()
}

fn block_record(mac: &str, vlan: Option<u16>, ipv4: [u8; 4]) -> BlockRecord {
    BlockRecord {
        device: DeviceRef::new(mac, vlan).unwrap(),
        interface: "lan0".into(),
        method: BlockMethod::Nftables,
        ipv4: Some(Ipv4Addr::from(ipv4)),
        ipv6_uncovered: Vec::new(),
        since_ms: 1_700_000_000_000,
    }
}

fn shelly() -> Value {
    json!({"outlet": {"type": "shelly", "host": "192.0.2.80", "switch_id": 1, "password": SHELLY_PASSWORD},
           "cycle_delay_secs": 3})
}

fn poe_v3() -> Value {
    json!({"outlet": {"type": "poe_snmp", "host": "switch.lan:1161", "group": 1, "port": 7,
        "snmp": {"version": "v3", "user": "ops", "auth_protocol": "sha", "auth_password": AUTH_PASSWORD,
                 "priv_protocol": "aes", "priv_password": PRIV_PASSWORD}}})
}

fn assert_no_secret(v: &Value) {
    let text = v.to_string();
    for secret in [SHELLY_PASSWORD, COMMUNITY, AUTH_PASSWORD, PRIV_PASSWORD] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

#[tokio::test]
async fn block_and_unblock_round_trip_with_the_ipv4_and_the_record() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let record = block_record(PLAIN, None, [192, 0, 2, 50]);
    let (resp, cmd) = with_ack(
        &h,
        &path(&id, PLAIN, "/block"),
        None,
        Outcome::Done,
        Some(serde_json::to_value(&record).unwrap()),
    )
    .await;
    assert_eq!(
        cmd.cmd,
        Command::Block {
            device: PLAIN.parse().unwrap(),
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 50)),
        }
    );
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["id"], cmd.id);
    assert_eq!(resp.body["kind"], "block");
    assert_eq!(resp.body["status"], "done");
    assert_eq!(resp.body["code"], Value::Null);
    assert_eq!(resp.body["result"]["method"], "nftables");
    assert_eq!(resp.body["result"]["ipv4"], "192.0.2.50");

    // The acknowledgement marks the device blocked at once, in the list and on its own.
    let one = get(&h, &path(&id, PLAIN, "")).await;
    assert_eq!(one["blocked"], true);
    assert_eq!(one["block"]["since_ms"], 1_700_000_000_000i64);
    assert_eq!(one["id"], PLAIN);
    assert_eq!(one["ipv4"], "192.0.2.50");
    assert_eq!(listed(&h, &id, PLAIN).await["blocked"], true);

    let (resp, cmd) = with_ack(&h, &path(&id, PLAIN, "/unblock"), None, Outcome::Done, None).await;
    assert_eq!(
        cmd.cmd,
        Command::Unblock {
            device: PLAIN.parse().unwrap()
        }
    );
    assert_eq!(
        (resp.status, &resp.body["status"]),
        (StatusCode::OK, &json!("done"))
    );
    let one = get(&h, &path(&id, PLAIN, "")).await;
    assert_eq!(one["blocked"], false);
    assert_eq!(one["block"], Value::Null);

    let lines = history(&h, &id).await;
    let control: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|l| l["action"].as_str().unwrap().starts_with("device_"))
        .map(|l| {
            (
                l["action"].as_str().unwrap(),
                l["actor"].as_str().unwrap(),
                l["details"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(control.len(), 2, "{lines:?}");
    assert_eq!(control[0].0, "device_block");
    assert_eq!(control[0].1, "user:admin (token 1)");
    assert!(
        control[0]
            .2
            .starts_with(&format!("{PLAIN}: block (last seen at 192.0.2.50)")),
        "{}",
        control[0].2
    );
    assert_eq!(control[1].0, "device_unblock");
    assert!(control[1].2.starts_with(&format!("{PLAIN}: unblock")));
}

#[tokio::test]
async fn a_refused_block_is_200_failed_with_the_agents_code() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Box).await;
    let (resp, cmd) = with_ack(
        &h,
        &path(&id, &tagged_id(), "/block"),
        None,
        Outcome::failed_with(
            codes::VLAN_TAGGED_UNBLOCKABLE,
            "lan0.20 is a tagged VLAN interface",
        ),
        None,
    )
    .await;
    // Still sent, with the device's VLAN.
    assert_eq!(
        cmd.cmd,
        Command::Block {
            device: DeviceRef::new(TAGGED, Some(20)).unwrap(),
            ipv4: Some(Ipv4Addr::new(198, 51, 100, 7)),
        }
    );
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body["status"], "failed");
    assert_eq!(resp.body["code"], "vlan_tagged_unblockable");
    assert_eq!(resp.body["message"], "lan0.20 is a tagged VLAN interface");
    assert_eq!(
        get(&h, &path(&id, &tagged_id(), "")).await["blocked"],
        false
    );
    // The stored command says the same.
    let stored = get(&h, &format!("/api/v1/agents/{id}/commands/{}", cmd.id)).await;
    assert_eq!(stored["code"], "vlan_tagged_unblockable");
    assert_eq!(stored["status"], "failed");
}

#[tokio::test]
async fn wait_ms_0_answers_202_and_the_outcome_is_polled() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let resp = h
        .op(Method::POST, &path(&id, PLAIN, "/block?wait_ms=0"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);
    assert_eq!(resp.body["status"], "pending");
    let cid = resp.body["id"].as_u64().unwrap();
    let sent = h.sent_to(&id);
    assert_eq!(
        sent.last().unwrap().id,
        cid,
        "sent at once to the online agent"
    );

    h.send(
        &id,
        0,
        AgentMessage::Ack(Ack {
            command_id: cid,
            outcome: Outcome::failed_with(codes::GATEWAY_UNKNOWN, "no gateway on lan0"),
            result: None,
        }),
    )
    .await;
    let polled = get(&h, &format!("/api/v1/agents/{id}/commands/{cid}")).await;
    assert_eq!(polled["status"], "failed");
    assert_eq!(polled["code"], "gateway_unknown");

    // A short wait that runs out is 202 too.
    let resp = h
        .op(Method::POST, &path(&id, PLAIN, "/unblock?wait_ms=50"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let resp = h
        .op(
            Method::POST,
            &path(&id, PLAIN, "/block?wait_ms=60001"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .starts_with("wait_ms"));
}

#[tokio::test]
async fn power_carries_the_binding_and_reports_the_state_read_back() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Box).await;
    let put = h
        .op(
            Method::PUT,
            &path(&id, PLAIN, "/power-outlet"),
            Some(shelly()),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);

    let (resp, cmd) = with_ack(
        &h,
        &path(&id, PLAIN, "/power"),
        Some(json!({"action": "cycle"})),
        Outcome::Done,
        Some(json!({"action": "cycle", "state": "on"})),
    )
    .await;
    let Command::Power {
        device,
        action,
        binding,
    } = &cmd.cmd
    else {
        panic!("not a power command: {:?}", cmd.cmd)
    };
    assert_eq!(device, &PLAIN.parse::<DeviceRef>().unwrap());
    assert_eq!(*action, PowerAction::Cycle);
    assert_eq!(binding.cycle_delay_secs, 3);
    // The agent gets the secret; the operator never does.
    assert_eq!(
        binding.outlet,
        Outlet::Shelly {
            host: "192.0.2.80".into(),
            switch_id: 1,
            password: Some(SHELLY_PASSWORD.into()),
        }
    );
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["kind"], "power");
    assert_eq!(resp.body["status"], "done");
    assert_eq!(
        resp.body["result"],
        json!({"action": "cycle", "state": "on"})
    );
    assert_no_secret(&resp.body);

    let (resp, _) = with_ack(
        &h,
        &path(&id, PLAIN, "/power"),
        Some(json!({"action": "off"})),
        Outcome::failed_with(codes::TIMEOUT, "no answer from 192.0.2.80 within 5 s"),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body["status"], "failed");
    assert_eq!(resp.body["code"], "timeout");

    let lines = history(&h, &id).await;
    let power: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "device_power")
        .collect();
    assert_eq!(power.len(), 2);
    assert_eq!(power[0]["actor"], "user:admin (token 1)");
    assert!(
        power[0]["details"].as_str().unwrap().starts_with(&format!(
            "{PLAIN}: power cycle via shelly 192.0.2.80 switch 1"
        )),
        "{}",
        power[0]["details"]
    );
    for line in &lines {
        assert_no_secret(line);
    }
}

#[tokio::test]
async fn power_is_refused_without_a_binding_for_an_impossible_action_and_offline() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let resp = h
        .op(
            Method::POST,
            &path(&id, PLAIN, "/power"),
            Some(json!({"action": "on"})),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "no_outlet")
    );
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "PUT /api/v1/agents/{id}/devices/{PLAIN}/power-outlet"
        )),
        "{message}"
    );

    let wol = json!({"outlet": {"type": "wake_on_lan"}});
    let put = h
        .op(Method::PUT, &path(&id, PLAIN, "/power-outlet"), Some(wol))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let resp = h
        .op(
            Method::POST,
            &path(&id, PLAIN, "/power"),
            Some(json!({"action": "off"})),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "action_unsupported")
    );
    let resp = h
        .op(
            Method::POST,
            &path(&id, PLAIN, "/power"),
            Some(json!({"action": "reboot"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.body["message"].as_str().unwrap().starts_with("action"));

    // Offline: a power action is not queued for later.
    h.send(&id, 0, AgentMessage::Presence(Presence { online: false }))
        .await;
    let before = h.sent_to(&id).len();
    let resp = h
        .op(
            Method::POST,
            &path(&id, PLAIN, "/power"),
            Some(json!({"action": "on"})),
        )
        .await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::CONFLICT, "agent_offline")
    );
    // A block is queued and goes out at the next hello.
    let resp = h
        .op(Method::POST, &path(&id, PLAIN, "/block?wait_ms=0"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(h.sent_to(&id).len(), before, "nothing sent while offline");
    h.send(&id, 0, hello_on("gw", Platform::Router, segments()))
        .await;
    let sent = h.sent_to(&id);
    assert_eq!(sent.len(), before + 1);
    assert_eq!(sent.last().unwrap().id, resp.body["id"].as_u64().unwrap());
    assert!(
        !history(&h, &id)
            .await
            .iter()
            .any(|l| l["action"] == "device_power"),
        "refused actions write no history"
    );
}

#[tokio::test]
async fn bindings_are_validated_naming_the_field_and_never_shown_with_secrets() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let outlet = path(&id, PLAIN, "/power-outlet");
    let cases = [
        (
            json!({"outlet": {"type": "shelly", "host": ""}}),
            "outlet.host",
        ),
        (
            json!({"outlet": {"type": "tasmota", "host": "http://plug/cm"}}),
            "outlet.host",
        ),
        (
            json!({"outlet": {"type": "shelly", "host": "plug"}, "cycle_delay_secs": 601}),
            "cycle_delay_secs",
        ),
        (
            json!({"outlet": {"type": "poe_snmp", "host": "sw", "group": 1, "port": 0,
                "snmp": {"version": "v2c", "community": COMMUNITY}}}),
            "outlet.port",
        ),
        (
            json!({"outlet": {"type": "tasmota", "host": "plug", "relay": 40}}),
            "outlet.relay",
        ),
        (
            json!({"outlet": {"type": "wake_on_lan", "secureon": "01:02:03"}}),
            "outlet.secureon",
        ),
        (
            json!({"outlet": {"type": "apc_pdu", "host": "pdu", "outlet": 3,
                "snmp": {"version": "v3", "user": "ops", "auth_protocol": "md5", "auth_password": "short"}}}),
            "outlet.snmp.auth_password",
        ),
        (
            json!({"outlet": {"type": "apc_pdu", "host": "pdu", "outlet": 3,
                "snmp": {"version": "v3", "user": "ops", "priv_protocol": "aes", "priv_password": PRIV_PASSWORD}}}),
            "outlet.snmp.priv_protocol",
        ),
        (
            json!({"outlet": {"type": "shelly", "host": "plug", "switch_id": AUTH_PASSWORD}}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let resp = h.op(Method::PUT, &outlet, Some(body.clone())).await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}: {:?}",
            resp.body
        );
        let message = resp.body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{body}: {message}"
        );
        assert_no_secret(&resp.body);
    }
    assert_eq!(count_rows(&h, "outlet_bindings", &id).await, 0);

    let put = h.op(Method::PUT, &outlet, Some(poe_v3())).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_no_secret(&put.body);
    assert_eq!(put.body["device"], PLAIN);
    assert_eq!(put.body["outlet"]["host"], "switch.lan:1161");
    assert_eq!(put.body["outlet"]["snmp"]["user"], "ops");
    assert_eq!(put.body["outlet"]["snmp"]["auth_password"], "********");
    assert_eq!(put.body["outlet"]["snmp"]["priv_password"], "********");
    assert_eq!(put.body["cycle_delay_secs"], 5);
    assert_eq!(put.body["updated_by"], "user:admin (token 1)");

    let got = get(&h, &outlet).await;
    assert_eq!(got["outlet"], put.body["outlet"]);
    assert_no_secret(&got);
    let device = listed(&h, &id, PLAIN).await;
    assert_eq!(device["power_outlet"], "poe_snmp");
    assert_eq!(
        listed(&h, &id, &tagged_id()).await["power_outlet"],
        Value::Null
    );
    // The store keeps the secret for the commands.
    let stored: String =
        sqlx::query_scalar("SELECT binding FROM outlet_bindings WHERE agent_id = ?")
            .bind(&id)
            .fetch_one(h.app.store().pool())
            .await
            .unwrap();
    assert!(stored.contains(AUTH_PASSWORD));

    // A replacement, then removal; both in the history without secrets.
    let put = h
        .op(
            Method::PUT,
            &outlet,
            Some(
                json!({"outlet": {"type": "poe_snmp", "host": "sw", "group": 1,
            "port": 2, "snmp": {"version": "v2c", "community": COMMUNITY}}}),
            ),
        )
        .await;
    assert_eq!(put.body["outlet"]["snmp"]["community"], "********");
    let resp = h.op(Method::DELETE, &outlet, None).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = h.op(Method::GET, &outlet, None).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(resp.body["message"].as_str().unwrap().contains("PUT "));
    let resp = h.op(Method::DELETE, &outlet, None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let lines = history(&h, &id).await;
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .filter(|a| a.starts_with("device_power_outlet"))
        .collect();
    assert_eq!(
        actions,
        [
            "device_power_outlet_set",
            "device_power_outlet_set",
            "device_power_outlet_removed"
        ]
    );
    let set = lines
        .iter()
        .find(|l| l["action"] == "device_power_outlet_set")
        .unwrap();
    assert_eq!(set["actor"], "user:admin (token 1)");
    assert!(set["details"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{PLAIN}: poe_snmp switch.lan:1161 port 1.7")));
    for line in &lines {
        assert_no_secret(line);
    }
}

#[tokio::test]
async fn devices_are_marked_blockable_by_platform_and_tagged_segment() {
    let h = Harness::new().await;
    let linux = site(&h, Platform::Linux).await;
    let boxed = site(&h, Platform::Box).await;
    let router = site(&h, Platform::Router).await;
    let expect = [
        (
            &linux,
            PLAIN.to_owned(),
            Some("blocking_unsupported_platform"),
        ),
        (&linux, tagged_id(), Some("blocking_unsupported_platform")),
        (&boxed, PLAIN.to_owned(), None),
        (&boxed, tagged_id(), Some("vlan_tagged_unblockable")),
        (&router, PLAIN.to_owned(), None),
        (&router, tagged_id(), None),
    ];
    for (agent, device, reason) in expect {
        for view in [
            listed(&h, agent, &device).await,
            get(&h, &path(agent, &device, "")).await,
        ] {
            assert_eq!(view["blockable"], reason.is_none(), "{agent} {device}");
            assert_eq!(
                view["unblockable_reason"],
                json!(reason),
                "{agent} {device}"
            );
            assert_eq!(view["blocked"], false);
        }
    }

    // The segments are configuration: a cleanup keeps them, so the refilled inventory is marked too.
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{boxed}/cleanup"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    for r in snapshot_reports(1, &devices()) {
        h.send(&boxed, 1, AgentMessage::Report(r)).await;
    }
    let view = listed(&h, &boxed, &tagged_id()).await;
    assert_eq!(view["unblockable_reason"], "vlan_tagged_unblockable");
}

fn blocks_report(blocks: Vec<BlockRecord>) -> AgentMessage {
    AgentMessage::Report(Report {
        kind: BLOCKS_REPORT.into(),
        body: serde_json::to_value(BlocksReport { blocks }).unwrap(),
    })
}

#[tokio::test]
async fn the_blocks_report_replaces_the_blocked_devices() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let both = vec![
        block_record(PLAIN, None, [192, 0, 2, 50]),
        // The agent's MAC spelling is normalized.
        block_record(&TAGGED.to_uppercase(), Some(20), [198, 51, 100, 7]),
    ];
    assert_eq!(
        h.send(&id, 0, blocks_report(both)).await,
        Disposition::Applied
    );
    assert_eq!(listed(&h, &id, PLAIN).await["blocked"], true);
    let tagged = listed(&h, &id, &tagged_id()).await;
    assert_eq!(tagged["blocked"], true);
    assert_eq!(tagged["block"]["ipv4"], "198.51.100.7");
    assert_eq!(tagged["block"]["device"]["mac"], TAGGED);

    let one = vec![block_record(TAGGED, Some(20), [198, 51, 100, 8])];
    assert_eq!(
        h.send(&id, 0, blocks_report(one)).await,
        Disposition::Applied
    );
    assert_eq!(listed(&h, &id, PLAIN).await["blocked"], false);
    assert_eq!(
        listed(&h, &id, &tagged_id()).await["block"]["ipv4"],
        "198.51.100.8"
    );
    assert_eq!(count_rows(&h, "device_blocks", &id).await, 1);

    // Not a blocks report: dropped, the blocks stay.
    let bad = AgentMessage::Report(Report {
        kind: BLOCKS_REPORT.into(),
        body: json!({"blocks": "none"}),
    });
    assert_eq!(h.send(&id, 0, bad).await, Disposition::Malformed);
    assert_eq!(count_rows(&h, "device_blocks", &id).await, 1);
    // Nor is it kept as a generic report.
    let data = get(&h, &format!("/api/v1/agents/{id}/data")).await;
    assert!(!data.to_string().contains("\"blocks\""), "{data}");

    // After a cleanup, a report of the old epoch is dropped; the new epoch's applies.
    h.op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    let old = vec![block_record(PLAIN, None, [192, 0, 2, 50])];
    assert_eq!(
        h.send(&id, 0, blocks_report(old.clone())).await,
        Disposition::StaleEpoch
    );
    assert_eq!(count_rows(&h, "device_blocks", &id).await, 0);
    assert_eq!(
        h.send(&id, 1, blocks_report(old)).await,
        Disposition::Applied
    );
    assert_eq!(count_rows(&h, "device_blocks", &id).await, 1);
}

#[tokio::test]
async fn cleanup_and_deletion_wipe_bindings_and_blocks() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    let other = site(&h, Platform::Router).await;
    for agent in [&id, &other] {
        let put = h
            .op(
                Method::PUT,
                &path(agent, PLAIN, "/power-outlet"),
                Some(shelly()),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK);
        h.send(
            agent,
            0,
            blocks_report(vec![block_record(PLAIN, None, [192, 0, 2, 50])]),
        )
        .await;
    }
    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(count_rows(&h, "outlet_bindings", &id).await, 0);
    assert_eq!(count_rows(&h, "device_blocks", &id).await, 0);
    let resp = h
        .op(Method::GET, &path(&id, PLAIN, "/power-outlet"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // Deletion (once disconnected) wipes the other agent's rows too, and only its rows.
    let doomed = site(&h, Platform::Router).await;
    h.op(
        Method::PUT,
        &path(&doomed, PLAIN, "/power-outlet"),
        Some(shelly()),
    )
    .await;
    h.send(
        &doomed,
        0,
        blocks_report(vec![block_record(PLAIN, None, [192, 0, 2, 50])]),
    )
    .await;
    h.send(
        &doomed,
        0,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{doomed}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    assert_eq!(count_rows(&h, "outlet_bindings", &doomed).await, 0);
    assert_eq!(count_rows(&h, "device_blocks", &doomed).await, 0);
    assert_eq!(count_rows(&h, "outlet_bindings", &other).await, 1);
    assert_eq!(count_rows(&h, "device_blocks", &other).await, 1);
}

#[tokio::test]
async fn bad_ids_are_400_and_unknown_agents_or_devices_404() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    for bad in [
        "aa:bb",
        "00:1a:11:00:00:01@0",
        "00:1a:11:00:00:01@5000",
        "zz:zz:zz:zz:zz:zz",
    ] {
        for (method, rest) in [
            (Method::GET, ""),
            (Method::POST, "/block"),
            (Method::POST, "/unblock"),
            (Method::GET, "/power-outlet"),
            (Method::DELETE, "/power-outlet"),
        ] {
            let resp = h.op(method.clone(), &path(&id, bad, rest), None).await;
            assert_eq!(
                (resp.status, resp.error()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{method} {bad}{rest}"
            );
            let message = resp.body["message"].as_str().unwrap();
            assert!(
                message.contains("is not a device id") && message.contains("@VLAN"),
                "{message}"
            );
        }
    }
    // Known MAC, wrong VLAN: another device.
    let unknown = format!("{PLAIN}@30");
    for (method, rest, body) in [
        (Method::GET, "", None),
        (Method::POST, "/block", None),
        (Method::POST, "/power", Some(json!({"action": "on"}))),
        (Method::PUT, "/power-outlet", Some(shelly())),
    ] {
        let resp = h.op(method.clone(), &path(&id, &unknown, rest), body).await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {rest}"
        );
        assert!(
            resp.body["message"].as_str().unwrap().contains(&unknown),
            "{:?}",
            resp.body
        );
    }
    let resp = h
        .op(
            Method::POST,
            &path("ag-nosuchagent1", PLAIN, "/block"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(h.sent_to(&id).is_empty(), "nothing was sent");
    assert_eq!(count_rows(&h, "commands", &id).await, 0);
    // An id in another spelling names the same device.
    let upper = PLAIN.to_uppercase().replace(':', "-");
    assert_eq!(get(&h, &path(&id, &upper, "")).await["id"], PLAIN);
}

#[tokio::test]
async fn a_power_command_pending_too_long_expires_instead_of_running_late() {
    let h = Harness::new().await;
    let id = site(&h, Platform::Router).await;
    h.op(
        Method::PUT,
        &path(&id, PLAIN, "/power-outlet"),
        Some(shelly()),
    )
    .await;
    let power_path = path(&id, PLAIN, "/power?wait_ms=0");
    let power =
        |action: &'static str| h.op(Method::POST, &power_path, Some(json!({ "action": action })));
    // Sent, then the agent drops before acknowledging; a block is pending too.
    let stale = power("off").await.body["id"].as_u64().unwrap();
    h.send(&id, 0, AgentMessage::Presence(Presence { online: false }))
        .await;
    let block = h
        .op(Method::POST, &path(&id, PLAIN, "/block?wait_ms=0"), None)
        .await
        .body["id"]
        .as_u64()
        .unwrap();
    h.clock.advance(chrono::Duration::minutes(6));
    let before = h.sent_to(&id).len();
    h.send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    h.send(&id, 0, hello_on("gw", Platform::Router, segments()))
        .await;
    let resent: Vec<u64> = h.sent_to(&id)[before..].iter().map(|c| c.id).collect();
    assert_eq!(
        resent,
        [block],
        "the block goes out, the stale power command does not"
    );
    let expired = get(&h, &format!("/api/v1/agents/{id}/commands/{stale}")).await;
    assert_eq!(expired["status"], "failed");
    assert_eq!(expired["code"], "expired");

    // A fresh one is sent at once; a late acknowledgement of the expired one still wins.
    let fresh = power("on").await.body["id"].as_u64().unwrap();
    assert_eq!(h.sent_to(&id).last().unwrap().id, fresh);
    h.send(
        &id,
        0,
        AgentMessage::Ack(Ack {
            command_id: stale,
            outcome: Outcome::Done,
            result: None,
        }),
    )
    .await;
    let acked = get(&h, &format!("/api/v1/agents/{id}/commands/{stale}")).await;
    assert_eq!(
        (acked["status"].as_str(), acked["code"].as_str()),
        (Some("done"), None)
    );
}
