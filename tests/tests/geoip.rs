//! GeoIP self-location end to end: a real portal (with its Mosquitto) and real agents in a lab namespace
//! whose uplink makes them reach the portal from TEST-NET-3 addresses (`Lab::add_public_address`), so the
//! portal sees a public-shaped address in the HTTPS activation and in Mosquitto's connection log. The City
//! databases are small ones the tests write (`geoip::testdb`); the real GeoLite2-City is exercised by
//! `cloud-link/tests/real_geoip_db.rs`.
//!
//! Needs root (network namespaces): fails, never skips, when the lab cannot be built. Traffic stays on the
//! lab's uplink pair.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use outpost_cloud_link::geoip::testdb::{city_db, Place};
use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use serde_json::Value;

/// 2024-06-01 00:00 UTC.
const BUILT: u64 = 1_717_200_000;
const BUILT_DAY: &str = "2024-06-01";

fn place(network: &'static str, city: &'static str, lat: f64, lon: f64) -> Place<'static> {
    Place {
        network,
        city,
        region: "Test Region",
        country_code: "NZ",
        country: "New Zealand",
        latitude: lat,
        longitude: lon,
        accuracy_radius_km: 25,
    }
}

/// Writes a City database of `places` to `dir/name`.
fn write_db(dir: &Path, name: &str, database_type: &str, places: &[Place<'_>]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, city_db(database_type, BUILT, places))?;
    Ok(path)
}

/// A lab agent's configuration: fast timings, no discovery, the GeoIP database if any.
fn agent_config(database: Option<&Path>) -> String {
    let geoip = match database {
        Some(path) => format!("[geoip]\ndatabase = \"{}\"\n", path.display()),
        None => String::new(),
    };
    format!(
        r#"interfaces = ["lan0"]
heartbeat_secs = 0.5
disabled_poll_secs = 0.5
reconnect_initial_ms = 100
reconnect_max_secs = 1

[discovery]
enabled = false

{geoip}"#
    )
}

/// A lab with one small LAN segment and an uplink to this machine's namespace.
fn lab(segment: &str) -> Result<Lab> {
    let cidr = format!("{segment}.0/24");
    let host: Ipv4Addr = format!("{segment}.10").parse()?;
    Lab::build(
        LabSpec::new()
            .segment(SegmentSpec::new("lan0", &cidr).hosts_list([host]))
            .uplink(true),
    )
    .context("building the lab (needs root and network namespaces)")
}

async fn portal_for(lab: &Lab, geoip_db: Option<&Path>) -> Result<Portal> {
    let uplink = lab.uplink().context("the lab has no uplink")?;
    let env = geoip_db
        .map(|p| {
            vec![(
                "OUTPOST_PORTAL_GEOIP_DB".to_owned(),
                p.display().to_string(),
            )]
        })
        .unwrap_or_default();
    Portal::start_with(PortalOptions {
        listen: uplink.outside,
        env,
        ..PortalOptions::default()
    })
    .await
}

/// The `updated_at` of the agent's stored `location` report and its data epoch.
async fn stored_location(portal: &Portal, id: &str) -> Result<Option<(String, u64)>> {
    let data = portal.reports(id).await?;
    Ok(data["reports"]
        .as_array()
        .context("no reports")?
        .iter()
        .find(|r| r["kind"] == "location")
        .map(|r| {
            (
                r["updated_at"].as_str().unwrap_or_default().to_owned(),
                r["epoch"].as_u64().unwrap_or(u64::MAX),
            )
        }))
}

fn city(agent: &Value) -> &str {
    agent["location"]["location"]["city"].as_str().unwrap_or("")
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_with_a_database_locates_itself_and_follows_its_public_address() -> Result<()> {
    const FIRST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const SECOND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
    let mut lab = lab("192.168.81")?;
    lab.add_public_address(FIRST)?;
    let portal = portal_for(&lab, None).await?;
    let files = tempfile::tempdir()?;
    let db = write_db(
        files.path(),
        "City.mmdb",
        "Outpost-E2E-City",
        &[
            place("203.0.113.7/32", "Wellington", -41.2866, 174.7756),
            place("203.0.113.8/32", "Auckland", -36.8485, 174.7633),
        ],
    )?;
    let mut agent = Agent::with_config(&agent_config(Some(&db)))?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    assert_eq!(
        portal.agent(&id).await?["public_ip"],
        FIRST.to_string(),
        "the activation came from the lab's public address"
    );

    agent.start()?;
    let a = portal
        .wait_agent(&id, "the agent's own location", |a| city(a) == "Wellington")
        .await
        .with_context(|| agent.log_tail())?;
    let report = &a["location"];
    assert_eq!(report["source"], "agent");
    assert_eq!(report["ip"], FIRST.to_string());
    assert_eq!(report["error"], Value::Null);
    let loc = &report["location"];
    assert_eq!(loc["source"], "agent");
    assert_eq!(loc["country_code"], "NZ");
    assert_eq!(loc["country"], "New Zealand");
    assert_eq!(loc["region"], "Test Region");
    assert_eq!(loc["latitude"], -41.2866);
    assert_eq!(loc["longitude"], 174.7756);
    assert_eq!(loc["accuracy_radius_km"], 25);
    assert_eq!(loc["database"], "Outpost-E2E-City");
    assert_eq!(loc["database_built"], BUILT_DAY);
    assert_eq!(a["public_ip"], FIRST.to_string());

    // A restart from the same address: the report is sent again (the portal's copy is rewritten), the
    // address is not looked up again.
    let (before, _) = stored_location(&portal, &id)
        .await?
        .context("no stored location")?;
    agent.stop();
    agent.start()?;
    wait_for(
        "the location re-sent after a restart",
        Duration::from_secs(20),
        || async {
            Ok(stored_location(&portal, &id)
                .await?
                .filter(|(at, _)| *at != before)
                .map(|_| ()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let log = std::fs::read_to_string(agent.log_path())?;
    assert_eq!(
        count(&log, "public address located"),
        1,
        "one lookup for one address:\n{log}"
    );

    // The agent now reaches the portal from another address: after reconnecting it follows.
    lab.add_public_address(SECOND)?;
    agent.stop();
    agent.start()?;
    let a = portal
        .wait_agent(&id, "the location of the new address", |a| {
            city(a) == "Auckland" && a["public_ip"] == SECOND.to_string()
        })
        .await
        .with_context(|| agent.log_tail())?;
    assert_eq!(a["location"]["source"], "agent");
    assert_eq!(a["location"]["ip"], SECOND.to_string());

    // A cleanup wipes the portal's reports; the agent reports its location again in the new epoch.
    portal.cleanup(&id).await?;
    wait_for(
        "the location after a cleanup",
        Duration::from_secs(20),
        || async {
            Ok(stored_location(&portal, &id)
                .await?
                .filter(|(_, epoch)| *epoch == 1)
                .map(|_| ()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    assert_eq!(city(&portal.agent(&id).await?), "Auckland");
    assert!(agent.is_running(), "the agent keeps running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_without_a_usable_database_are_located_by_the_portal() -> Result<()> {
    // The agents activate from one address and then connect from another: the portal locates the one
    // its broker sees.
    const ACTIVATED_FROM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    let mut lab = lab("192.168.82")?;
    lab.add_public_address(ACTIVATED_FROM)?;
    let files = tempfile::tempdir()?;
    let portal_db = write_db(
        files.path(),
        "Portal-City.mmdb",
        "Outpost-Portal-City",
        &[
            place("203.0.113.9/32", "Dunedin", -45.8788, 170.5028),
            place("203.0.113.10/32", "Christchurch", -43.5321, 172.6362),
        ],
    )?;
    let portal = portal_for(&lab, Some(&portal_db)).await?;

    // A small router: no database at all.
    let mut plain = Agent::with_config(&agent_config(None))?.in_netns(lab.agent_ns());
    let plain_id = plain.activate_new(&portal)?;
    // A corrupt database file: a warning, and the agent runs without it.
    let corrupt = files.path().join("corrupt-City.mmdb");
    std::fs::write(&corrupt, b"this is not a MaxMind DB file")?;
    let mut broken = Agent::with_config(&agent_config(Some(&corrupt)))?.in_netns(lab.agent_ns());
    let broken_id = broken.activate_new(&portal)?;
    assert_eq!(
        portal.agent(&plain_id).await?["public_ip"],
        ACTIVATED_FROM.to_string()
    );
    lab.add_public_address(ADDRESS)?;
    plain.start()?;
    broken.start()?;

    for (id, agent) in [(&plain_id, &plain), (&broken_id, &broken)] {
        let a = portal
            .wait_agent(id, "the portal's lookup", |a| {
                a["location"]["source"] == "portal" && city(a) == "Christchurch"
            })
            .await
            .with_context(|| agent.log_tail())?;
        let loc = &a["location"]["location"];
        assert_eq!(loc["source"], "portal");
        assert_eq!(loc["database"], "Outpost-Portal-City");
        assert_eq!(loc["database_built"], BUILT_DAY);
        assert_eq!(loc["latitude"], -43.5321);
        assert_eq!(a["public_ip"], ADDRESS.to_string());
        assert_eq!(a["online"], true);
    }

    let log = std::fs::read_to_string(broken.log_path())?;
    let warned = log.lines().any(|l| {
        l.contains("GeoIP database unusable") && l.contains(&corrupt.display().to_string())
    });
    if !warned {
        bail!("the corrupt database was not logged with its path:\n{log}");
    }
    assert!(
        broken.is_running(),
        "a corrupt database does not stop the agent"
    );
    let portal_log = std::fs::read_to_string(portal.data().join("portal.log"))?;
    for id in [&plain_id, &broken_id] {
        assert!(
            portal_log.lines().any(|l| l.contains("agent said hello")
                && l.contains(id.as_str())
                && l.contains("geoip=false")),
            "{id}'s hello did not say geoip=false:\n{}",
            portal.log_tail()
        );
    }
    Ok(())
}
