//! `identity.json`: who this agent is (id, secret, broker, CAs, name, platform), written atomically with mode 0600.

use std::path::Path;

use chrono::{DateTime, Utc};
use outpost_cloud_link::protocol::Platform;
use outpost_cloud_link::AgentId;
use serde::{Deserialize, Serialize};

use crate::state_dir::{atomic_write, StateDirError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); activate the agent again with --force")]
    Damaged {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] StateDirError),
    #[error("cannot encode the identity for {path}: {source}; nothing was written (report this as a bug)")]
    Encode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What activation gave this agent.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: AgentId,
    /// The broker password and portal credential. Never logged.
    pub secret: String,
    /// `host:port` of the broker's MQTT/TLS listener.
    pub broker: String,
    /// The portal's base URL (`https://host:port`).
    pub portal: String,
    /// The CA the broker's certificate chains to (from the portal).
    pub ca_pem: String,
    /// The only CA trusted for the portal's HTTPS (`--ca` at activation); system roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_ca_pem: Option<String>,
    pub name: String,
    pub activated_at: DateTime<Utc>,
    pub platform: Platform,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("secret", &"<redacted>")
            .field("broker", &self.broker)
            .field("portal", &self.portal)
            .field("name", &self.name)
            .field("activated_at", &self.activated_at)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity stored at `path`, or `None` when there is none (unprovisioned).
    pub fn load(path: &Path) -> Result<Option<Self>, IdentityError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| IdentityError::Damaged {
                path: path.display().to_string(),
                source,
            })
    }

    /// Replaces the file at `path` atomically and durably, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| IdentityError::Encode {
            path: path.display().to_string(),
            source,
        })?;
        atomic_write(path, &bytes, 0o600, true)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Identity {
    Identity {
        agent_id: AgentId::parse("ag-test0000001").unwrap(),
        secret: "s3cret-value".into(),
        broker: "127.0.0.1:8883".into(),
        portal: "https://127.0.0.1:8443".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        portal_ca_pem: None,
        name: "site-gw".into(),
        activated_at: Utc::now(),
        platform: Platform::Box,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state_dir::StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let id = sample();
        id.save(&state.identity()).unwrap();
        let meta = std::fs::metadata(state.identity()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(state.root())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(Identity::load(&state.identity()).unwrap(), Some(id.clone()));

        let mut renamed = id;
        renamed.name = "Shop".into();
        renamed.save(&state.identity()).unwrap();
        assert_eq!(
            Identity::load(&state.identity()).unwrap().unwrap().name,
            "Shop"
        );
    }

    #[test]
    fn missing_is_none_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.json");
        assert!(Identity::load(&p).unwrap().is_none());
        std::fs::write(&p, "{").unwrap();
        let err = Identity::load(&p).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", sample()).contains("s3cret"));
    }
}
