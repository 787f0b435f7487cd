//! Subscription states end to end: deactivation at the end of the paid period, prepaid expiry,
//! reactivation and extension, with the broker enforcing them on the live agent.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use outpost_tests::{wait_for, Agent, Portal};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn wait_agent_state(agent: &Agent, state: &str) -> Result<Value> {
    wait_for(
        &format!("agent state {state}"),
        Duration::from_secs(20),
        || async {
            let s = agent.status()?;
            Ok((s["state"] == state).then_some(s))
        },
    )
    .await
    .with_context(|| agent.log_tail())
}

fn actions(history: &Value) -> Vec<String> {
    history["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["action"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_deactivation_waits_for_the_month_end_then_disables_until_reactivated() -> Result<()>
{
    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;

    portal.set_clock("2027-01-15T10:00:00Z").await?;
    let pending = portal
        .api_ok(
            Method::POST,
            &format!("/agents/{id}/deactivate"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(pending["status"], "deactivation_pending", "{pending}");
    assert_eq!(
        instant(&pending["subscription"]["deactivates_at"]),
        instant(&json!("2027-02-01T00:00:00Z")),
        "{pending}"
    );
    let (status, body) = portal
        .api(Method::POST, &format!("/agents/{id}/deactivate"), None)
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state")),
        "{body}"
    );

    // Still working through the paid period.
    portal.set_clock("2027-01-31T23:59:00Z").await?;
    let a = portal
        .wait_agent(&id, "online in the paid period", |a| a["online"] == true)
        .await?;
    assert_eq!(a["status"], "deactivation_pending");

    // The month ends: deactivated, kicked off the broker, disabled locally, data kept.
    portal.set_clock("2027-02-01T00:00:01Z").await?;
    portal
        .wait_agent(&id, "deactivated and offline", |a| {
            a["status"] == "deactivated" && a["online"] == false
        })
        .await?;
    wait_agent_state(&agent, "disabled").await?;
    assert!(
        agent.is_running(),
        "a disabled agent keeps running and waits"
    );
    assert_eq!(agent.status()?["agent_id"], id.as_str());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        portal.agent(&id).await?["online"],
        false,
        "a deactivated agent got back in"
    );
    let data = portal.reports(&id).await?;
    assert!(
        data["reports"].as_array().is_some_and(|r| !r.is_empty()),
        "deactivation must keep data: {data}"
    );

    // Reactivation lets it back in by itself.
    let back = portal
        .api_ok(
            Method::POST,
            &format!("/agents/{id}/reactivate"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(back["status"], "active");
    portal
        .wait_agent(&id, "online again", |a| a["online"] == true)
        .await?;
    wait_agent_state(&agent, "active").await?;

    let history = portal.history(&id).await?;
    let acts = actions(&history);
    for expected in [
        "activated",
        "deactivation_requested",
        "deactivated",
        "reactivated",
    ] {
        assert!(
            acts.iter().any(|a| a == expected),
            "no {expected} in {acts:?}"
        );
    }
    let deactivated = history["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "deactivated"))
        .context("no deactivated entry")?;
    assert_eq!(deactivated["actor"], "system");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepaid_expiry_disables_and_extension_restores_within_five_years() -> Result<()> {
    let portal = Portal::start().await?;
    let mut agent = Agent::new()?;
    let code = portal.cli(&["codes", "new", "--prepaid-months", "12"])?;
    let out = agent.activate(&portal, &code)?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = agent.status()?["agent_id"]
        .as_str()
        .context("no id")?
        .to_owned();
    let record = portal.agent(&id).await?;
    assert_eq!(record["subscription"]["plan"], "prepaid", "{record}");
    let expires = record["expires_at"]
        .as_str()
        .context("prepaid without expires_at")?
        .to_owned();
    agent.start()?;
    portal
        .wait_agent(&id, "online", |a| a["online"] == true)
        .await?;

    // Reactivation does not apply to an active agent; monthly-only rules don't apply here.
    let (status, _) = portal
        .api(Method::POST, &format!("/agents/{id}/reactivate"), None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);

    // One second past the expiration date.
    let past = bump_year(&expires, 0, 1);
    portal.set_clock(&past).await?;
    portal
        .wait_agent(&id, "expired and offline", |a| {
            a["status"] == "expired" && a["online"] == false
        })
        .await?;
    wait_agent_state(&agent, "disabled").await?;

    // Extension: not past five years, not into the past, and only then back in.
    let too_far = bump_year(&past, 5, 86_400);
    let (status, body) = portal
        .api(
            Method::POST,
            &format!("/agents/{id}/extend"),
            Some(json!({ "until": too_far })),
        )
        .await?;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains('5') || m.contains("five")),
        "{body}"
    );
    let (status, _) = portal
        .api(
            Method::POST,
            &format!("/agents/{id}/extend"),
            Some(json!({ "until": "2020-01-01" })),
        )
        .await?;
    assert!(status.is_client_error());
    let (status, _) = portal
        .api(
            Method::POST,
            &format!("/agents/{id}/extend"),
            Some(json!({ "until": "soon" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let until = bump_year(&past, 1, 0);
    let extended = portal
        .api_ok(
            Method::POST,
            &format!("/agents/{id}/extend"),
            Some(json!({ "until": until })),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(extended["status"], "active", "{extended}");
    portal
        .wait_agent(&id, "online after extension", |a| a["online"] == true)
        .await?;
    wait_agent_state(&agent, "active").await?;

    let history = portal.history(&id).await?;
    let acts = actions(&history);
    for expected in ["activated", "expired", "extended"] {
        assert!(
            acts.iter().any(|a| a == expected),
            "no {expected} in {acts:?}"
        );
    }
    Ok(())
}

/// The instant an RFC 3339 JSON string names.
fn instant(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Adds `years` and `secs` to an RFC 3339 timestamp.
fn bump_year(ts: &str, years: i32, secs: i64) -> String {
    let t = DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let moved = t.with_year(t.year() + years).unwrap_or(t) + chrono::Duration::seconds(secs);
    moved.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[test]
fn timestamp_arithmetic() {
    assert_eq!(
        bump_year("2027-11-24T10:00:00Z", 1, 0),
        "2028-11-24T10:00:00Z"
    );
    assert_eq!(
        bump_year("2027-11-24T23:59:59Z", 0, 1),
        "2027-11-25T00:00:00Z"
    );
    assert_eq!(
        bump_year("2027-12-31T23:59:59+00:00", 0, 1),
        "2028-01-01T00:00:00Z"
    );
}
