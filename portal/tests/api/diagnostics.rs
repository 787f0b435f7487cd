//! Diagnostics (issue 8, portal side): the agent's logs and health are asked live (the command goes out
//! and the answer comes back while the request waits), an offline agent answers 409, a silent one 504
//! (and the question is given up, not re-sent later), an agent's error 502; a restart is queued with a
//! history line; the logs and health pages.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use outpost_cloud_link::diagnostics::{Health, LogLines, ScanTime};
use outpost_cloud_link::protocol::{Ack, AgentMessage, Command, Interface, Outcome};
use outpost_portal::access::Role;
use serde_json::Value;

use crate::harness::{agent_lines, form, id_of, request, Harness, Req};

async fn online_agent(h: &Harness) -> String {
    let agent = id_of(&h.activate("shop").await);
    h.connect(&agent, "shop", 0).await;
    agent
}

/// Waits for a command matching `pick` to be sent to the agent, then acknowledges it as the agent would.
async fn answer(
    h: &Harness,
    agent: &str,
    pick: fn(&Command) -> bool,
    outcome: Outcome,
    result: Option<Value>,
) -> Command {
    for _ in 0..500 {
        if let Some(env) = h.sent_to(agent).into_iter().find(|e| pick(&e.cmd)) {
            h.send(
                agent,
                0,
                AgentMessage::Ack(Ack {
                    command_id: env.id,
                    outcome,
                    result,
                }),
            )
            .await;
            return env.cmd;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the command was never sent: {:?}", h.sent_to(agent));
}

fn is_logs(c: &Command) -> bool {
    matches!(c, Command::Logs { .. })
}

fn is_health(c: &Command) -> bool {
    matches!(c, Command::Health)
}

fn sample_health() -> Health {
    Health {
        version: "0.9.1".into(),
        target: "aarch64-unknown-linux-musl".into(),
        uptime_s: 93_784,
        rss_bytes: 12 * 1024 * 1024 + 512 * 1024,
        outbox_depth: 3,
        outbox_dropped: 1,
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: Some("02:00:00:00:00:02".into()),
            addrs: vec!["192.0.2.9/24".into()],
        }],
        last_scans: vec![ScanTime {
            interface: "eth0".into(),
            duration_ms: 1834,
            at_ms: 1_768_478_400_000,
        }],
        devices: Some(44),
        settings_version: Some(3),
    }
}

#[tokio::test]
async fn logs_are_asked_live_and_returned() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let logs = LogLines {
        lines: vec!["first".into(), "second".into()],
        omitted: 7,
    };
    let path = format!("/api/v1/agents/{agent}/logs?lines=2");
    let (resp, cmd) = tokio::join!(
        h.op(Method::GET, &path, None),
        answer(
            &h,
            &agent,
            is_logs,
            Outcome::Done,
            Some(serde_json::to_value(&logs).unwrap())
        )
    );
    assert_eq!(cmd, Command::Logs { lines: 2 });
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let got: LogLines = serde_json::from_value(resp.body).unwrap();
    assert_eq!(got, logs);
    // The default is 200 lines; more than MAX_LOG_LINES is refused.
    let path = format!("/api/v1/agents/{agent}/logs");
    let (resp, cmd) = tokio::join!(
        h.op(Method::GET, &path, None),
        answer(
            &h,
            &agent,
            |c| matches!(c, Command::Logs { lines: 200 }),
            Outcome::Done,
            Some(serde_json::to_value(&logs).unwrap())
        )
    );
    assert_eq!(cmd, Command::Logs { lines: 200 });
    assert_eq!(resp.status, StatusCode::OK);
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/logs?lines=501"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{:?}", resp.body);
}

#[tokio::test]
async fn health_is_asked_live_and_returned() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let health = sample_health();
    let path = format!("/api/v1/agents/{agent}/health");
    let (resp, _) = tokio::join!(
        h.op(Method::GET, &path, None),
        answer(
            &h,
            &agent,
            is_health,
            Outcome::Done,
            Some(serde_json::to_value(&health).unwrap())
        )
    );
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let got: Health = serde_json::from_value(resp.body).unwrap();
    assert_eq!(got, health);
}

#[tokio::test]
async fn an_offline_agent_is_not_asked() {
    let h = Harness::new().await;
    let agent = id_of(&h.activate("shop").await);
    for what in ["logs", "health"] {
        let resp = h
            .op(Method::GET, &format!("/api/v1/agents/{agent}/{what}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::CONFLICT, "{what}: {:?}", resp.body);
        assert_eq!(resp.error(), "agent_offline");
        assert!(
            resp.body["message"].as_str().unwrap().contains("offline"),
            "{:?}",
            resp.body
        );
    }
    assert!(h.sent_to(&agent).is_empty());
    let commands = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/commands"),
            None,
        )
        .await;
    assert_eq!(commands.body["commands"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_silent_agent_times_out_and_the_question_is_given_up() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/health?wait_ms=50"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", resp.body);
    assert_eq!(resp.error(), "agent_timeout");
    assert!(h.sent_to(&agent).iter().any(|e| is_health(&e.cmd)));
    // Not pending: the next hello does not send it again.
    let commands = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/commands"),
            None,
        )
        .await;
    let health = &commands.body["commands"][0];
    assert_eq!(health["kind"], "health");
    assert_eq!(health["status"], "failed");
    assert_eq!(health["code"], "no-answer");
    let before = h.sent_to(&agent).len();
    h.connect(&agent, "shop", 0).await;
    assert_eq!(h.sent_to(&agent).len(), before);
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/health?wait_ms=10001"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "longer than 10 s");
}

#[tokio::test]
async fn an_agents_error_is_a_bad_gateway_with_its_message() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let path = format!("/api/v1/agents/{agent}/logs");
    let (resp, _) = tokio::join!(
        h.op(Method::GET, &path, None),
        answer(
            &h,
            &agent,
            is_logs,
            Outcome::failed_with("logs", "the log ring is not set up"),
            None
        )
    );
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{:?}", resp.body);
    assert_eq!(resp.error(), "agent_failed");
    assert!(resp.body["message"]
        .as_str()
        .unwrap()
        .contains("the log ring is not set up"));
}

#[tokio::test]
async fn a_restart_is_queued_and_written_to_the_history() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{agent}/restart"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{:?}", resp.body);
    assert_eq!(resp.body["kind"], "restart");
    assert_eq!(resp.body["status"], "pending");
    let sent = h.sent_to(&agent);
    assert_eq!(sent.last().unwrap().cmd, Command::Restart);
    assert_eq!(sent.last().unwrap().id, resp.body["id"].as_u64().unwrap());
    let history = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await;
    let lines = agent_lines(&history.body);
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "restart" && l["actor"] == "user:admin (token 1)"),
        "{lines:?}"
    );
    // An offline agent's restart waits for its next hello.
    let other = id_of(&h.activate("depot").await);
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{other}/restart"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(h.sent_to(&other).is_empty());
    h.connect(&other, "depot", 0).await;
    assert!(h.sent_to(&other).iter().any(|e| e.cmd == Command::Restart));
}

const PASSWORD: &str = "a long enough password";

async fn sign_in(h: &Harness) -> String {
    h.add_user("tech@example.com", Role::CompanyAdmin, None, PASSWORD)
        .await;
    let page = request(
        h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[
                ("email", "tech@example.com"),
                ("password", PASSWORD),
                ("next", "/agents"),
            ])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    page.session()
}

#[tokio::test]
async fn the_health_and_logs_pages_show_the_answer_or_why_there_is_none() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let offline = id_of(&h.activate("depot").await);
    let cookie = sign_in(&h).await;
    let get = |path: String| {
        let cookie = cookie.clone();
        let h = &h;
        async move {
            request(
                h,
                Method::GET,
                &path,
                Req {
                    cookie: Some(&cookie),
                    ..Req::default()
                },
            )
            .await
        }
    };
    let (page, _) = tokio::join!(
        get(format!("/agents/{agent}/health")),
        answer(
            &h,
            &agent,
            is_health,
            Outcome::Done,
            Some(serde_json::to_value(sample_health()).unwrap())
        )
    );
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for needle in [
        "1d 2h 3m 4s",
        "12.5 MiB",
        "aarch64-unknown-linux-musl",
        "192.0.2.9/24",
        "1834 ms",
        "3 queued, 1 dropped",
        "v3",
    ] {
        assert!(page.text.contains(needle), "{needle}: {}", page.text);
    }
    let (page, _) = tokio::join!(
        get(format!("/agents/{agent}/logs?lines=5")),
        answer(
            &h,
            &agent,
            is_logs,
            Outcome::Done,
            Some(serde_json::json!({"lines": ["boot <ok>", "scan done"], "omitted": 0}))
        )
    );
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("boot &lt;ok&gt;\nscan done"),
        "{}",
        page.text
    );
    let page = get(format!("/agents/{offline}/logs")).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.text);
    assert!(page.text.contains("The agent is offline"), "{}", page.text);
    // The restart button asks first without confirm=yes, and restarts with it.
    let agent_page = get(format!("/agents/{agent}")).await;
    let at = agent_page.text.find("name=\"csrf\" value=\"").unwrap();
    let rest = &agent_page.text[at + "name=\"csrf\" value=\"".len()..];
    let token = rest[..rest.find('"').unwrap()].to_owned();
    let post = |fields: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let h = &h;
        let path = format!("/agents/{agent}/restart");
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(
                h,
                Method::POST,
                &path,
                Req {
                    cookie: Some(&cookie),
                    form: Some(form(&pairs)),
                    headers: vec![("origin", "https://portal.example:8443".into())],
                    ..Req::default()
                },
            )
            .await
        }
    };
    let ask = post(vec![("csrf", token.clone())]).await;
    assert_eq!(ask.status, StatusCode::OK, "{}", ask.text);
    assert!(ask.text.contains("Restart the agent?"));
    assert!(!h.sent_to(&agent).iter().any(|e| e.cmd == Command::Restart));
    let done = post(vec![("csrf", token), ("confirm", "yes".into())]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert!(h.sent_to(&agent).iter().any(|e| e.cmd == Command::Restart));
}
