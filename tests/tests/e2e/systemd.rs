//! Both daemons speak systemd's notify protocol (their units are `Type=notify` with a watchdog): tested
//! against a real notify socket, as systemd would listen on it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use outpost_tests::{Agent, Portal, PortalOptions};

/// Collects notify messages until `READY=1` and `pings` watchdog pings have arrived.
fn wait_ready_and_pings(
    sock: &UnixDatagram,
    pings: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
        let ready = seen.iter().any(|l| l == "READY=1");
        let watchdog = seen.iter().filter(|l| *l == "WATCHDOG=1").count();
        if ready && watchdog >= pings {
            return Ok(seen);
        }
    }
    bail!("no READY=1 and {pings} WATCHDOG=1 within {timeout:?}; got {seen:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_and_agent_report_ready_and_feed_the_watchdog() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let portal_sock_path = dir.path().join("portal.sock");
    let portal_sock = UnixDatagram::bind(&portal_sock_path)?;
    let env = vec![
        (
            "NOTIFY_SOCKET".to_owned(),
            portal_sock_path.display().to_string(),
        ),
        ("WATCHDOG_USEC".to_owned(), "400000".to_owned()),
    ];
    let portal = Portal::start_with(PortalOptions {
        env,
        ..Default::default()
    })
    .await?;
    let seen = wait_ready_and_pings(&portal_sock, 2, Duration::from_secs(10))?;
    let readies = seen.iter().filter(|l| *l == "READY=1").count();
    assert_eq!(
        readies, 1,
        "only the portal itself notifies (not its Mosquitto): {seen:?}"
    );

    let agent_sock_path = dir.path().join("agent.sock");
    let agent_sock = UnixDatagram::bind(&agent_sock_path)?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    let path = agent_sock_path.display().to_string();
    agent.start_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")])?;
    let seen = wait_ready_and_pings(&agent_sock, 2, Duration::from_secs(10))?;
    assert!(
        seen.iter().any(|l| l.starts_with("STATUS=")),
        "the agent tells systemd its link state: {seen:?}"
    );
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;
    Ok(())
}
