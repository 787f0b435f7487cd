//! The running agent's memory with a big inventory: 5,000 devices (with names, a service and a model hint
//! each) stored, loaded at start, sent to a real portal as a 50-part snapshot and listed by
//! `outpost-agent devices`, while the optimized agent's peak resident set stays under 25 MiB. The agent
//! watches only `lo` (which has no MAC: no sweep, no traffic anywhere).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use outpost_agent::store::Store;
use outpost_cloud_link::inventory::{Device, DeviceName, NameSource, Service};
use outpost_tests::{release_agent_bin, wait_for, Agent, Portal};

const DEVICES: u32 = 5_000;

const RSS_LIMIT_KIB: u64 = 25 * 1024;

fn device(i: u32) -> Device {
    let mac = format!(
        "00:1a:11:{:02x}:{:02x}:{:02x}",
        i >> 16,
        (i >> 8) & 0xff,
        i & 0xff
    );
    Device {
        names: vec![
            DeviceName {
                name: format!("device-{i}"),
                source: NameSource::Dhcp,
            },
            DeviceName {
                name: format!("device-{i}.lan.example"),
                source: NameSource::Dns,
            },
        ],
        vendor: Some("Google, Inc.".into()),
        dhcp_vendor_class: Some("android-dhcp-14".into()),
        services: vec![Service {
            kind: "_googlecast._tcp".into(),
            name: format!("Screen {i}"),
            port: Some(8009),
            source: "mdns".into(),
        }],
        model_hints: [("md".to_owned(), "Chromecast".to_owned())]
            .into_iter()
            .collect(),
        arp_rtt_ms: Some(0.4),
        icmp_rtt_ms: Some(0.3),
        ..Device::first_seen(
            mac,
            Some(10 + (i % 4) as u16),
            "lan0",
            Some(Ipv4Addr::from(0x0a00_0000 + i)),
            1_700_000_000_000,
        )
    }
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_devices_fit_in_25_mib() -> Result<()> {
    let portal = Portal::start().await?;
    let config = "interfaces = [\"lo\"]\nheartbeat_secs = 1\n\n[discovery]\nenabled = true\nmdns = false\nssdp = false\nreverse_dns = false\nreport_interval_secs = 0.5\n";
    // Measured on the optimized build, as it ships (a debug build carries some 14 MiB more of its own).
    let mut agent = Agent::with_config(config)?.with_binary(release_agent_bin()?);
    let id = agent.activate_new(&portal)?;
    {
        let store = Store::open(&agent.state().join("db"))?;
        let devices: Vec<Device> = (0..DEVICES).map(device).collect();
        store.put_devices(&devices)?;
        store.flush()?;
    }
    agent.start()?;
    let pid = agent.pid().context("agent not running")?;
    wait_for(
        "the portal to hold the 5,000 devices of the snapshot",
        Duration::from_secs(60),
        || async {
            let page = portal
                .api_ok(
                    reqwest::Method::GET,
                    &format!("/agents/{id}/devices?limit=1"),
                    None,
                    reqwest::StatusCode::OK,
                )
                .await?;
            Ok((page["total"] == DEVICES).then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let out = agent.command()?.args(["devices", "--json"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(listing["source"], "daemon");
    assert_eq!(
        listing["devices"].as_array().map(Vec::len),
        Some(DEVICES as usize)
    );
    // lo cannot be swept: it is reported, and the agent goes on.
    assert_eq!(
        listing["interfaces"][0]["state"], "error",
        "{}",
        listing["interfaces"]
    );

    eprintln!(
        "{}",
        agent
            .log_tail()
            .lines()
            .filter(|l| l.contains("TMPRSS"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rss = status_kib(pid, "VmRSS:")?;
    let peak = status_kib(pid, "VmHWM:")?;
    eprintln!(
        "agent with {DEVICES} devices: RSS {rss} KiB, peak {peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB with {DEVICES} devices"
    );
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_tail());
    Ok(())
}
