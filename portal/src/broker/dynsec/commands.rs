//! The dynamic-security plugin's JSON, pure: the commands the portal sends (one role and one client per
//! agent, with literal ACLs) and the replies it reads back, matched by `correlationData`.

use std::time::Duration;

use outpost_cloud_link::{topics, AgentId};
use serde::Deserialize;
use serde_json::{json, Value};

/// Where commands go.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where the plugin answers.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// How long one operation may take, reconnects included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default access types of the dynamic-security plugin.
pub const DEFAULT_ACL_TYPES: [&str; 4] = [
    "publishClientSend",
    "publishClientReceive",
    "subscribe",
    "unsubscribe",
];
/// The batch of the [`cmd::deny_by_default`] sent at each admin connect (requests start at 1).
pub(super) const DEFAULT_ACL_BATCH: u64 = 0;

pub(super) const CLIENT_NOT_FOUND: &str = "Client not found";
pub(super) const ROLE_NOT_FOUND: &str = "Role not found";
pub(super) const CLIENT_EXISTS: &str = "Client already exists";
pub(super) const ROLE_EXISTS: &str = "Role already exists";
pub(super) const ACL_EXISTS: &str = "ACL with this topic already exists";

/// The role holding one agent's ACLs.
pub fn role_name(agent: &AgentId) -> String {
    format!("agent-{agent}")
}

/// One agent's ACLs, literal (dynamic security does not substitute `%u`): publish under its own `up/`,
/// subscribe to and receive its own `down/`.
pub fn agent_acls(agent: &AgentId) -> Vec<Value> {
    let up = topics::agent_up_filter(agent);
    let down = topics::agent_down_filter(agent);
    [
        ("publishClientSend", &up),
        ("subscribeLiteral", &down),
        ("subscribePattern", &down),
        ("publishClientReceive", &down),
        ("unsubscribeLiteral", &down),
        ("unsubscribePattern", &down),
    ]
    .into_iter()
    .map(|(acltype, topic)| json!({ "acltype": acltype, "topic": topic, "priority": 0, "allow": true }))
    .collect()
}

/// The JSON commands, one builder each (without `correlationData`, added when sent).
pub mod cmd {
    use super::*;

    pub fn create_role(agent: &AgentId) -> Value {
        json!({
            "command": "createRole",
            "rolename": role_name(agent),
            "textdescription": format!("Outpost agent {agent}"),
            "acls": agent_acls(agent),
        })
    }

    pub fn create_client(agent: &AgentId, secret: &str) -> Value {
        json!({
            "command": "createClient",
            "username": agent.as_str(),
            "password": secret,
            "clientid": agent.as_str(),
            "textname": format!("Outpost agent {agent}"),
            "roles": [{ "rolename": role_name(agent) }],
        })
    }

    pub fn get_client(agent: &AgentId) -> Value {
        json!({ "command": "getClient", "username": agent.as_str() })
    }

    pub fn get_role(agent: &AgentId) -> Value {
        json!({ "command": "getRole", "rolename": role_name(agent) })
    }

    pub fn add_role_acl(agent: &AgentId, acl: &Value) -> Value {
        let mut c = acl.clone();
        c["command"] = json!("addRoleACL");
        c["rolename"] = json!(role_name(agent));
        c
    }

    pub fn add_client_role(agent: &AgentId) -> Value {
        json!({ "command": "addClientRole", "username": agent.as_str(), "rolename": role_name(agent) })
    }

    pub fn set_client_id(agent: &AgentId) -> Value {
        json!({ "command": "modifyClient", "username": agent.as_str(), "clientid": agent.as_str() })
    }

    pub fn set_password(agent: &AgentId, secret: &str) -> Value {
        json!({ "command": "setClientPassword", "username": agent.as_str(), "password": secret })
    }

    pub fn disable(agent: &AgentId) -> Value {
        json!({ "command": "disableClient", "username": agent.as_str() })
    }

    pub fn enable(agent: &AgentId) -> Value {
        json!({ "command": "enableClient", "username": agent.as_str() })
    }

    pub fn delete_client(agent: &AgentId) -> Value {
        json!({ "command": "deleteClient", "username": agent.as_str() })
    }

    pub fn delete_role(agent: &AgentId) -> Value {
        json!({ "command": "deleteRole", "rolename": role_name(agent) })
    }

    /// `setDefaultACLAccess` denying all four default access types: what no role allows is refused.
    /// Sent by the portal itself on every admin connect (`mosquitto_ctrl dynsec setDefaultACLAccess`
    /// silently does nothing on 2.0), so a `dynamic-security.json` from elsewhere cannot keep allowing.
    pub fn deny_by_default() -> Value {
        let acls: Vec<Value> = DEFAULT_ACL_TYPES
            .iter()
            .map(|t| json!({ "acltype": t, "allow": false }))
            .collect();
        json!({ "command": "setDefaultACLAccess", "acls": acls })
    }

    /// Every client with its details (`disabled: true` on disabled ones).
    pub fn list_clients() -> Value {
        json!({ "command": "listClients", "verbose": true })
    }

    /// `modifyClient` with nothing to change: Mosquitto 2.0 disconnects the client and changes nothing.
    pub fn kick(agent: &AgentId) -> Value {
        json!({ "command": "modifyClient", "username": agent.as_str() })
    }
}

/// Wraps commands in the envelope the plugin expects, tagging command `i` with `correlationData` `"<batch>:<i>"`.
pub fn envelope(batch: u64, commands: &[Value]) -> Value {
    let commands: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["correlationData"] = json!(format!("{batch}:{i}"));
            c
        })
        .collect();
    json!({ "commands": commands })
}

/// One answer of the plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Reply {
    pub command: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(rename = "correlationData", default)]
    pub correlation: Option<String>,
}

impl Reply {
    pub(super) fn missing() -> Self {
        Self {
            command: String::new(),
            error: Some("no reply from the broker".into()),
            data: None,
            correlation: None,
        }
    }

    pub(super) fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    pub(super) fn error_is(&self, e: &str) -> bool {
        self.error.as_deref() == Some(e)
    }
}

#[derive(Deserialize)]
struct Responses {
    responses: Vec<Reply>,
}

/// `(batch, index, reply)` triples with our correlation data, and the replies without.
pub type ParsedResponses = (Vec<(u64, usize, Reply)>, Vec<Reply>);

/// Splits a response message into `(batch, index, reply)` triples; replies without our correlation data
/// (e.g. "Payload not valid JSON") come back in the second list.
pub fn parse_responses(payload: &[u8]) -> Result<ParsedResponses, serde_json::Error> {
    let Responses { responses } = serde_json::from_slice(payload)?;
    let mut ours = Vec::new();
    let mut stray = Vec::new();
    for r in responses {
        let parsed = r.correlation.as_deref().and_then(|c| {
            let (b, i) = c.split_once(':')?;
            Some((b.parse::<u64>().ok()?, i.parse::<usize>().ok()?))
        });
        match parsed {
            Some((b, i)) => ours.push((b, i, r)),
            None => stray.push(r),
        }
    }
    Ok((ours, stray))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> AgentId {
        AgentId::parse("ag-7x2k9").unwrap()
    }

    #[test]
    fn agent_acls_are_literal_and_confined_to_the_agent() {
        let acls = agent_acls(&id());
        let has = |t: &str, topic: &str| {
            acls.iter()
                .any(|a| a["acltype"] == t && a["topic"] == topic && a["allow"] == true)
        };
        assert!(has("publishClientSend", "agents/ag-7x2k9/up/#"));
        assert!(has("subscribeLiteral", "agents/ag-7x2k9/down/#"));
        assert!(has("subscribePattern", "agents/ag-7x2k9/down/#"));
        assert!(has("publishClientReceive", "agents/ag-7x2k9/down/#"));
        for a in &acls {
            let topic = a["topic"].as_str().unwrap();
            assert!(topic.starts_with("agents/ag-7x2k9/"), "{topic}");
            assert!(!topic.contains('%'), "{topic}");
        }
        assert_eq!(
            acls.iter()
                .filter(|a| a["acltype"] == "publishClientSend")
                .count(),
            1
        );
    }

    #[test]
    fn create_commands() {
        let role = cmd::create_role(&id());
        assert_eq!(role["command"], "createRole");
        assert_eq!(role["rolename"], "agent-ag-7x2k9");
        assert_eq!(
            role["acls"].as_array().unwrap().len(),
            agent_acls(&id()).len()
        );
        let client = cmd::create_client(&id(), "s3cret");
        assert_eq!(
            client,
            json!({
                "command": "createClient",
                "username": "ag-7x2k9",
                "password": "s3cret",
                "clientid": "ag-7x2k9",
                "textname": "Outpost agent ag-7x2k9",
                "roles": [{ "rolename": "agent-ag-7x2k9" }],
            })
        );
        let acl = cmd::add_role_acl(&id(), &agent_acls(&id())[0]);
        assert_eq!(acl["command"], "addRoleACL");
        assert_eq!(acl["rolename"], "agent-ag-7x2k9");
        assert_eq!(acl["acltype"], "publishClientSend");
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            cmd::kick(&id()),
            json!({"command": "modifyClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::disable(&id()),
            json!({"command": "disableClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::enable(&id()),
            json!({"command": "enableClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::delete_role(&id()),
            json!({"command": "deleteRole", "rolename": "agent-ag-7x2k9"})
        );
        assert_eq!(
            cmd::set_password(&id(), "x"),
            json!({"command": "setClientPassword", "username": "ag-7x2k9", "password": "x"})
        );
    }

    #[test]
    fn deny_by_default_denies_all_four_types() {
        let c = cmd::deny_by_default();
        assert_eq!(c["command"], "setDefaultACLAccess");
        let acls = c["acls"].as_array().unwrap();
        assert_eq!(acls.len(), 4);
        for t in DEFAULT_ACL_TYPES {
            assert!(
                acls.iter()
                    .any(|a| a["acltype"] == t && a["allow"] == json!(false)),
                "{t}: {c}"
            );
        }
    }

    #[test]
    fn envelope_tags_each_command() {
        let env = envelope(42, &[cmd::disable(&id()), cmd::enable(&id())]);
        assert_eq!(env["commands"][0]["correlationData"], "42:0");
        assert_eq!(env["commands"][1]["correlationData"], "42:1");
        assert_eq!(env["commands"][1]["command"], "enableClient");
    }

    #[test]
    fn responses_are_split_by_correlation() {
        // As Mosquitto 2.0.11 sends them.
        let payload = br#"{"responses":[{"command":"createRole","correlationData":"7:0"},
            {"command":"createClient","error":"Client already exists","correlationData":"7:1"},
            {"command":"getClient","data":{"client":{"username":"c1"}},"correlationData":"8:0"},
            {"command":"Unknown command","error":"Payload not valid JSON"}]}"#;
        let (ours, stray) = parse_responses(payload).unwrap();
        assert_eq!(ours.len(), 3);
        assert_eq!((ours[1].0, ours[1].1), (7, 1));
        assert!(ours[1].2.error_is(CLIENT_EXISTS));
        assert_eq!(ours[2].2.data.as_ref().unwrap()["client"]["username"], "c1");
        assert_eq!(stray.len(), 1);
    }
}
