//! The technicians' web pages end to end, in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, through WebDriver) against a running portal with a real agent in a namespace lab:
//! sign in, search by Customer ID, edit a site's contact and see it persist (and a bad email refused by
//! name), export CSV and compare it with the API's, try to delete a connected agent and see the refusal,
//! place the site on the map, and block a device from its page on real traffic. Screenshots of the main
//! pages land in `target/screenshots/a_technician_*/`.
//!
//! Needs root (network namespaces) and Chromium: fails, not skips, without them.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outpost_tests::browser::Browser;
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::{portal_bin, wait_for, Agent, Portal, PortalOptions};
use reqwest::{Method, StatusCode};
use serde_json::json;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const EMAIL: &str = "tech@example.com";
const PASSWORD: &str = "lisbon-router-7421-quartz";
const WAIT: Duration = Duration::from_secs(20);

fn agent_config() -> String {
    format!(
        r#"platform = "box"
heartbeat_secs = 1
reconnect_initial_ms = 100
reconnect_max_secs = 1

[[interfaces]]
name = "lan0"
gateway = "{GATEWAY}"

[discovery]
sweep_interval_secs = 120
probe_interval_secs = 1
offline_after_missed = 3
mdns = false
ssdp = false
reverse_dns = false
report_interval_secs = 0.3
interface_retry_secs = 1
"#
    )
}

/// `outpost-portal users new`: the technician, a company admin; returns the link where they set a password.
fn invite_technician(portal: &Portal) -> Result<String> {
    let out = Command::new(portal_bin()?)
        .args([
            "users",
            "new",
            "--email",
            EMAIL,
            "--name",
            "Tess Tech",
            "--url",
        ])
        .arg(portal.base_url())
        .arg("--data")
        .arg(portal.data().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!("users new failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let link = String::from_utf8(out.stdout)?.trim().to_owned();
    if link.lines().count() != 1 || !link.starts_with(&portal.base_url()) {
        bail!("users new printed {link:?}, not one link to the portal");
    }
    Ok(link)
}

/// Whether `host` reaches the lab's internet host over TCP and ICMP.
fn reaches(lab: &Lab, host: &HostInfo) -> Result<bool> {
    let internet = lab.internet().context("the lab has no internet")?;
    let addr = SocketAddr::from((internet.server, internet.port));
    Ok(lab.tcp_reaches(&host.ns, addr, Duration::from_millis(400))?
        && lab.pings(&host.ns, internet.server, Duration::from_millis(400))?)
}

fn wait_reach(lab: &Lab, host: &HostInfo, want: bool) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let now = reaches(lab, host)?;
        if now == want {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(5) {
            bail!("{} still reaches={now} after 5 s", host.ip);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails when the page is wider than the window (something overflows sideways on a phone).
async fn fits_width(browser: &Browser, page: &str) -> Result<()> {
    let widths = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await?;
    let (scroll, inner) = (widths[0].as_u64(), widths[1].as_u64());
    if scroll > inner {
        bail!("{page} overflows sideways at phone size: scrollWidth {scroll:?} > innerWidth {inner:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_manages_sites_in_a_real_browser() -> Result<()> {
    let lan0 = SegmentSpec::new("lan0", "192.168.50.0/24")
        .agent_ip(Ipv4Addr::new(192, 168, 50, 2))
        .gateway(GATEWAY)
        .hosts_list([Ipv4Addr::new(192, 168, 50, 10)]);
    let lab = Lab::build(LabSpec::new().segment(lan0).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let target = lab.segments()[0]
        .hosts
        .first()
        .cloned()
        .context("the lab's host")?;

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let link = invite_technician(&portal)?;
    let base = portal.base_url();

    // The site under test: a box agent in the lab. Two more agents are activated but never connect.
    let mut agent = Agent::with_config(&agent_config())?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    let others = [Agent::new()?, Agent::new()?];
    let mut other_ids = Vec::new();
    for other in &others {
        other_ids.push(other.activate_new(&portal)?);
    }
    let named = [
        (&id, "Lisbon office"),
        (&other_ids[0], "Porto shop"),
        (&other_ids[1], "Faro depot"),
    ];
    for (agent_id, name) in named {
        portal.rename(agent_id, name).await?;
    }
    portal
        .api_ok(
            Method::PUT,
            &format!("/agents/{}/site", other_ids[0]),
            Some(json!({ "customer_id": "CUST-2002", "contract_id": "K-77" })),
            StatusCode::OK,
        )
        .await?;
    wait_for(
        "the target in the portal",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            Ok(d.iter()
                .any(|d| d["mac"] == target.mac.as_str())
                .then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    wait_for("the agent online", Duration::from_secs(30), || async {
        Ok((portal.agent(&id).await?["online"] == true).then_some(()))
    })
    .await?;

    let browser = Browser::start("a_technician_manages_sites_in_a_real_browser").await?;

    // The invitation link: a guessable password is refused with advice, a good one is set, and the link
    // then leads to the sign-in page.
    browser.goto(&link).await?;
    browser.wait_for("#set-password", WAIT).await?;
    browser.fill("#password", "password123").await?;
    // The hint under the field answers while typing (zxcvbn on the portal), before any submit.
    browser
        .wait_for_text("#strength", "too easy to guess", WAIT)
        .await
        .context("the live strength hint")?;
    browser.click("#set-password").await?;
    browser
        .wait_for_text("body", "too easy to guess", WAIT)
        .await
        .context("a weak password is refused with advice")?;
    browser.fill("#password", PASSWORD).await?;
    browser.click("#set-password").await?;
    browser.wait_for("#sign-in", WAIT).await?;

    // Signing in: the list sends a browser without a session to the sign-in page, which the keyboard
    // can work.
    browser.goto(&format!("{base}/agents")).await?;
    browser.wait_for("#email", WAIT).await?;
    assert!(browser.current_url().await?.contains("/sign-in?next="));
    browser.screenshot("sign-in").await?;
    browser.fill("#email", EMAIL).await?;
    browser.fill("#password", "wrong password!").await?;
    browser.click("#sign-in").await?;
    browser
        .wait_for_text(".notice.error", "email or password is wrong", WAIT)
        .await?;
    browser.fill("#password", PASSWORD).await?;
    browser.press_tab_until("#sign-in", 12).await?;
    browser.click("#sign-in").await?;
    browser.wait_for("#agents", WAIT).await?;
    let rows = browser.texts("#agents tbody tr").await?;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r.contains("Activation pending"))
            .count()
            == 2,
        "the agents that never connected are pending activation: {rows:?}"
    );
    browser.screenshot("agents").await?;

    // Search by Customer ID.
    browser.fill("#q", "cust-2002").await?;
    browser.click("#search").await?;
    browser.wait_for_text("#agent-count", "of 1", WAIT).await?;
    let rows = browser.texts("#agents tbody tr").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("Porto shop") && rows[0].contains("CUST-2002"),
        "{rows:?}"
    );
    browser.phone_size().await?;
    fits_width(&browser, "the agents list").await?;
    browser.screenshot("agents-search-phone").await?;
    browser.desktop_size().await?;

    // Edit the site's contact and pin: it persists, and the API shows the same.
    browser.goto(&format!("{base}/agents/{id}")).await?;
    browser.wait_for("#site", WAIT).await?;
    browser.fill("#first_name", "Ana").await?;
    browser.fill("#last_name", "Sousa").await?;
    browser.fill("#email", "ana.sousa@example.pt").await?;
    browser.fill("#phones", "+351 21 000 0000").await?;
    browser.fill("#customer_id", "CUST-1001").await?;
    browser.select("#psa_system", "connectwise_manage").await?;
    browser.fill("#pin_latitude", "38.72").await?;
    browser.fill("#pin_longitude", "-9.14").await?;
    browser.click("#save-site").await?;
    browser
        .wait_for_text(".notice", "Site configuration saved", WAIT)
        .await?;
    browser.goto(&format!("{base}/agents/{id}")).await?;
    browser.wait_for("#site", WAIT).await?;
    assert_eq!(
        browser.attr("#email", "value").await?.as_deref(),
        Some("ana.sousa@example.pt")
    );
    assert_eq!(
        browser.attr("#first_name", "value").await?.as_deref(),
        Some("Ana")
    );
    let site = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/site"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(site["contact"]["email"], "ana.sousa@example.pt", "{site}");
    assert_eq!(
        site["contact"]["phones"],
        json!(["+351 21 000 0000"]),
        "{site}"
    );
    assert_eq!(site["psa"]["system"], "connectwise_manage", "{site}");
    browser.screenshot("agent").await?;
    browser.phone_size().await?;
    fits_width(&browser, "the agent page").await?;
    browser.screenshot("agent-phone").await?;
    browser.desktop_size().await?;

    // A bad phone number is refused by name (the server checks; the browser only checks the email's
    // shape), the typed values stay in the form, and nothing is saved.
    browser.fill("#phones", "call me").await?;
    browser.fill("#last_name", "Sousa Costa").await?;
    browser.click("#save-site").await?;
    browser
        .wait_for_text("#site-errors", "Phone number", WAIT)
        .await?;
    assert_eq!(
        browser.attr("#phones", "aria-invalid").await?.as_deref(),
        Some("true")
    );
    assert_eq!(
        browser.attr("#last_name", "value").await?.as_deref(),
        Some("Sousa Costa")
    );
    browser.screenshot("site-refused").await?;
    let site = portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/site"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(site["contact"]["last_name"], "Sousa", "{site}");

    // CSV: the export link of the current filter gives what the API exports for the same filter.
    browser
        .goto(&format!("{base}/agents?q=cust-&sort=name"))
        .await?;
    browser.wait_for("#agents", WAIT).await?;
    let shown = browser.texts("#agents tbody tr").await?;
    assert_eq!(shown.len(), 2, "{shown:?}");
    let href = browser
        .attr("#export", "href")
        .await?
        .context("the export link")?;
    let session = browser
        .cookie("outpost_session")
        .await?
        .context("the session cookie")?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            portal.ca_path(),
        )?)?)
        .build()?;
    let export_url = if href.starts_with("http") {
        href.clone()
    } else {
        format!("{base}{href}")
    };
    let from_page = http
        .get(&export_url)
        .header("cookie", format!("outpost_session={}", session.value()))
        .send()
        .await?;
    assert_eq!(from_page.status(), 200);
    let from_page = from_page.text().await?;
    let from_api = http
        .get(format!("{base}/api/v1/agents.csv?q=cust-&sort=name"))
        .bearer_auth(&portal.token)
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(from_page, from_api, "the page's export is the API's");
    let mut csv = csv::Reader::from_reader(from_page.as_bytes());
    let names: Vec<String> = csv
        .records()
        .map(|r| r.map(|r| r.get(1).unwrap_or("").to_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, ["Lisbon office", "Porto shop"], "{from_page}");

    // Deleting a connected agent: the page explains, the server refuses, the agent stays.
    browser.goto(&format!("{base}/agents/{id}/delete")).await?;
    browser.wait_for("#confirm", WAIT).await?;
    let explanation = browser.text("main").await?;
    assert!(
        explanation.contains("must be disconnected"),
        "{explanation}"
    );
    browser.screenshot("delete-confirm").await?;
    browser.click("#confirm").await?;
    browser
        .wait_for_text(".notice.error", "connected", WAIT)
        .await?;
    portal.agent(&id).await?;

    // The map places the pinned site, online.
    browser.goto(&format!("{base}/map")).await?;
    browser.wait_for("svg.map", WAIT).await?;
    let markers = browser.texts("svg.map a title").await?;
    assert!(
        markers.iter().any(|m| m.contains("Lisbon office")),
        "{markers:?}"
    );
    assert!(
        browser.attr("svg.map circle.on", "cx").await?.is_some(),
        "the online site is green"
    );
    browser.screenshot("map").await?;

    // Block the device from its page: its internet stops; unblock: it comes back.
    assert!(
        reaches(&lab, &target)?,
        "the device reaches the internet first"
    );
    browser.goto(&format!("{base}/agents/{id}/devices")).await?;
    browser.wait_for("#devices", WAIT).await?;
    let table = browser.texts("#devices tbody tr").await?;
    assert!(table.iter().any(|r| r.contains(&target.mac)), "{table:?}");
    browser.screenshot("devices").await?;
    browser
        .goto(&format!("{base}/agents/{id}/devices/{}", target.mac))
        .await?;
    browser.wait_for("#block", WAIT).await?;
    browser.click("#block").await?;
    browser
        .wait_for_text(".notice", "block: done", WAIT)
        .await?;
    let took = wait_reach(&lab, &target, false).with_context(|| agent.log_tail())?;
    eprintln!("blocked from the page; traffic stopped {took:?} after the page answered");
    browser.screenshot("device-blocked").await?;
    browser.wait_for("#unblock", WAIT).await?;
    browser.click("#unblock").await?;
    browser
        .wait_for_text(".notice", "unblock: done", WAIT)
        .await?;
    wait_reach(&lab, &target, true)?;

    // Sign out: the pages need a session again.
    browser.click("header.top button").await?;
    browser.wait_for("#email", WAIT).await?;
    browser.goto(&format!("{base}/agents")).await?;
    browser.wait_for("#sign-in", WAIT).await?;

    browser.close().await?;
    agent.stop();
    Ok(())
}
