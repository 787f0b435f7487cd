//! Agent settings pushed from the portal (issue 8, portal side): a PUT sends `ApplySettings` with the
//! versioned document, the agent's acknowledgement makes it applied (with its pinned settings) or refused
//! (with its message), bad documents are refused naming the field, a stale `base_version` is a conflict,
//! a hello with an older version re-queues the current one, the schema route, the history, and the
//! settings page (its form, a refused value named next to its field, read-only roles).

use axum::http::{Method, StatusCode};
use outpost_cloud_link::protocol::{Ack, AgentMessage, Command, Outcome};
use outpost_cloud_link::settings::SettingsApplied;
use outpost_portal::access::Role;
use serde_json::{json, Value};

use crate::harness::{agent_lines, form, hello, id_of, request, Harness, Page, Req};

/// An activated agent, connected (online).
async fn online_agent(h: &Harness) -> String {
    let agent = id_of(&h.activate("shop").await);
    h.connect(&agent, "shop", 0).await;
    agent
}

async fn put(h: &Harness, agent: &str, body: Value) -> crate::harness::Response {
    h.op(
        Method::PUT,
        &format!("/api/v1/agents/{agent}/settings"),
        Some(body),
    )
    .await
}

async fn record(h: &Harness, agent: &str) -> Value {
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/settings"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body
}

/// The apply_settings commands sent to the agent: (command id, document).
fn applies_sent(h: &Harness, agent: &str) -> Vec<(u64, Value)> {
    h.sent_to(agent)
        .into_iter()
        .filter_map(|e| match e.cmd {
            Command::ApplySettings { doc } => Some((e.id, doc)),
            _ => None,
        })
        .collect()
}

async fn ack(h: &Harness, agent: &str, command_id: u64, outcome: Outcome, result: Option<Value>) {
    h.send(
        agent,
        0,
        AgentMessage::Ack(Ack {
            command_id,
            outcome,
            result,
        }),
    )
    .await;
}

async fn history_details(h: &Harness, agent: &str) -> Vec<String> {
    let resp = h
        .op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    agent_lines(&resp.body)
        .iter()
        .filter(|e| e["action"] == "settings")
        .map(|e| e["details"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_put_sends_the_document_and_the_agents_ack_applies_it() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    assert_eq!(record(&h, &agent).await["state"], "none");
    let settings = json!({"heartbeat_secs": 15.0, "discovery": {"retries": 2, "mdns": false},
        "interfaces": [{"name": "eth0", "vlan": 1}, {"name": "eth0.20", "vlan": 20, "tagged": true}]});
    let resp = put(&h, &agent, json!({ "settings": settings })).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["version"], 1);
    assert_eq!(resp.body["state"], "pending");
    assert_eq!(resp.body["settings"], settings);
    assert_eq!(resp.body["updated_by"], "user:admin (token 1)");
    assert!(resp.body["error"].is_null());
    let sent = applies_sent(&h, &agent);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, json!({"version": 1, "settings": settings}));
    // The agent applies it, keeping one setting its local file pins, and restarts.
    let applied = SettingsApplied {
        version: 1,
        pinned: vec!["discovery.retries".into()],
        restart: true,
    };
    ack(
        &h,
        &agent,
        sent[0].0,
        Outcome::Done,
        Some(serde_json::to_value(&applied).unwrap()),
    )
    .await;
    let r = record(&h, &agent).await;
    assert_eq!(r["state"], "applied", "{r}");
    assert_eq!(r["applied_version"], 1);
    assert_eq!(r["pinned"], json!(["discovery.retries"]));
    assert_eq!(r["restart"], true);
    let lines = history_details(&h, &agent).await;
    assert!(lines.iter().any(|l| l == "settings v1 sent"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("settings v1 applied (restarting)")
                && l.contains("discovery.retries")),
        "{lines:?}"
    );
    // A second change, made from version 1, is version 2 and pending again.
    let resp = put(
        &h,
        &agent,
        json!({"settings": {"heartbeat_secs": 30}, "base_version": 1}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.body["version"], 2);
    assert_eq!(resp.body["state"], "pending");
    assert_eq!(resp.body["applied_version"], 1);
    assert_eq!(applies_sent(&h, &agent)[1].1["version"], 2);
}

#[tokio::test]
async fn a_refusal_shows_the_agents_message() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let resp = put(
        &h,
        &agent,
        json!({"settings": {"interfaces": [{"name": "nosuch0"}]}}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let (id, _) = applies_sent(&h, &agent)[0].clone();
    let message = "interfaces[0].name: nosuch0 does not exist on this host";
    ack(
        &h,
        &agent,
        id,
        Outcome::failed_with("invalid-settings", message),
        None,
    )
    .await;
    let r = record(&h, &agent).await;
    assert_eq!(r["state"], "refused", "{r}");
    assert_eq!(r["error"]["code"], "invalid-settings");
    assert_eq!(r["error"]["message"], message);
    assert!(r["applied_version"].is_null());
    let lines = history_details(&h, &agent).await;
    assert!(
        lines.contains(&format!("settings v1 refused: {message}")),
        "{lines:?}"
    );
    // Found invalid: not sent again at the agent's next hello (it would only be refused again).
    h.send(&agent, 0, hello_running(None)).await;
    assert_eq!(applies_sent(&h, &agent).len(), 1);
    // A new version clears the refusal.
    let resp = put(&h, &agent, json!({"settings": {}})).await;
    assert_eq!(resp.body["state"], "pending");
    assert!(resp.body["error"].is_null(), "{:?}", resp.body);
    // The agent could not save it: another try at its next hello.
    let (id, _) = applies_sent(&h, &agent)[1].clone();
    ack(
        &h,
        &agent,
        id,
        Outcome::failed_with("settings-store", "cannot write settings.json: disk full"),
        None,
    )
    .await;
    let r = record(&h, &agent).await;
    assert_eq!(r["state"], "refused");
    assert_eq!(r["error"]["code"], "settings-store");
    h.send(&agent, 0, hello_running(None)).await;
    let sent = applies_sent(&h, &agent);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[2].1["version"], 2);
    let lines = history_details(&h, &agent).await;
    assert!(
        lines.contains(
            &"settings v2 refused (settings-store): cannot write settings.json: disk full"
                .to_owned()
        ),
        "{lines:?}"
    );
}

#[tokio::test]
async fn bad_documents_are_refused_naming_the_field() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    for (settings, field) in [
        (json!({"heartbeat_secs": 0}), "heartbeat_secs"),
        (
            json!({"interfaces": [{"name": "a", "vlan": 3}, {"name": "b", "vlan": 3}]}),
            "interfaces[1].vlan",
        ),
        (
            json!({"interfaces": [{"name": "a"}, {"name": "b", "vlan": "three"}]}),
            "interfaces[1].vlan",
        ),
        (json!({"heartbeat": 5}), "heartbeat"),
        (json!({"discovery": {"retries": 50}}), "discovery.retries"),
        (json!({"discovery": {"turbo": true}}), "discovery.turbo"),
        (json!({"platform": "toaster"}), "platform"),
        (json!("all of them"), "settings"),
    ] {
        let resp = put(&h, &agent, json!({ "settings": settings })).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{settings}: {:?}",
            resp.body
        );
        assert_eq!(resp.error(), "invalid_settings", "{settings}");
        assert_eq!(resp.body["field"], field, "{settings}: {:?}", resp.body);
        let message = resp.body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{message}");
    }
    let resp = put(&h, &agent, json!({"settings": {"heartbeat": 5}})).await;
    assert!(
        resp.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `heartbeat`"),
        "{:?}",
        resp.body
    );
    let resp = put(&h, &agent, json!({"settings": {}, "extra": 1})).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.body["field"], "extra");
    let resp = put(&h, &agent, json!({})).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.body["field"], "settings");
    // Nothing was stored or sent.
    assert_eq!(record(&h, &agent).await["version"], 0);
    assert!(applies_sent(&h, &agent).is_empty());
}

#[tokio::test]
async fn a_stale_base_version_is_a_conflict() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let first = put(&h, &agent, json!({"settings": {"heartbeat_secs": 10}})).await;
    assert_eq!(first.body["version"], 1);
    let second = put(
        &h,
        &agent,
        json!({"settings": {"heartbeat_secs": 20}, "base_version": 1}),
    )
    .await;
    assert_eq!(second.body["version"], 2);
    // Someone who loaded version 1 saves over version 2.
    let stale = put(
        &h,
        &agent,
        json!({"settings": {"heartbeat_secs": 30}, "base_version": 1}),
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{:?}", stale.body);
    assert_eq!(stale.error(), "conflict");
    assert!(
        stale.body["message"]
            .as_str()
            .unwrap()
            .contains("version 2"),
        "{:?}",
        stale.body
    );
    let r = record(&h, &agent).await;
    assert_eq!(r["version"], 2);
    assert_eq!(r["settings"]["heartbeat_secs"], 20.0);
    assert_eq!(applies_sent(&h, &agent).len(), 2);
}

fn hello_running(version: Option<u64>) -> AgentMessage {
    let AgentMessage::Hello(mut hl) = hello("shop") else {
        unreachable!()
    };
    hl.settings_version = version;
    AgentMessage::Hello(hl)
}

#[tokio::test]
async fn a_hello_with_older_settings_queues_the_current_ones_again() {
    let h = Harness::new().await;
    let agent = id_of(&h.activate("shop").await);
    // Stored while the agent was never connected: queued, not sent.
    let resp = put(&h, &agent, json!({"settings": {"heartbeat_secs": 12}})).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert!(applies_sent(&h, &agent).is_empty());
    let lines = history_details(&h, &agent).await;
    assert!(
        lines.iter().any(|l| l.starts_with("settings v1 queued")),
        "{lines:?}"
    );
    // Its hello (without settings) sends the pending command, and queues no second one.
    h.send(&agent, 0, hello_running(None)).await;
    let sent = applies_sent(&h, &agent);
    assert_eq!(sent.len(), 1, "{sent:?}");
    ack(
        &h,
        &agent,
        sent[0].0,
        Outcome::Done,
        Some(json!({"version": 1, "pinned": [], "restart": false})),
    )
    .await;
    assert_eq!(record(&h, &agent).await["state"], "applied");
    // It says it runs version 1: nothing to do; the agent JSON shows the version.
    h.send(&agent, 0, hello_running(Some(1))).await;
    assert_eq!(applies_sent(&h, &agent).len(), 1);
    assert_eq!(h.agent(&agent).await["settings_version"], 1);
    assert_eq!(record(&h, &agent).await["running_version"], 1);
    // Restored from an old backup (version 0, then none): the current document goes again, once per
    // hello that still runs an older one and has none on its way.
    h.send(&agent, 0, hello_running(Some(0))).await;
    let sent = applies_sent(&h, &agent);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[1].1,
        json!({"version": 1, "settings": {"heartbeat_secs": 12.0}})
    );
    assert_eq!(h.agent(&agent).await["settings_version"], 0);
    // The re-sent one is still pending: another hello re-sends that one, without queueing another.
    h.send(&agent, 0, hello_running(None)).await;
    let sent = applies_sent(&h, &agent);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        sent[2].0, sent[1].0,
        "the pending command again, not a new one"
    );
    assert!(h.agent(&agent).await["settings_version"].is_null());
    let lines = history_details(&h, &agent).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("settings v1 sent again: the agent runs v0")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_schema_names_the_settings_and_interfaces() {
    let h = Harness::new().await;
    let resp = h
        .op(Method::GET, "/api/v1/agent-settings/schema", None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    let text = resp.body.to_string();
    assert!(resp.body["properties"]["settings"].is_object(), "{text}");
    assert!(text.contains("\"interfaces\""), "{text}");
    assert!(text.contains("sweep_interval_secs"), "{text}");
}

// --- the settings page ---

const PASSWORD: &str = "a long enough password";

async fn sign_in(h: &Harness, email: &str, role: Role) -> String {
    let group = role.uses_groups().then_some("North");
    h.add_user(email, role, group, PASSWORD).await;
    let page = request(
        h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[
                ("email", email),
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

async fn get_page(h: &Harness, path: &str, cookie: &str) -> Page {
    request(
        h,
        Method::GET,
        path,
        Req {
            cookie: Some(cookie),
            ..Req::default()
        },
    )
    .await
}

fn csrf(page: &Page) -> String {
    let at = page
        .text
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {}", page.text));
    let rest = &page.text[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn post_form(h: &Harness, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Page {
    request(
        h,
        Method::POST,
        path,
        Req {
            cookie: Some(cookie),
            form: Some(form(fields)),
            headers: vec![("origin", "https://portal.example:8443".into())],
            ..Req::default()
        },
    )
    .await
}

#[tokio::test]
async fn the_settings_page_saves_the_form_and_names_a_bad_value() {
    let h = Harness::new().await;
    let agent = online_agent(&h).await;
    let cookie = sign_in(&h, "tech@example.com", Role::CompanyAdmin).await;
    let path = format!("/agents/{agent}/settings");
    let page = get_page(&h, &path, &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for needle in [
        "name=\"discovery.retries\"",
        "name=\"interfaces\"",
        "name=\"platform\"",
        "None: the agent runs with its local settings.",
    ] {
        assert!(page.text.contains(needle), "{needle}");
    }
    let token = csrf(&page);
    // The agent page links here and has the diagnostics.
    let agent_page = get_page(&h, &format!("/agents/{agent}"), &cookie).await;
    assert!(agent_page.text.contains(&path), "{}", agent_page.text);
    assert!(agent_page.text.contains("Restart agent"));
    // A retries value out of range: refused, named next to its field, nothing stored.
    let bad = post_form(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", &token),
            ("base_version", "0"),
            ("discovery.retries", "50"),
            ("interfaces", "eth0 vlan=1"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(
        bad.text.contains("id=\"discovery-retries-error\""),
        "{}",
        bad.text
    );
    assert!(bad
        .text
        .contains("discovery.retries: 50 is not within 0..=10"));
    assert!(
        bad.text.contains("eth0 vlan=1"),
        "the form comes back as typed"
    );
    assert_eq!(record(&h, &agent).await["version"], 0);
    // An interface line it cannot read is named too.
    let bad = post_form(
        &h,
        &path,
        &cookie,
        &[("csrf", &token), ("interfaces", "eth0\neth1 vlan=x")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("interfaces[1].vlan"), "{}", bad.text);
    // A good form: stored, sent, and the page shows it pending.
    let ok = post_form(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", &token),
            ("base_version", "0"),
            ("discovery.retries", "3"),
            ("discovery.mdns", "off"),
            ("heartbeat_secs", ""),
            ("interfaces", "eth0 vlan=1\neth0.20 vlan=20 tagged"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    let r = record(&h, &agent).await;
    assert_eq!(
        r["settings"],
        json!({"discovery": {"retries": 3, "mdns": false},
            "interfaces": [{"name": "eth0", "vlan": 1}, {"name": "eth0.20", "vlan": 20, "tagged": true}]})
    );
    assert_eq!(applies_sent(&h, &agent).len(), 1);
    let page = get_page(&h, &format!("{path}?ok=saved"), &cookie).await;
    assert!(page.text.contains("Pending v1"), "{}", page.text);
    assert!(page.text.contains("eth0.20 vlan=20 tagged"));
    // The agent applies it with a pinned setting: the page says so.
    let (id, _) = applies_sent(&h, &agent)[0].clone();
    ack(
        &h,
        &agent,
        id,
        Outcome::Done,
        Some(json!({"version": 1, "pinned": ["discovery.retries"], "restart": true})),
    )
    .await;
    let page = get_page(&h, &path, &cookie).await;
    assert!(
        page.text
            .contains("Applied v1 (the agent restarts to apply them)"),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("<dd id=\"pinned\">discovery.retries</dd>"),
        "{}",
        page.text
    );
    // Saving again from the stale version 0: a conflict, nothing overwritten.
    let stale = post_form(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", &token),
            ("base_version", "0"),
            ("heartbeat_secs", "9"),
        ],
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text);
    assert!(stale
        .text
        .contains("someone changed these settings meanwhile"));
    assert_eq!(record(&h, &agent).await["version"], 1);
    // A version the agent refuses: the page shows its message.
    let token = csrf(&get_page(&h, &path, &cookie).await);
    let ok = post_form(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", &token),
            ("base_version", "1"),
            ("interfaces", "wlan9"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    let (id, _) = applies_sent(&h, &agent)[1].clone();
    ack(
        &h,
        &agent,
        id,
        Outcome::failed_with(
            "invalid-settings",
            "interfaces[0].name: wlan9 does not exist",
        ),
        None,
    )
    .await;
    let page = get_page(&h, &path, &cookie).await;
    assert!(
        page.text
            .contains("Refused v2</strong>: interfaces[0].name: wlan9 does not exist"),
        "{}",
        page.text
    );
    // Without the CSRF token: refused.
    let forged = post_form(&h, &path, &cookie, &[("heartbeat_secs", "9")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_supervisor_sees_the_settings_but_cannot_change_them() {
    let h = Harness::new().await;
    let north = crate::people::group(&h, "North", None).await;
    let agent = online_agent(&h).await;
    let moved = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/group"),
            Some(json!({ "group": north })),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let cookie = sign_in(&h, "sup@example.com", Role::Supervisor).await;
    let path = format!("/agents/{agent}/settings");
    let page = get_page(&h, &path, &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("fieldset class=\"plain\" disabled"),
        "{}",
        page.text
    );
    let token = csrf(&page);
    let refused = post_form(
        &h,
        &path,
        &cookie,
        &[("csrf", &token), ("heartbeat_secs", "9")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(record(&h, &agent).await["version"], 0);
}
