//! The MQTT 3.1.1 session over TLS: rumqttc options with a rustls client config (ring provider) that trusts
//! exactly the portal's CA, and TCP_NODELAY on (without it every small message waits ~40 ms for a delayed ACK).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, EventLoop, LastWill, MqttOptions, NetworkOptions, QoS, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::protocol::Envelope;
use crate::topics::{self, UpKind};
use crate::AgentId;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("CA certificate is not valid PEM: {0}")]
    BadCaPem(String),
    #[error("CA file holds no certificate")]
    NoCaCertificate,
    #[error("CA certificate rejected: {0}")]
    BadCa(#[source] rustls::Error),
    #[error("TLS setup failed: {0}")]
    Tls(#[source] rustls::Error),
    #[error("broker address {0:?} is not HOST:PORT")]
    BadAddress(String),
}

/// A TLS client config trusting only the certificates in `ca_pem`, with the ring provider.
pub fn client_tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, SessionError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut found = false;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| SessionError::BadCaPem(e.to_string()))?;
        roots.add(cert).map_err(SessionError::BadCa)?;
        found = true;
    }
    if !found {
        return Err(SessionError::NoCaCertificate);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(SessionError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Splits `host:port` (also `[v6]:port`).
pub fn split_host_port(addr: &str) -> Result<(String, u16), SessionError> {
    let bad = || SessionError::BadAddress(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Everything needed to open one MQTT/TLS session.
#[derive(Clone)]
pub struct SessionConfig {
    /// `host:port` of the broker's TLS listener.
    pub broker: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub ca_pem: Vec<u8>,
    pub keep_alive: Duration,
    /// `false` keeps subscriptions and queued QoS 1 messages across disconnects.
    pub clean_session: bool,
    pub last_will: Option<LastWill>,
    /// QoS 1 publishes in flight at once.
    pub inflight: u16,
    pub connect_timeout: Duration,
    /// `true`: incoming QoS 1 messages are PUBACKed only when the caller acks them (after it has made them
    /// safe), so the broker redelivers what a crash lost.
    pub manual_acks: bool,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// An agent's session: client id and username are the agent id, a persistent session, and an offline
    /// presence as the last will.
    pub fn for_agent(broker: &str, agent: &AgentId, secret: &str, ca_pem: Vec<u8>) -> Self {
        let will = LastWill::new(
            topics::up(agent, UpKind::Presence),
            Envelope::last_will().encode(),
            QoS::AtLeastOnce,
            true,
        );
        Self {
            broker: broker.to_owned(),
            client_id: agent.to_string(),
            username: agent.to_string(),
            password: secret.to_owned(),
            ca_pem,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            last_will: Some(will),
            inflight: 32,
            connect_timeout: Duration::from_secs(10),
            manual_acks: false,
        }
    }

    /// Builds a client and its event loop; nothing touches the network until the loop is polled.
    pub fn connect(
        &self,
        channel_capacity: usize,
    ) -> Result<(AsyncClient, EventLoop), SessionError> {
        let (host, port) = split_host_port(&self.broker)?;
        let mut opts = MqttOptions::new(self.client_id.clone(), host, port);
        opts.set_credentials(self.username.clone(), self.password.clone())
            .set_keep_alive(self.keep_alive)
            .set_clean_session(self.clean_session)
            .set_inflight(self.inflight.max(1))
            .set_manual_acks(self.manual_acks)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                client_tls_config(&self.ca_pem)?,
            )));
        if let Some(will) = &self.last_will {
            opts.set_last_will(will.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, channel_capacity);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(net);
        Ok((client, eventloop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:8883").unwrap(),
            ("127.0.0.1".into(), 8883)
        );
        assert_eq!(split_host_port("[::1]:8883").unwrap(), ("::1".into(), 8883));
        assert_eq!(
            split_host_port("broker.example:1").unwrap(),
            ("broker.example".into(), 1)
        );
        assert!(split_host_port("nohost").is_err());
        assert!(split_host_port(":8883").is_err());
        assert!(split_host_port("h:99999").is_err());
    }

    #[test]
    fn ca_must_hold_a_certificate() {
        assert!(matches!(
            client_tls_config(b""),
            Err(SessionError::NoCaCertificate)
        ));
        assert!(client_tls_config(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = AgentId::parse("ag-1").unwrap();
        let cfg = SessionConfig::for_agent("127.0.0.1:8883", &id, "hunter2-secret", Vec::new());
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.clean_session);
        assert!(cfg.last_will.is_some());
    }
}
