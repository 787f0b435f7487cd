//! The layout of the portal's data directory (`--data DIR`): one place names every file in it.

use std::path::{Path, PathBuf};

/// The portal's data directory and the files inside it.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("portal.db")
    }

    /// The CA certificate agents are given (and told to trust).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// The CA's private key (0600).
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca-key.pem")
    }

    /// The server certificate used by both the HTTPS API and the broker's TLS listener.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }

    /// The server's private key (0600).
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server-key.pem")
    }

    /// Everything that belongs to the broker: its config, dynamic-security JSON, persistence, pid file, log.
    pub fn broker_dir(&self) -> PathBuf {
        self.root.join("broker")
    }

    pub fn broker_config(&self) -> PathBuf {
        self.broker_dir().join("mosquitto.conf")
    }

    pub fn dynsec_json(&self) -> PathBuf {
        self.broker_dir().join("dynamic-security.json")
    }

    /// The portal's own broker credentials (username and password, 0600).
    pub fn broker_admin_secret(&self) -> PathBuf {
        self.broker_dir().join("admin.json")
    }

    /// Mosquitto's pid file, so an operator (or a test) can find the broker process.
    pub fn broker_pid(&self) -> PathBuf {
        self.broker_dir().join("mosquitto.pid")
    }

    pub fn broker_log(&self) -> PathBuf {
        self.broker_dir().join("mosquitto.log")
    }
}
