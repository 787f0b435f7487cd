//! PoE switch ports and APC rack PDU outlets over SNMP (v2c, or v3 USM up to authPriv), with async-snmp.
//!
//! - PoE: POWER-ETHERNET-MIB (RFC 3621) `pethPsePortAdminEnable.<group>.<port>`
//!   (1.3.6.1.2.1.105.1.1.1.3), a TruthValue: 1 true (powered), 2 false.
//! - APC: PowerNet-MIB `sPDUOutletCtl.<outlet>` (1.3.6.1.4.1.318.1.1.4.4.2.1.3): written 1 immediateOn,
//!   2 immediateOff, 3 immediateReboot; read 1 on, 2 off (anything else, e.g. a reboot in progress, is not yet a
//!   state). A `cycle` is off, the binding's delay, on, so the delay is the binding's and not the PDU's own
//!   reboot duration.
//!
//! A v2c agent drops requests with a wrong community without a word, so a wrong community is a timeout. A v3
//! agent answers a wrong user or authentication password with an unauthenticated Report
//! (`usmStatsWrongDigests`, `usmStatsUnknownUserNames`, ...), which is an authentication failure here; a wrong
//! privacy password (right authentication) is dropped without a Report by net-snmp, so it is a timeout.

use std::time::Duration;

use async_snmp::{
    Auth, AuthProtocol, Client, Error as SnmpError, ErrorStatus, MasterKeys, Oid, PrivProtocol,
    Retry, UdpHandle, UsmConfig, Value,
};
use outpost_cloud_link::control::{PowerState, SnmpAuth, SnmpAuthProtocol, SnmpPrivProtocol};

use super::{host_port, split_host, PowerError, Switch};
use crate::config::PowerConfig;

/// `pethPsePortAdminEnable` (POWER-ETHERNET-MIB), indexed by group and port.
pub const PETH_PSE_PORT_ADMIN_ENABLE: [u32; 11] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 3];
/// `sPDUOutletCtl` (PowerNet-MIB), indexed by outlet.
pub const SPDU_OUTLET_CTL: [u32; 14] = [1, 3, 6, 1, 4, 1, 318, 1, 1, 4, 4, 2, 1, 3];
/// The value that switches on (TruthValue true, immediateOn) and reads as on.
pub const ON: i32 = 1;
/// The value that switches off (TruthValue false, immediateOff) and reads as off.
pub const OFF: i32 = 2;
/// APC's immediateReboot (not used: a cycle waits the binding's delay).
pub const APC_REBOOT: i32 = 3;

/// Which table the outlet is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Poe { group: u32, port: u32 },
    ApcPdu { outlet: u32 },
}

impl Table {
    /// The OID of the outlet's control object.
    pub fn oid(self) -> Oid {
        match self {
            Table::Poe { group, port } => {
                let mut arcs = PETH_PSE_PORT_ADMIN_ENABLE.to_vec();
                arcs.extend([group, port]);
                Oid::from(arcs)
            }
            Table::ApcPdu { outlet } => {
                let mut arcs = SPDU_OUTLET_CTL.to_vec();
                arcs.push(outlet);
                Oid::from(arcs)
            }
        }
    }

    /// The object's name with its index: `pethPsePortAdminEnable.1.4`, `sPDUOutletCtl.3`.
    pub fn object(self) -> String {
        match self {
            Table::Poe { group, port } => format!("pethPsePortAdminEnable.{group}.{port}"),
            Table::ApcPdu { outlet } => format!("sPDUOutletCtl.{outlet}"),
        }
    }

    fn what(self) -> String {
        match self {
            Table::Poe { group, port } => format!("PoE port {group}.{port}"),
            Table::ApcPdu { outlet } => format!("PDU outlet {outlet}"),
        }
    }

    /// What to check when the outlet does not exist.
    fn index_hint(self) -> &'static str {
        match self {
            Table::Poe { .. } => "check the group and port numbers in the binding",
            Table::ApcPdu { .. } => "check the outlet number in the binding",
        }
    }
}

/// The state a read value means.
pub fn state_of(value: &Value) -> Result<PowerState, String> {
    match value {
        Value::Integer(ON) => Ok(PowerState::On),
        Value::Integer(OFF) => Ok(PowerState::Off),
        // E.g. an APC outlet that is rebooting (3): not a state yet.
        Value::Integer(_) => Ok(PowerState::Unknown),
        Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {
            Err("it does not exist".to_owned())
        }
        other => Err(format!("its value is not an INTEGER: {other:?}")),
    }
}

/// One outlet on one SNMP agent.
pub struct SnmpSwitch {
    client: Client<UdpHandle>,
    table: Table,
    oid: Oid,
    /// `host:port`.
    host: String,
    v3: bool,
}

impl std::fmt::Debug for SnmpSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpSwitch")
            .field("table", &self.table)
            .field("host", &self.host)
            .field("v3", &self.v3)
            .finish_non_exhaustive()
    }
}

impl SnmpSwitch {
    /// A PoE switch port.
    pub async fn poe(
        config: &PowerConfig,
        host: &str,
        group: u32,
        port: u32,
        auth: &SnmpAuth,
    ) -> Result<Self, PowerError> {
        Self::connect(config, host, Table::Poe { group, port }, auth).await
    }

    /// An APC PDU outlet.
    pub async fn apc_pdu(
        config: &PowerConfig,
        host: &str,
        outlet: u32,
        auth: &SnmpAuth,
    ) -> Result<Self, PowerError> {
        Self::connect(config, host, Table::ApcPdu { outlet }, auth).await
    }

    async fn connect(
        config: &PowerConfig,
        raw_host: &str,
        table: Table,
        auth: &SnmpAuth,
    ) -> Result<Self, PowerError> {
        let (name, port) = split_host(raw_host, 161)?;
        let host = host_port(&name, port);
        let v3 = matches!(auth, SnmpAuth::V3 { .. });
        let retries = config.retries.min(async_snmp::MAX_RETRIES);
        let retry = Retry::fixed(retries, Duration::ZERO).unwrap_or_else(|_| Retry::none());
        let client = Client::builder((name, port), client_auth(auth).await?)
            .request_timeout(config.timeout)
            .construction_timeout(config.timeout)
            .retry(retry)
            // An agent answers wrong v3 credentials with an unauthenticated Report (it could not check them):
            // take it as the answer (AUTH_FAILED) instead of waiting for a timeout. Responses still have to
            // authenticate; only Reports, which end the request, may come without.
            .allow_unauthenticated_v3_time_correction(true)
            .connect()
            .await
            .map_err(|e| map_error(&host, table, v3, &e))?;
        Ok(SnmpSwitch {
            client,
            table,
            oid: table.oid(),
            host,
            v3,
        })
    }

    fn error(&self, e: &SnmpError) -> PowerError {
        map_error(&self.host, self.table, self.v3, e)
    }
}

impl Switch for SnmpSwitch {
    fn host(&self) -> &str {
        &self.host
    }

    fn what(&self) -> String {
        self.table.what()
    }

    fn method(&self) -> &'static str {
        match self.table {
            Table::Poe { .. } => "a PoE switch port",
            Table::ApcPdu { .. } => "an APC PDU outlet",
        }
    }

    async fn set(&self, on: bool) -> Result<(), PowerError> {
        let value = Value::Integer(if on { ON } else { OFF });
        self.client
            .set(&self.oid, value)
            .await
            .map(drop)
            .map_err(|e| self.error(&e))
    }

    async fn read(&self) -> Result<PowerState, PowerError> {
        let response = self
            .client
            .get(&self.oid)
            .await
            .map_err(|e| self.error(&e))?;
        let value = response
            .varbinds
            .iter()
            .find(|vb| vb.oid == self.oid)
            .map(|vb| &vb.value)
            .ok_or_else(|| PowerError::Outlet {
                host: self.host.clone(),
                detail: format!(
                    "the answer to a GET of {} does not carry it",
                    self.table.object()
                ),
            })?;
        state_of(value).map_err(|why| PowerError::Outlet {
            host: self.host.clone(),
            detail: format!(
                "{} ({}): {why}; {}",
                self.table.object(),
                self.table.what(),
                self.table.index_hint()
            ),
        })
    }
}

/// The library's credentials for a binding's; secrets go nowhere else.
async fn client_auth(auth: &SnmpAuth) -> Result<Auth, PowerError> {
    let (user, auth_protocol, auth_password, priv_protocol, priv_password) = match auth {
        SnmpAuth::V2c { community } => {
            if community.is_empty() {
                return Err(PowerError::BadBinding("the SNMP community is empty".into()));
            }
            return Ok(Auth::v2c(community.as_str()));
        }
        SnmpAuth::V3 {
            user,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
        } => (
            user,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
        ),
    };
    if user.is_empty() {
        return Err(PowerError::BadBinding("the SNMPv3 user is empty".into()));
    }
    let bad = |why: &str| PowerError::BadBinding(format!("SNMPv3 user {user:?}: {why}"));
    let config = UsmConfig::new(user.as_bytes().to_vec());
    let password = |p: &Option<String>, which: &str| {
        p.as_deref()
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                bad(&format!(
                    "{which}_protocol is set but {which}_password is missing"
                ))
            })
    };
    let (auth_protocol, auth_password, privacy) = match (auth_protocol, priv_protocol) {
        (None, None) => return Ok(config.into()),
        (None, Some(_)) => return Err(bad("priv_protocol needs an auth_protocol too")),
        (Some(a), None) => (auth_algorithm(*a), password(auth_password, "auth")?, None),
        (Some(a), Some(p)) => (
            auth_algorithm(*a),
            password(auth_password, "auth")?,
            Some((priv_algorithm(*p), password(priv_password, "priv")?)),
        ),
    };
    // Turning a password into a key hashes a megabyte (RFC 3414 A.2): off the async threads.
    let keys = tokio::task::spawn_blocking(move || {
        let keys = MasterKeys::new(auth_protocol, auth_password.as_bytes())?;
        match privacy {
            Some((protocol, password)) => keys.with_privacy(protocol, password.as_bytes()),
            None => Ok(keys),
        }
    })
    .await
    .map_err(|_| bad("deriving its keys failed"))?
    .map_err(|e| bad(&crypto_problem(&e)))?;
    let config = config
        .with_master_keys(keys)
        .map_err(|e| bad(&crypto_problem(&e)))?;
    Ok(config.into())
}

/// "Network is unreachable" → "network is unreachable".
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why the library refused credentials, without them.
fn crypto_problem(e: &async_snmp::CryptoError) -> String {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("short") {
        "its passwords must be at least 8 characters".to_owned()
    } else {
        format!("its protocols cannot be used: {text}")
    }
}

fn auth_algorithm(p: SnmpAuthProtocol) -> AuthProtocol {
    match p {
        SnmpAuthProtocol::Md5 => AuthProtocol::Md5,
        SnmpAuthProtocol::Sha => AuthProtocol::Sha1,
        SnmpAuthProtocol::Sha224 => AuthProtocol::Sha224,
        SnmpAuthProtocol::Sha256 => AuthProtocol::Sha256,
        SnmpAuthProtocol::Sha384 => AuthProtocol::Sha384,
        SnmpAuthProtocol::Sha512 => AuthProtocol::Sha512,
    }
}

/// AES-192/256 with the key extension of RFC draft Blumenthal, as net-snmp's `AES192`/`AES256` use it.
fn priv_algorithm(p: SnmpPrivProtocol) -> PrivProtocol {
    match p {
        SnmpPrivProtocol::Des => PrivProtocol::Des,
        SnmpPrivProtocol::Aes => PrivProtocol::Aes128,
        SnmpPrivProtocol::Aes192 => PrivProtocol::Aes192Blumenthal,
        SnmpPrivProtocol::Aes256 => PrivProtocol::Aes256Blumenthal,
    }
}

/// What a library error means for the person who bound the outlet.
pub(crate) fn map_error(host: &str, table: Table, v3: bool, e: &SnmpError) -> PowerError {
    use async_snmp::v3::ReportStatus;
    let host = host.to_owned();
    let auth = |detail: &str| PowerError::AuthFailed {
        host: host.clone(),
        detail: detail.to_owned(),
    };
    let outlet = |detail: String| PowerError::Outlet {
        host: host.clone(),
        detail,
    };
    let hint = if v3 {
        "check the address and the SNMPv3 privacy password (an agent drops what it cannot decrypt without a word)"
    } else {
        "check the address and the community"
    };
    match e.exchange_source() {
        SnmpError::Timeout {
            elapsed, retries, ..
        } => PowerError::Timeout {
            host,
            waited: *elapsed,
            attempts: retries + 1,
            hint,
        },
        SnmpError::ConstructionTimeout { elapsed, .. } => PowerError::Timeout {
            host,
            waited: *elapsed,
            attempts: 1,
            hint: "check the host name and the resolver",
        },
        SnmpError::Network { source, .. } => PowerError::Unreachable {
            host,
            detail: lower_first(&source.to_string()),
            hint: super::UNREACHABLE_HINT,
        },
        SnmpError::Auth { .. } => auth(
            "the SNMPv3 answer did not authenticate: check the user, protocols and passwords in the binding",
        ),
        SnmpError::Report { status, .. } => match status.as_ref() {
            ReportStatus::WrongDigest { .. } => auth(
                "wrong SNMPv3 authentication password or protocol (usmStatsWrongDigests): check them in the binding",
            ),
            ReportStatus::UnknownUserName { .. } => auth(
                "the SNMPv3 user is unknown to the device (usmStatsUnknownUserNames): check the user name in the binding",
            ),
            ReportStatus::UnsupportedSecurityLevel { .. } => auth(
                "the SNMPv3 user does not work at this security level (usmStatsUnsupportedSecLevels): check which of auth and priv the binding sets",
            ),
            ReportStatus::DecryptionError { .. } => auth(
                "wrong SNMPv3 privacy password or protocol (usmStatsDecryptionErrors): check them in the binding",
            ),
            other => outlet(format!("it sent an SNMPv3 report: {other}")),
        },
        SnmpError::Snmp { status, .. } => match status {
            ErrorStatus::NoAccess | ErrorStatus::AuthorizationError => auth(&format!(
                "it does not let these credentials write {} ({status}): use a read-write community or a user with write access",
                table.object()
            )),
            ErrorStatus::NoSuchName
            | ErrorStatus::NotWritable
            | ErrorStatus::NoCreation
            | ErrorStatus::InconsistentName => outlet(format!(
                "{status} for {} ({}): the device has no such outlet or does not let it be switched; {}",
                table.object(),
                table.what(),
                table.index_hint()
            )),
            _ => outlet(format!("{status} for {} ({})", table.object(), table.what())),
        },
        SnmpError::Config(why) => PowerError::BadBinding(format!("SNMP settings: {why}")),
        SnmpError::Decode(_)
        | SnmpError::MalformedResponse { .. }
        | SnmpError::ResponseShape { .. } => outlet(format!("its answer is unreadable ({e})")),
        _ => outlet(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use outpost_cloud_link::control::codes;

    use super::*;

    #[test]
    fn oids_name_the_table_and_index() {
        let poe = Table::Poe { group: 1, port: 24 };
        assert_eq!(poe.oid().to_string(), "1.3.6.1.2.1.105.1.1.1.3.1.24");
        assert_eq!(poe.object(), "pethPsePortAdminEnable.1.24");
        let pdu = Table::ApcPdu { outlet: 8 };
        assert_eq!(pdu.oid().to_string(), "1.3.6.1.4.1.318.1.1.4.4.2.1.3.8");
        assert_eq!(pdu.object(), "sPDUOutletCtl.8");
    }

    #[test]
    fn values_read_as_states() {
        assert_eq!(state_of(&Value::Integer(1)), Ok(PowerState::On));
        assert_eq!(state_of(&Value::Integer(2)), Ok(PowerState::Off));
        assert_eq!(
            state_of(&Value::Integer(APC_REBOOT)),
            Ok(PowerState::Unknown)
        );
        assert!(state_of(&Value::NoSuchInstance).is_err());
        assert!(state_of(&Value::Null).is_err());
    }

    fn v3(
        auth: Option<SnmpAuthProtocol>,
        pw: Option<&str>,
        privacy: Option<SnmpPrivProtocol>,
        ppw: Option<&str>,
    ) -> SnmpAuth {
        SnmpAuth::V3 {
            user: "ops".into(),
            auth_protocol: auth,
            auth_password: pw.map(str::to_owned),
            priv_protocol: privacy,
            priv_password: ppw.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn credentials_are_checked_and_never_shown() {
        assert!(client_auth(&v3(None, None, None, None)).await.is_ok());
        assert!(client_auth(&v3(
            Some(SnmpAuthProtocol::Sha),
            Some("auth-secret-1"),
            Some(SnmpPrivProtocol::Aes),
            Some("priv-secret-1")
        ))
        .await
        .is_ok());
        // A short privacy password too.
        let err = client_auth(&v3(
            Some(SnmpAuthProtocol::Sha),
            Some("auth-secret-1"),
            Some(SnmpPrivProtocol::Aes),
            Some("short"),
        ))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        for bad in [
            v3(Some(SnmpAuthProtocol::Sha), None, None, None),
            v3(
                None,
                None,
                Some(SnmpPrivProtocol::Aes),
                Some("priv-secret-1"),
            ),
            v3(Some(SnmpAuthProtocol::Sha), Some("short"), None, None),
            v3(
                Some(SnmpAuthProtocol::Sha256),
                Some("auth-secret-1"),
                Some(SnmpPrivProtocol::Aes),
                None,
            ),
            SnmpAuth::V2c {
                community: String::new(),
            },
        ] {
            let err = client_auth(&bad).await.unwrap_err();
            assert_eq!(err.code(), codes::BAD_BINDING, "{bad:?}");
            let text = err.to_string();
            assert!(
                !text.contains("secret") && !text.contains("short\""),
                "{text}"
            );
        }
        let short = client_auth(&v3(Some(SnmpAuthProtocol::Sha), Some("short"), None, None))
            .await
            .unwrap_err();
        assert!(short.to_string().contains("at least 8"), "{short}");
    }

    #[test]
    fn library_errors_map_to_codes_with_advice() {
        let target: SocketAddr = "10.0.0.2:161".parse().unwrap();
        let poe = Table::Poe { group: 1, port: 9 };
        let timeout = SnmpError::Timeout {
            target,
            elapsed: Duration::from_secs(2),
            retries: 1,
        };
        let e = map_error("10.0.0.2:161", poe, false, &timeout);
        assert_eq!(e.code(), codes::TIMEOUT);
        assert_eq!(
            e.to_string(),
            "no answer from 10.0.0.2:161 within 2s (2 tries): check the address and the community"
        );
        let refused = SnmpError::Network {
            target,
            source: std::io::Error::from(std::io::ErrorKind::NetworkUnreachable),
        };
        assert_eq!(
            map_error("h", poe, false, &refused).code(),
            codes::UNREACHABLE
        );
        assert_eq!(
            map_error("h", poe, true, &SnmpError::Auth { target }).code(),
            codes::AUTH_FAILED
        );
        let report = |status| SnmpError::Report {
            target,
            status: Box::new(status),
            metadata: Box::default(),
        };
        for status in [
            async_snmp::v3::ReportStatus::WrongDigest { counter: 1 },
            async_snmp::v3::ReportStatus::UnknownUserName { counter: 1 },
            async_snmp::v3::ReportStatus::DecryptionError { counter: 1 },
        ] {
            assert_eq!(
                map_error("h", poe, true, &report(status)).code(),
                codes::AUTH_FAILED
            );
        }
        let snmp = |status| SnmpError::Snmp {
            target,
            status,
            index: 1,
            oid: None,
            metadata: Box::default(),
        };
        let e = map_error("h", poe, false, &snmp(ErrorStatus::NotWritable));
        assert_eq!(e.code(), codes::OUTLET_ERROR);
        assert!(e.to_string().contains("pethPsePortAdminEnable.1.9"), "{e}");
        assert!(e.to_string().contains("group and port"), "{e}");
        assert_eq!(
            map_error("h", poe, false, &snmp(ErrorStatus::NoAccess)).code(),
            codes::AUTH_FAILED
        );
        assert_eq!(
            map_error("h", poe, false, &snmp(ErrorStatus::GenErr)).code(),
            codes::OUTLET_ERROR
        );
    }
}
