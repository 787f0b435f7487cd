//! The device inventory: snapshot parts applied when complete, deltas and events, the (VLAN, MAC) key,
//! filters and cursor pages of `GET /agents/{id}/devices` and `/events`, the data epoch, cleanup, deletion
//! and malformed reports.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use axum::http::{Method, StatusCode};
use outpost_cloud_link::inventory::{
    delta_reports, snapshot_reports, Device, DeviceEvent, DeviceName, EventKind, NameSource,
    DELTA_KIND, SNAPSHOT_KIND,
};
use outpost_cloud_link::protocol::{AgentMessage, Presence, Report};
use outpost_portal::ingest::Disposition;
use serde_json::{json, Value};

use crate::harness::{id_of, sample_device, Auth, Harness};

fn mac(i: u32) -> String {
    format!("00:1a:11:00:{:02x}:{:02x}", i / 256, i % 256)
}

/// Device `i` on VLAN 10, `lan0`, 10.0.x.y, online.
fn device(i: u32) -> Device {
    Device {
        arp_rtt_ms: Some(0.4),
        ..sample_device(&mac(i), Some(10), "lan0", Ipv4Addr::from(0x0a00_0000 + i))
    }
}

fn event(d: &Device, at_ms: i64, kind: EventKind) -> DeviceEvent {
    DeviceEvent {
        at_ms,
        mac: d.mac.clone(),
        vlan: d.vlan,
        interface: d.interface.clone(),
        ipv4: d.ipv4,
        kind,
    }
}

fn report(r: Report) -> AgentMessage {
    AgentMessage::Report(r)
}

/// An activated agent (never connected, so it can be deleted).
async fn agent(h: &Harness) -> String {
    id_of(&h.activate("gw").await)
}

/// Sends a whole snapshot; returns the dispositions.
async fn snapshot(
    h: &Harness,
    id: &str,
    epoch: u64,
    snap: u64,
    list: &[Device],
) -> Vec<Disposition> {
    let mut out = Vec::new();
    for r in snapshot_reports(snap, list) {
        out.push(h.send(id, epoch, report(r)).await);
    }
    out
}

async fn delta(h: &Harness, id: &str, list: &[Device], events: &[DeviceEvent]) {
    for r in delta_reports(list, events) {
        assert_eq!(h.send(id, 0, report(r)).await, Disposition::Applied);
    }
}

async fn get(h: &Harness, path_and_query: &str) -> Value {
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{path_and_query}"),
            None,
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{path_and_query}: {:?}",
        resp.body
    );
    resp.body
}

/// The MACs of one page of `GET /agents/{id}/devices?query`.
async fn macs(h: &Harness, id: &str, query: &str) -> Vec<String> {
    get(h, &format!("{id}/devices?{query}")).await["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["mac"].as_str().unwrap().to_owned())
        .collect()
}

/// A listed device without the portal's control view (whose fields must be there): the record as the agent
/// sent it.
pub fn as_sent(listed: &Value) -> Value {
    let mut record = listed.clone();
    let object = record.as_object_mut().unwrap();
    for field in [
        "id",
        "blocked",
        "block",
        "blockable",
        "unblockable_reason",
        "power_outlet",
    ] {
        assert!(object.remove(field).is_some(), "{field} missing: {listed}");
    }
    record
}

fn macs_of(range: impl IntoIterator<Item = u32>) -> Vec<String> {
    range.into_iter().map(mac).collect()
}

async fn count_rows(h: &Harness, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE agent_id = ?"))
        .bind(id)
        .fetch_one(h.app.store().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_snapshot_in_three_parts_removes_devices_only_once_complete() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    // A first snapshot: devices 1000..1005.
    let old: Vec<Device> = (1000..1005).map(device).collect();
    assert_eq!(snapshot(&h, &id, 0, 1, &old).await, [Disposition::Applied]);
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 5);

    // The next one holds devices 0..250 (three parts) and not the old five.
    let new: Vec<Device> = (0..250).map(device).collect();
    let parts = snapshot_reports(2, &new);
    assert_eq!(parts.len(), 3);
    for (i, part) in parts.into_iter().enumerate() {
        assert_eq!(h.send(&id, 0, report(part)).await, Disposition::Applied);
        let body = get(&h, &format!("{id}/devices?limit=1000")).await;
        if i < 2 {
            // Parts are stored as they come; nothing is removed while parts are missing.
            assert_eq!(body["total"], 5 + 100 * (i as u64 + 1), "after part {i}");
        } else {
            assert_eq!(
                body["total"], 250,
                "the old devices went once the snapshot was complete"
            );
        }
    }
    let all = macs(&h, &id, "limit=1000").await;
    assert_eq!(all, macs_of(0..250));
    assert_eq!(count_rows(&h, "snapshot_parts", &id).await, 0);
    // Each device is the record as the agent sent it.
    let first = &get(&h, &format!("{id}/devices?limit=1")).await["devices"][0];
    assert_eq!(as_sent(first), serde_json::to_value(device(0)).unwrap());
}

#[tokio::test]
async fn an_incomplete_snapshot_removes_nothing_and_a_newer_one_supersedes_it() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let base: Vec<Device> = (0..10).map(device).collect();
    snapshot(&h, &id, 0, 1, &base).await;

    // Snapshot 2 (devices 100..350, 3 parts) loses its middle part.
    let parts = snapshot_reports(2, &(100..350).map(device).collect::<Vec<_>>());
    for i in [0, 2] {
        assert_eq!(
            h.send(&id, 0, report(parts[i].clone())).await,
            Disposition::Applied
        );
    }
    let body = get(&h, &format!("{id}/devices?limit=1000")).await;
    assert_eq!(
        body["total"],
        10 + 100 + 50,
        "nothing removed without part 1"
    );
    assert_eq!(macs(&h, &id, "limit=10").await, macs_of(0..10));

    // Snapshot 3 (devices 5..15) is complete: everything else goes, snapshot 2's devices included.
    let third: Vec<Device> = (5..15).map(device).collect();
    snapshot(&h, &id, 0, 3, &third).await;
    assert_eq!(macs(&h, &id, "").await, macs_of(5..15));
    assert_eq!(count_rows(&h, "snapshot_parts", &id).await, 0);

    // An empty snapshot (one empty part) empties the inventory.
    snapshot(&h, &id, 0, 4, &[]).await;
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 0);
}

#[tokio::test]
async fn a_device_changed_by_a_delta_during_a_snapshot_survives_its_completion() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    snapshot(&h, &id, 0, 1, &[device(1), device(2)]).await;
    let parts = snapshot_reports(2, &(100..250).map(device).collect::<Vec<_>>());
    h.send(&id, 0, report(parts[0].clone())).await;
    // Device 7 shows up while the snapshot is on its way; device 2 changes.
    let mut changed = device(2);
    changed.ipv4 = Some(Ipv4Addr::new(10, 9, 9, 9));
    delta(&h, &id, &[device(7), changed], &[]).await;
    h.send(&id, 0, report(parts[1].clone())).await;
    let mut expected = macs_of([2, 7]);
    expected.extend(macs_of(100..250));
    assert_eq!(macs(&h, &id, "limit=1000").await, expected);
}

#[tokio::test]
async fn deltas_upsert_whole_records_and_add_events() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let mut d = device(1);
    delta(&h, &id, &[d.clone()], &[event(&d, 10, EventKind::New)]).await;
    let from = d.ipv4;
    d.ipv4 = Some(Ipv4Addr::new(10, 0, 0, 99));
    d.names = vec![DeviceName {
        name: "printer".into(),
        source: NameSource::Dhcp,
    }];
    d.last_seen_ms = 5_000;
    let to = Ipv4Addr::new(10, 0, 0, 99);
    delta(
        &h,
        &id,
        &[d.clone()],
        &[event(&d, 20, EventKind::IpChanged { from, to })],
    )
    .await;

    let body = get(&h, &format!("{id}/devices")).await;
    assert_eq!(
        body["total"], 1,
        "a device that changes its IP stays one device"
    );
    assert_eq!(
        as_sent(&body["devices"][0]),
        serde_json::to_value(&d).unwrap()
    );
    assert_eq!(body["next_cursor"], Value::Null);

    let events = get(&h, &format!("{id}/events")).await;
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["type"], "ip_changed", "newest first");
    assert_eq!(list[0]["from"], "10.0.0.1");
    assert_eq!(list[0]["to"], "10.0.0.99");
    assert_eq!(list[1]["type"], "new");
    assert!(list[0]["id"].as_u64().unwrap() > list[1]["id"].as_u64().unwrap());
    let mut back = list[1].clone();
    back.as_object_mut().unwrap().remove("id");
    assert_eq!(
        serde_json::from_value::<DeviceEvent>(back).unwrap(),
        event(&device(1), 10, EventKind::New)
    );
    assert_eq!(events["next_cursor"], Value::Null);
    // Inventory reports do not pile up in the generic reports.
    let data = get(&h, &format!("{id}/data")).await;
    assert_eq!(data["reports"], json!([]));
}

#[tokio::test]
async fn the_same_mac_on_two_vlans_is_two_devices() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let on10 = device(1);
    let mut on20 = device(1);
    on20.vlan = Some(20);
    on20.interface = "lan0.20".into();
    let mut untagged = device(1);
    untagged.vlan = None;
    // A priority tag (VLAN 0) is no VLAN: the same device as the untagged one.
    let mut priority = device(1);
    priority.vlan = Some(0);
    priority.last_seen_ms = 9_000;
    delta(&h, &id, &[on10, on20, untagged, priority], &[]).await;
    let body = get(&h, &format!("{id}/devices")).await;
    assert_eq!(body["total"], 3);
    let vlans: Vec<Value> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["vlan"].clone())
        .collect();
    assert_eq!(vlans, [Value::Null, json!(10), json!(20)], "no VLAN first");
    assert_eq!(body["devices"][0]["last_seen_ms"], 9_000);
    assert_eq!(
        get(&h, &format!("{id}/devices?vlan=none")).await["total"],
        1
    );
    let on20 = get(&h, &format!("{id}/devices?vlan=20")).await;
    assert_eq!(on20["total"], 1);
    assert_eq!(on20["devices"][0]["interface"], "lan0.20");
}

#[tokio::test]
async fn filters_select_devices() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let mut list: Vec<Device> = (0..6).map(device).collect();
    list[1].online = false;
    list[2].vlan = Some(30);
    list[2].interface = "lan1".into();
    list[3].names = vec![DeviceName {
        name: "Kitchen-TV".into(),
        source: NameSource::Mdns,
    }];
    list[4].vendor = Some("Raspberry Pi Trading Ltd".into());
    list[5].mac = "AA-BB-CC-00-00-05".into(); // normalized on the way in
    snapshot(&h, &id, 0, 1, &list).await;

    assert_eq!(macs(&h, &id, "online=false").await, [mac(1)]);
    assert_eq!(
        get(&h, &format!("{id}/devices?online=true")).await["total"],
        5
    );
    assert_eq!(macs(&h, &id, "vlan=30").await, [mac(2)]);
    assert_eq!(macs(&h, &id, "interface=lan1").await, [mac(2)]);
    assert_eq!(macs(&h, &id, "q=kitchen").await, [mac(3)]);
    assert_eq!(macs(&h, &id, "q=RASPBERRY%20pi").await, [mac(4)]);
    assert_eq!(macs(&h, &id, "q=aa:bb").await, ["aa:bb:cc:00:00:05"]);
    assert_eq!(macs(&h, &id, "q=10.0.0.3").await, [mac(3)]);
    assert_eq!(
        macs(&h, &id, "q=mdns").await,
        Vec::<String>::new(),
        "name sources are not searched"
    );
    assert_eq!(
        macs(&h, &id, "q=1%25").await,
        Vec::<String>::new(),
        "% is literal"
    );
    assert_eq!(
        macs(&h, &id, "mac=AA-BB-CC-00-00-05").await,
        ["aa:bb:cc:00:00:05"]
    );
    assert_eq!(
        macs(&h, &id, "online=true&vlan=10&q=10.0.0").await,
        macs_of([0, 3, 4])
            .into_iter()
            .chain(["aa:bb:cc:00:00:05".to_owned()])
            .collect::<Vec<_>>()
    );
    let body = get(&h, &format!("{id}/devices?vlan=10&limit=2")).await;
    assert_eq!(body["total"], 5, "total counts every match, not the page");
    assert_eq!(body["devices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn cursor_pages_walk_every_device_exactly_once() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let mut list: Vec<Device> = (0..250).map(device).collect();
    for d in list.iter_mut().skip(100).step_by(3) {
        d.vlan = Some(5);
    }
    for d in list.iter_mut().skip(200) {
        d.vlan = None;
    }
    snapshot(&h, &id, 0, 1, &list).await;
    let mut expected: Vec<(u16, String)> = list
        .iter()
        .map(|d| (d.vlan.unwrap_or(0), d.mac.clone()))
        .collect();
    expected.sort();

    for limit in [7, 50, 250, 1000] {
        let mut seen: Vec<(u16, String)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("{id}/devices?limit={limit}&cursor={c}"),
                None => format!("{id}/devices?limit={limit}"),
            };
            let body = get(&h, &query).await;
            pages += 1;
            assert_eq!(body["total"], 250);
            let page = body["devices"].as_array().unwrap();
            assert!(!page.is_empty(), "no empty last page (limit {limit})");
            assert!(page.len() <= limit);
            seen.extend(page.iter().map(|d| {
                (
                    d["vlan"].as_u64().unwrap_or(0) as u16,
                    d["mac"].as_str().unwrap().to_owned(),
                )
            }));
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            seen, expected,
            "limit {limit}: every device once, in (VLAN, MAC) order"
        );
        assert_eq!(pages, 250_usize.div_ceil(limit), "limit {limit}");
    }
    let default = get(&h, &format!("{id}/devices")).await;
    assert_eq!(
        default["devices"].as_array().unwrap().len(),
        100,
        "default page size"
    );

    // A device added between pages after the cursor shows up; the cursor does not skip or repeat.
    let first = get(&h, &format!("{id}/devices?limit=10")).await;
    let mut late = device(9999);
    late.vlan = Some(4000);
    delta(&h, &id, &[late.clone()], &[]).await;
    let rest = get(
        &h,
        &format!(
            "{id}/devices?limit=1000&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(rest["devices"].as_array().unwrap().len(), 241);
    assert_eq!(rest["devices"][240]["mac"], late.mac);
}

#[tokio::test]
async fn events_filter_by_type_mac_and_time_and_page_newest_first() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let a = device(1);
    let b = device(2);
    let mut events = Vec::new();
    for t in 0..30 {
        let d = if t % 2 == 0 { &a } else { &b };
        let kind = match t % 3 {
            0 => EventKind::Online,
            1 => EventKind::Offline,
            _ => EventKind::New,
        };
        events.push(event(d, 1_000 + t, kind));
    }
    // Two deltas: ids follow arrival.
    delta(&h, &id, &[], &events[..15]).await;
    delta(&h, &id, &[], &events[15..]).await;

    let all = get(&h, &format!("{id}/events?limit=1000")).await;
    let at: Vec<i64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(at, (1_000..1_030).rev().collect::<Vec<_>>());

    let online = get(&h, &format!("{id}/events?type=online,offline&limit=1000")).await;
    let types: BTreeSet<&str> = online["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from(["offline", "online"]));
    assert_eq!(online["events"].as_array().unwrap().len(), 20);

    let of_b = get(
        &h,
        &format!("{id}/events?mac={}&type=new", b.mac.to_uppercase()),
    )
    .await;
    assert!(of_b["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["mac"] == b.mac.as_str() && e["type"] == "new"));
    assert_eq!(of_b["events"].as_array().unwrap().len(), 5);

    let window = get(&h, &format!("{id}/events?since_ms=1010&until_ms=1020")).await;
    let at: Vec<i64> = window["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(
        at,
        (1_010..1_020).rev().collect::<Vec<_>>(),
        "since inclusive, until exclusive"
    );

    // Pages of 4, newest first, every event once.
    let mut seen = Vec::new();
    let mut query = format!("{id}/events?limit=4");
    loop {
        let body = get(&h, &query).await;
        seen.extend(
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["at_ms"].as_i64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => query = format!("{id}/events?limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (1_000..1_030).rev().collect::<Vec<_>>());
}

/// `GET path` answers 400 `invalid_request` whose message starts with `param:` and contains `hint`.
async fn assert_bad(h: &Harness, path: &str, param: &str, hint: &str) {
    let resp = h.op(Method::GET, path, None).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{path}: {:?}",
        resp.body
    );
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{param}: ")),
        "{path}: {message}"
    );
    assert!(message.contains(hint), "{path}: {message:?} lacks {hint:?}");
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter_and_what_it_accepts() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    delta(
        &h,
        &id,
        &(0..3).map(device).collect::<Vec<_>>(),
        &[event(&device(0), 1, EventKind::New)],
    )
    .await;
    let devices = format!("/api/v1/agents/{id}/devices");
    let events = format!("/api/v1/agents/{id}/events");
    for base in [&devices, &events] {
        assert_bad(&h, &format!("{base}?limit=0"), "limit", "from 1 to 1000").await;
        assert_bad(&h, &format!("{base}?limit=1001"), "limit", "from 1 to 1000").await;
        assert_bad(&h, &format!("{base}?limit=ten"), "limit", "from 1 to 1000").await;
        assert_bad(
            &h,
            &format!("{base}?cursor=not-a-cursor"),
            "cursor",
            "next_cursor",
        )
        .await;
        assert_bad(&h, &format!("{base}?offset=10"), "offset", "cursor").await;
        assert_bad(&h, &format!("{base}?mac=00:11:22"), "mac", "six hex octets").await;
    }
    assert_bad(
        &h,
        &format!("{devices}?online=yes"),
        "online",
        "true or false",
    )
    .await;
    assert_bad(
        &h,
        &format!("{devices}?vlan=0"),
        "vlan",
        "1 to 4094, or none",
    )
    .await;
    assert_bad(
        &h,
        &format!("{devices}?vlan=4095"),
        "vlan",
        "1 to 4094, or none",
    )
    .await;
    assert_bad(
        &h,
        &format!("{devices}?vlan=ten"),
        "vlan",
        "1 to 4094, or none",
    )
    .await;
    assert_bad(&h, &format!("{devices}?q={}", "x".repeat(201)), "q", "200").await;
    assert_bad(
        &h,
        &format!("{events}?type=online,exploded"),
        "type",
        "new, online, offline, ip_changed, name_changed",
    )
    .await;
    assert_bad(
        &h,
        &format!("{events}?since_ms=yesterday"),
        "since_ms",
        "Unix milliseconds",
    )
    .await;
    assert_bad(
        &h,
        &format!("{events}?until_ms=1.5"),
        "until_ms",
        "Unix milliseconds",
    )
    .await;
    assert_bad(
        &h,
        &format!("{events}?since_ms=10&until_ms=5"),
        "until_ms",
        "since_ms",
    )
    .await;

    // A cursor of one list is not one of the other.
    let page = get(&h, &format!("{id}/devices?limit=1")).await;
    let device_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_bad(
        &h,
        &format!("{events}?cursor={device_cursor}"),
        "cursor",
        "next_cursor",
    )
    .await;
    delta(&h, &id, &[], &[event(&device(1), 2, EventKind::New)]).await;
    let page = get(&h, &format!("{id}/events?limit=1")).await;
    let event_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_bad(
        &h,
        &format!("{devices}?cursor={event_cursor}"),
        "cursor",
        "next_cursor",
    )
    .await;

    // Blank values are no filter.
    assert_eq!(
        get(
            &h,
            &format!("{id}/devices?online=&vlan=&q=&mac=&limit=&cursor=")
        )
        .await["total"],
        3
    );
    assert_eq!(
        get(&h, &format!("{id}/events?type=&since_ms=")).await["events"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn unknown_agents_are_404_and_a_token_is_required() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    for path in [
        "/api/v1/agents/ag-doesnotexist/devices",
        "/api/v1/agents/ag-doesnotexist/events",
        "/api/v1/agents/NOT%20AN%20ID/devices",
    ] {
        let resp = h.op(Method::GET, path, None).await;
        assert_eq!(
            (resp.status, resp.error()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        assert!(resp.body["message"]
            .as_str()
            .unwrap()
            .contains("GET /api/v1/agents"));
    }
    for path in [
        format!("/api/v1/agents/{id}/devices"),
        format!("/api/v1/agents/{id}/events"),
    ] {
        let resp = h.call(Method::GET, &path, None, Auth::None).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{path}");
        let resp = h
            .call(Method::GET, &path, None, Auth::Bearer("wrong"))
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn cleanup_wipes_devices_and_events_and_drops_reports_of_the_old_epoch() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    h.connect(&id, "gw", 0).await;
    snapshot(&h, &id, 0, 1, &(0..5).map(device).collect::<Vec<_>>()).await;
    delta(
        &h,
        &id,
        &[device(900)],
        &[event(&device(900), 1, EventKind::New)],
    )
    .await;
    // A snapshot is half-way in when the cleanup comes.
    let parts = snapshot_reports(2, &(0..150).map(device).collect::<Vec<_>>());
    h.send(&id, 0, report(parts[0].clone())).await;

    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 0);
    assert_eq!(get(&h, &format!("{id}/events")).await["events"], json!([]));
    assert_eq!(count_rows(&h, "snapshot_parts", &id).await, 0);
    let history = get(&h, &format!("{id}/history")).await;
    let line = history["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(line["action"], "cleanup");
    assert!(
        line["details"]
            .as_str()
            .unwrap()
            .contains("101 device(s), 1 device event(s)"),
        "{line}"
    );

    // What the agent queued before it applied the cleanup is dropped.
    assert_eq!(
        h.send(&id, 0, report(parts[1].clone())).await,
        Disposition::StaleEpoch
    );
    for r in delta_reports(&[device(3)], &[event(&device(3), 2, EventKind::Online)]) {
        assert_eq!(h.send(&id, 0, report(r)).await, Disposition::StaleEpoch);
    }
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 0);
    assert_eq!(get(&h, &format!("{id}/events")).await["events"], json!([]));

    // Its next snapshot, in the new epoch, repopulates.
    assert_eq!(
        snapshot(&h, &id, 1, 3, &[device(4)]).await,
        [Disposition::Applied]
    );
    assert_eq!(macs(&h, &id, "").await, [mac(4)]);
}

#[tokio::test]
async fn deletion_wipes_devices_and_events() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let other = id_of(&h.activate("other").await);
    for agent in [&id, &other] {
        snapshot(&h, agent, 0, 1, &(0..3).map(device).collect::<Vec<_>>()).await;
        delta(&h, agent, &[], &[event(&device(0), 1, EventKind::Offline)]).await;
    }
    h.send(
        &id,
        0,
        report(snapshot_reports(2, &(0..150).map(device).collect::<Vec<_>>())[0].clone()),
    )
    .await;
    assert_eq!(count_rows(&h, "snapshot_parts", &id).await, 1);

    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    for table in ["devices", "device_events", "snapshot_parts"] {
        assert_eq!(count_rows(&h, table, &id).await, 0, "{table}");
    }
    let resp = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/devices"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // The other agent keeps its inventory.
    assert_eq!(get(&h, &format!("{other}/devices")).await["total"], 3);
    assert_eq!(
        get(&h, &format!("{other}/events")).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A late report of the deleted agent is ignored.
    let late = snapshot_reports(3, &[device(1)]).remove(0);
    assert_eq!(
        h.send(&id, 0, report(late)).await,
        Disposition::UnknownAgent
    );
}

#[tokio::test]
async fn a_malformed_inventory_report_is_dropped_and_the_next_good_one_applied() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    let bad_bodies = [
        (SNAPSHOT_KIND, json!({ "devices": 3 })),
        (
            SNAPSHOT_KIND,
            json!({ "snapshot": 1, "part": 0, "parts": 1, "devices": [{ "mac": "00:1a:11:00:00:01" }] }),
        ),
        (
            SNAPSHOT_KIND,
            json!({ "snapshot": 1, "part": 1, "parts": 1, "devices": [] }),
        ),
        (
            SNAPSHOT_KIND,
            json!({ "snapshot": 1, "part": 0, "parts": 0, "devices": [] }),
        ),
        (DELTA_KIND, json!("not an object")),
        (
            DELTA_KIND,
            json!({ "events": [{ "mac": "00:1a:11:00:00:01", "type": "exploded" }] }),
        ),
    ];
    for (kind, body) in bad_bodies {
        let msg = report(Report {
            kind: kind.into(),
            body: body.clone(),
        });
        assert_eq!(
            h.send(&id, 0, msg).await,
            Disposition::Malformed,
            "{kind} {body}"
        );
    }
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 0);
    assert_eq!(
        get(&h, &format!("{id}/data")).await["reports"],
        json!([]),
        "not kept as generic reports"
    );

    // A device or event with a bad MAC or VLAN is skipped; the rest of the report is applied.
    let mut bad_mac = device(2);
    bad_mac.mac = "00:1a:11:00:00".into();
    let mut bad_vlan = device(3);
    bad_vlan.vlan = Some(4095);
    let mut bad_event = event(&device(1), 2, EventKind::Online);
    bad_event.mac = "nope".into();
    assert_eq!(
        snapshot(&h, &id, 0, 1, &[device(1), bad_mac, bad_vlan]).await,
        [Disposition::Applied]
    );
    delta(
        &h,
        &id,
        &[],
        &[event(&device(1), 1, EventKind::New), bad_event],
    )
    .await;
    assert_eq!(macs(&h, &id, "").await, [mac(1)]);
    assert_eq!(
        get(&h, &format!("{id}/events")).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // And the link counters saw every message.
    assert_eq!(h.agent(&id).await["link"]["received"], 8);
}

#[tokio::test]
async fn other_report_kinds_still_go_to_the_generic_reports() {
    let h = Harness::new().await;
    let id = agent(&h).await;
    h.send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    let msg = report(Report {
        kind: "devices".into(),
        body: json!({ "n": 1 }),
    });
    assert_eq!(h.send(&id, 0, msg).await, Disposition::Applied);
    let data = get(&h, &format!("{id}/data")).await;
    assert_eq!(data["reports"][0]["kind"], "devices");
    assert_eq!(get(&h, &format!("{id}/devices")).await["total"], 0);
}
