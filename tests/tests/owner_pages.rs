//! The site owner's pages in a real browser (headless Chromium through chromedriver): the invitation link,
//! setting a password, the device list of a site whose agent runs in a namespace lab, the phone layout,
//! keyboard access to the sign-in button, signing out and in again. Screenshots of each page go to
//! `target/screenshots/owner_pages/`.
//!
//! Needs root (the lab) and the Debian packages `chromium` and `chromium-driver`: fails, never skips,
//! without them. Chromium talks only to the portal, on the lab's uplink address.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fantoccini::key::Key;
use outpost_tests::browser::{Browser, PHONE};
use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "violet-owner-passphrase";
const EMAIL: &str = "owner@example.com";
/// How long a page may take to show what is expected: generous, because setting or checking a password
/// costs a debug build of the portal 10–30 s (PBKDF2, 600,000 iterations, unoptimized) on a busy machine.
const WAIT: Duration = Duration::from_secs(60);

fn agent_config() -> &'static str {
    r#"heartbeat_secs = 1
disabled_poll_secs = 1
reconnect_initial_ms = 100
reconnect_max_secs = 1
interfaces = ["lan0"]

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
}

/// Fails unless the page fits the viewport's width (no sideways scrolling on a phone).
async fn assert_no_horizontal_overflow(browser: &Browser, page: &str) -> Result<()> {
    let sizes = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await?;
    let (scroll, inner) = (sizes[0].as_u64(), sizes[1].as_u64());
    assert_eq!(
        inner,
        Some(u64::from(PHONE.0)),
        "{page}: the viewport is a phone's"
    );
    assert!(
        scroll <= inner,
        "{page} overflows sideways at phone size: scrollWidth {scroll:?} > innerWidth {inner:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_owner_sets_a_password_sees_the_sites_devices_and_signs_out_and_in_in_chromium(
) -> Result<()> {
    let t_test = Instant::now();
    // A site with one device (a Raspberry Pi OUI, so it has a vendor name) and one the owner never sees.
    let lan0 = SegmentSpec::new("lan0", "192.168.54.0/24")
        .agent_ip(Ipv4Addr::new(192, 168, 54, 2))
        .host_with_mac(Ipv4Addr::new(192, 168, 54, 10), "b8:27:eb:54:00:10")
        .hosts_list([Ipv4Addr::new(192, 168, 54, 11)]);
    let lab = Lab::build(LabSpec::new().segment(lan0).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let hosts = lab.segments()[0].hosts.clone();
    let shown = hosts
        .iter()
        .find(|h| h.ip == Ipv4Addr::new(192, 168, 54, 10))
        .context("the shown host")?
        .clone();
    let hidden = hosts
        .iter()
        .find(|h| h.ip == Ipv4Addr::new(192, 168, 54, 11))
        .context("the hidden host")?
        .clone();

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let mut agent = Agent::with_config(agent_config())?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    let site = portal.rename(&id, "Violet's flat").await?;
    assert_eq!(site["name"], "Violet's flat", "{site}");
    wait_for(
        "the portal to show both lab hosts online",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            let online = |mac: &str| d.iter().any(|v| v["mac"] == mac && v["online"] == true);
            Ok((online(&shown.mac) && online(&hidden.mac)).then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let (status, flags) = portal
        .device_control(
            Method::PUT,
            &id,
            &shown.mac,
            "owner-flags",
            Some(json!({"visible": true, "power": false, "block": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{flags}");
    let owner = portal
        .api_ok(
            Method::PUT,
            &format!("/agents/{id}/owner"),
            Some(json!({ "email": EMAIL, "enabled": true, "invite": true })),
            StatusCode::OK,
        )
        .await?;
    let invitation = owner["invitation"]["url"]
        .as_str()
        .with_context(|| format!("no invitation link in {owner}"))?
        .to_owned();
    assert!(
        invitation.starts_with(&format!("{}/owner/invite/", portal.base_url())),
        "{invitation}"
    );
    let t_setup = t_test.elapsed();

    let t_browser = Instant::now();
    let browser = Browser::start("owner_pages").await?;
    let t_start = t_browser.elapsed();

    // The invitation: who is invited to which site; a password typed twice.
    browser.goto(&invitation).await?;
    browser
        .wait_for_text("h1", "Set your password", WAIT)
        .await?;
    let intro = browser.text("main p").await?;
    assert!(
        intro.contains("Violet's flat") && intro.contains(EMAIL),
        "{intro}"
    );
    browser.screenshot("invite-desktop").await?;
    browser.phone_size().await?;
    assert_no_horizontal_overflow(&browser, "the invitation page").await?;
    browser.screenshot("invite-phone").await?;
    browser.fill("#password", PASSWORD).await?;
    browser.fill("#confirm", PASSWORD).await?;
    browser.submit("form").await?;

    // Signed in: the device list shows the visible device only.
    browser.wait_for_text("h1", "Your devices", WAIT).await?;
    assert_eq!(
        browser.current_url().await?,
        format!("{}/owner", portal.base_url())
    );
    let session = browser
        .cookie("outpost_owner")
        .await?
        .context("no session cookie after accepting the invitation")?;
    assert_eq!(session.http_only(), Some(true), "{session}");
    assert_eq!(session.secure(), Some(true), "{session}");
    assert_eq!(
        browser.text("h2").await?,
        "Violet's flat online",
        "the site and its state"
    );
    let devices = browser.texts("main li").await?;
    assert_eq!(devices.len(), 1, "only the visible device: {devices:?}");
    assert!(
        devices[0].contains("192.168.54.10") && devices[0].contains("online"),
        "{devices:?}"
    );
    assert!(
        devices[0].contains("Raspberry Pi"),
        "the vendor names the device: {devices:?}"
    );
    let page = browser.text("main").await?;
    assert!(
        !page.contains("192.168.54.11") && !page.contains(&hidden.mac),
        "the hidden device is not shown: {page}"
    );
    assert!(page.contains(&format!("Signed in as {EMAIL}")), "{page}");
    assert_no_horizontal_overflow(&browser, "the device list").await?;
    browser.screenshot("devices-phone").await?;
    browser.desktop_size().await?;
    browser.screenshot("devices-desktop").await?;

    // Sign out: back to the sign-in page, the session gone.
    browser
        .click("form[action='/owner/sign-out'] button")
        .await?;
    browser.wait_for_text("h1", "Sign in", WAIT).await?;
    assert_eq!(
        browser.current_url().await?,
        format!("{}/owner/sign-in", portal.base_url())
    );
    assert!(
        browser.cookie("outpost_owner").await?.is_none(),
        "the session cookie is removed"
    );
    browser
        .goto(&format!("{}/owner", portal.base_url()))
        .await?;
    browser.wait_for_text("h1", "Sign in", WAIT).await?;

    // A wrong password is refused on the page, with the email kept.
    browser.phone_size().await?;
    browser.fill("#email", EMAIL).await?;
    browser.fill("#password", "not-the-passphrase").await?;
    browser.submit("form").await?;
    browser
        .wait_for_text("[role=alert]", "email or password", WAIT)
        .await?;
    assert_eq!(
        browser.attr("#email", "value").await?.as_deref(),
        Some(EMAIL)
    );
    assert_no_horizontal_overflow(&browser, "the sign-in page").await?;
    browser.screenshot("sign-in-refused-phone").await?;

    // Sign in with the keyboard only: Tab reaches the button, Enter presses it.
    browser.fill("#password", PASSWORD).await?;
    let presses = browser
        .press_tab_until("form button[type=submit]", 10)
        .await?;
    assert_eq!(
        presses, 3,
        "from the top of the page: the email field, the password field, then the button"
    );
    browser.press(Key::Enter).await?;
    browser.wait_for_text("h1", "Your devices", WAIT).await?;
    assert!(browser.cookie("outpost_owner").await?.is_some());
    // The sign-out button is reachable by keyboard too (the first control of the page).
    let presses = browser
        .press_tab_until("form[action='/owner/sign-out'] button", 10)
        .await?;
    assert_eq!(presses, 1, "sign-out is the first control");
    browser.press(Key::Enter).await?;
    browser.wait_for_text("h1", "Sign in", WAIT).await?;
    browser.screenshot("signed-out-phone").await?;
    browser.close().await?;
    let t_browser = t_browser.elapsed();

    agent.stop();
    eprintln!(
        "owner pages in Chromium: lab + portal + agent setup {t_setup:.1?}, Chromium start {t_start:.1?}, \
         browser steps incl. start {t_browser:.1?}, whole test {:.1?}",
        t_test.elapsed()
    );
    Ok(())
}
