//! The agent's HTTPS calls to the portal: activation by code and the status check, with the JSON both
//! sides exchange (the MQTT link carries everything else).

use serde::{Deserialize, Serialize};

use crate::protocol::Platform;

/// `POST` here with an [`ActivateRequest`]: `201` with an [`ActivateResponse`], or an [`ApiError`].
pub const ACTIVATE_PATH: &str = "/api/v1/activate";
/// `GET` here with HTTP Basic `agent_id:secret`: `200` with an [`AgentStatus`], `401`, or `410` once deleted.
pub const STATUS_PATH: &str = "/api/v1/agent/status";

/// What an agent tells the portal when it activates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub code: String,
    #[serde(default)]
    pub mac: Option<String>,
    pub hostname: String,
    pub version: String,
    #[serde(default)]
    pub local_ip: Option<String>,
    pub platform: Platform,
}

/// The portal's answer to an activation: everything the agent needs to link up. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub agent_id: String,
    pub name: String,
    /// `host:port` of the broker's MQTT/TLS listener.
    pub broker: String,
    pub secret: String,
    /// The CA that signed the broker's (and the portal's) certificate.
    pub ca_pem: String,
    #[serde(default)]
    pub epoch: u64,
    /// The address the portal saw the activation come from: the agent's public address (GeoIP
    /// self-location looks it up). Absent from portals older than GeoIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
}

impl std::fmt::Debug for ActivateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivateResponse")
            .field("agent_id", &self.agent_id)
            .field("name", &self.name)
            .field("broker", &self.broker)
            .field("epoch", &self.epoch)
            .field("public_ip", &self.public_ip)
            .finish_non_exhaustive()
    }
}

/// The portal's answer to the status check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub agent_id: String,
    pub name: String,
    /// `active | deactivation_pending | deactivated | expired`.
    pub status: String,
    #[serde(default)]
    pub epoch: u64,
}

/// Every error the portal's API answers: a stable machine code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows_in_debug() {
        let r = ActivateResponse {
            agent_id: "ag-1".into(),
            name: "n".into(),
            broker: "127.0.0.1:8883".into(),
            secret: "s3cr3t-value".into(),
            ca_pem: String::new(),
            epoch: 0,
            public_ip: Some("203.0.113.7".into()),
        };
        assert!(!format!("{r:?}").contains("s3cr3t"));
        assert!(format!("{r:?}").contains("203.0.113.7"));
    }

    #[test]
    fn an_activation_reply_without_the_public_address_still_reads() {
        let old: ActivateResponse = serde_json::from_str(
            r#"{"agent_id":"ag-1","name":"n","broker":"b:1","secret":"s","ca_pem":"","epoch":0}"#,
        )
        .unwrap();
        assert_eq!(old.public_ip, None);
        let new: ActivateResponse = serde_json::from_str(
            r#"{"agent_id":"ag-1","name":"n","broker":"b:1","secret":"s","ca_pem":"","public_ip":"198.51.100.9"}"#,
        )
        .unwrap();
        assert_eq!(new.public_ip.as_deref(), Some("198.51.100.9"));
    }

    #[test]
    fn requests_round_trip_and_optional_fields_default() {
        let req = ActivateRequest {
            code: "ABCD-EFGH-JKMN".into(),
            mac: None,
            hostname: "gw".into(),
            version: "0.1.0".into(),
            local_ip: Some("192.0.2.4".into()),
            platform: Platform::Router,
        };
        let back: ActivateRequest =
            serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
        let minimal: ActivateRequest =
            serde_json::from_str(r#"{"code":"x","hostname":"h","version":"1","platform":"box"}"#)
                .unwrap();
        assert_eq!(minimal.mac, None);
        assert!(serde_json::from_str::<ActivateRequest>(
            r#"{"code":"x","hostname":"h","version":"1","platform":"pc"}"#
        )
        .is_err());
    }
}
