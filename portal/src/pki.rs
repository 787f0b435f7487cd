//! The portal's own small PKI: a CA (given to agents at activation) and one server certificate signed by it,
//! used by both the HTTPS API and the broker's TLS listener.
//!
//! Made on first run in the data directory (`ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`; keys
//! 0600), loaded afterwards. The server certificate is reissued with the same CA when it does not cover a
//! requested host name, no longer chains to the CA, or is close to expiry, so agents never need a new CA.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::paths::DataDir;

/// Names every server certificate covers, whatever the operator asks for.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The CA's subject; fixed, because signing a reissued server certificate rebuilds the issuer from it.
const CA_COMMON_NAME: &str = "Outpost portal CA";
const ORGANIZATION: &str = "Outpost";
const CA_VALID_DAYS: i64 = 365 * 30;
const SERVER_VALID_DAYS: i64 = 365 * 5;
/// A server certificate with less than this left is reissued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(60 * 24 * 3600);

/// The CA and server certificate (PEM), as loaded from or written to the data directory.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("server_cert_pem", &self.server_cert_pem)
            .field("server_key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid host name or IP address for the server certificate")]
    BadHostname(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} is not usable: {message}")]
    BadFile { path: String, message: String },
    #[error("{cert} exists but its key {key} is missing; restore the key, or remove both CA files to make a new CA (every agent would then need a new activation)")]
    MissingCaKey { cert: String, key: String },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PkiError {
    let context = context.into();
    move |source| PkiError::Io { context, source }
}

impl Pki {
    /// On first run creates a CA (ca.pem, ca-key.pem) and a server certificate signed by it (server.pem,
    /// server-key.pem; keys 0600) in the data dir; later runs load them. SANs: localhost, 127.0.0.1, ::1
    /// plus `hostnames` (DNS names or IPs); if a requested name is missing from the existing server cert,
    /// reissue the server cert with the same CA.
    pub fn load_or_create(data: &DataDir, hostnames: &[String]) -> Result<Pki, PkiError> {
        let names = server_names(hostnames)?;
        ensure_private_dir(data.root())?;

        let (ca_cert_pem, ca_key) = load_or_create_ca(data)?;

        let existing = match (
            read_optional(&data.server_cert())?,
            read_optional(&data.server_key())?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        if let Some((cert, key)) = existing {
            match server_cert_problem(&ca_cert_pem, &cert, &key, &names) {
                None => {
                    return Ok(Pki {
                        ca_cert_pem,
                        server_cert_pem: cert,
                        server_key_pem: key,
                    })
                }
                Some(why) => {
                    tracing::info!(reason = %why, "reissuing the server certificate with the existing CA")
                }
            }
        }

        let (server_cert_pem, server_key_pem) = issue_server_cert(&ca_key, &names)?;
        if let Some(why) =
            server_cert_problem(&ca_cert_pem, &server_cert_pem, &server_key_pem, &names)
        {
            return Err(PkiError::BadFile {
                path: data.ca_cert().display().to_string(),
                message: format!(
                    "a freshly issued server certificate does not verify against it ({why})"
                ),
            });
        }
        write_file(&data.server_key(), server_key_pem.as_bytes(), 0o600)?;
        write_file(&data.server_cert(), server_cert_pem.as_bytes(), 0o644)?;
        tracing::info!(names = ?names, "issued the server certificate");
        Ok(Pki {
            ca_cert_pem,
            server_cert_pem,
            server_key_pem,
        })
    }

    /// Whether the server certificate is valid for `name` (a DNS name or an IP address).
    pub fn covers(&self, name: &str) -> bool {
        server_cert_problem_at(
            &self.ca_cert_pem,
            &self.server_cert_pem,
            &self.server_key_pem,
            &[name.to_owned()],
            Duration::ZERO,
        )
        .is_none()
    }

    /// rustls ServerConfig (ring provider, TLS 1.2+1.3) with the server cert+key, for the HTTPS API.
    pub fn server_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let chain = parse_certs(&self.server_cert_pem, "server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| {
            PkiError::BadFile {
                path: "server key".into(),
                message: e.to_string(),
            }
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The SANs of the server certificate: the defaults plus `hostnames`, deduplicated, each checked.
fn server_names(hostnames: &[String]) -> Result<Vec<String>, PkiError> {
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    for raw in hostnames {
        let name = raw
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let valid = !name.is_empty() && name.is_ascii() && !name.contains(['/', ':'])
            || name.parse::<std::net::IpAddr>().is_ok();
        if !valid || ServerName::try_from(name.clone()).is_err() {
            return Err(PkiError::BadHostname(raw.clone()));
        }
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!(
                "cannot create the data directory {}",
                dir.display()
            )))?;
        // The mode passed above is filtered by the umask; make sure.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot restrict {}", dir.display())))?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("cannot read {}", path.display()))(e)),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with `mode`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(format!("cannot create {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("cannot write {}", tmp.display())))?;
    drop(f);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("cannot set the mode of {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("cannot replace {}", path.display())))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Duration::days(1);
    let end = today + chrono::Duration::days(days);
    use chrono::Datelike;
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to trim
    SerialNumber::from_slice(&bytes)
}

/// Loads the CA, or creates it when neither file exists. Returns the CA certificate PEM and a
/// [`rcgen::Certificate`]-ready issuer (key pair; the issuer certificate is rebuilt from [`ca_params`]).
fn load_or_create_ca(data: &DataDir) -> Result<(String, KeyPair), PkiError> {
    let cert_path = data.ca_cert();
    let key_path = data.ca_key();
    let cert = read_optional(&cert_path)?;
    let key = read_optional(&key_path)?;
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let key = KeyPair::from_pem(&key).map_err(|e| PkiError::BadFile {
                path: key_path.display().to_string(),
                message: e.to_string(),
            })?;
            parse_certs(&cert, &cert_path.display().to_string())?;
            Ok((cert, key))
        }
        (Some(_), None) => Err(PkiError::MissingCaKey {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        }),
        (None, key) => {
            // A key without its certificate (a crash between the two writes): keep the key.
            let key = match key {
                Some(pem) => KeyPair::from_pem(&pem).map_err(|e| PkiError::BadFile {
                    path: key_path.display().to_string(),
                    message: e.to_string(),
                })?,
                None => {
                    let key = KeyPair::generate()?;
                    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                    key
                }
            };
            let mut params = ca_params();
            set_validity(&mut params, CA_VALID_DAYS);
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key)?;
            let pem = cert.pem();
            write_file(&cert_path, pem.as_bytes(), 0o644)?;
            tracing::info!(path = %cert_path.display(), "created the portal CA");
            Ok((pem, key))
        }
    }
}

fn issue_server_cert(ca_key: &KeyPair, names: &[String]) -> Result<(String, String), PkiError> {
    // The issuer: same subject, key and key-id method as the CA on disk, so the new certificate's issuer
    // name and authority key identifier match it.
    let issuer = ca_params().self_signed(ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.get(3).map(String::as_str).unwrap_or("localhost"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, SERVER_VALID_DAYS);
    let cert = params.signed_by(&key, &issuer, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadFile {
            path: what.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadFile {
            path: what.to_owned(),
            message: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

/// Why the server certificate must be reissued, or `None` if it is fine: it must parse, chain to the CA,
/// be valid for every name for at least [`RENEW_BEFORE`], and its key must parse.
fn server_cert_problem(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    names: &[String],
) -> Option<String> {
    server_cert_problem_at(ca_pem, cert_pem, key_pem, names, RENEW_BEFORE)
}

fn server_cert_problem_at(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    names: &[String],
    ahead: Duration,
) -> Option<String> {
    if PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).is_err() {
        return Some("the server key does not parse".into());
    }
    let certs = match parse_certs(cert_pem, "server certificate") {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(ca_pem, "CA").ok()? {
        if roots.add(ca).is_err() {
            return Some("the CA certificate is unusable".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider,
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => return Some(e.to_string()),
    };
    let check_at = UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            + ahead,
    );
    for name in names {
        let server_name = ServerName::try_from(name.clone()).ok()?;
        if let Err(e) =
            verifier.verify_server_cert(&certs[0], &certs[1..], &server_name, &[], check_at)
        {
            return Some(format!(
                "not valid for {name} (within {} days): {e}",
                ahead.as_secs() / 86400
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        (dir, data)
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_run_creates_private_files_and_later_runs_load_them() {
        let (_t, data) = tmp();
        let a = Pki::load_or_create(&data, &[]).unwrap();
        assert_eq!(mode(data.root()), 0o700);
        assert_eq!(mode(&data.ca_key()), 0o600);
        assert_eq!(mode(&data.server_key()), 0o600);
        let b = Pki::load_or_create(&data, &[]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        assert!(server_cert_problem(
            &a.ca_cert_pem,
            &a.server_cert_pem,
            &a.server_key_pem,
            &server_names(&[]).unwrap()
        )
        .is_none());
        a.server_tls_config().unwrap();
    }

    #[test]
    fn a_new_name_reissues_the_server_cert_with_the_same_ca() {
        let (_t, data) = tmp();
        let a = Pki::load_or_create(&data, &[]).unwrap();
        let names = vec!["portal.example".to_string(), "192.0.2.7".to_string()];
        let b = Pki::load_or_create(&data, &names).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.server_cert_pem, b.server_cert_pem);
        let all = server_names(&names).unwrap();
        assert!(
            server_cert_problem(&b.ca_cert_pem, &b.server_cert_pem, &b.server_key_pem, &all)
                .is_none()
        );
        assert!(server_cert_problem(
            &b.ca_cert_pem,
            &b.server_cert_pem,
            &b.server_key_pem,
            &["other.example".into()]
        )
        .is_some());
        // Asking for a subset keeps the certificate.
        let c = Pki::load_or_create(&data, &names[..1]).unwrap();
        assert_eq!(b.server_cert_pem, c.server_cert_pem);
    }

    #[test]
    fn covers_names_the_certificate_is_valid_for() {
        let (_t, data) = tmp();
        let p = Pki::load_or_create(&data, &["portal.example".into()]).unwrap();
        for name in ["localhost", "127.0.0.1", "::1", "portal.example"] {
            assert!(p.covers(name), "{name}");
        }
        assert!(!p.covers("192.0.2.1"));
        assert!(!p.covers("other.example"));
    }

    #[test]
    fn a_certificate_from_another_ca_is_replaced() {
        let (_t, data) = tmp();
        let (_t2, other) = tmp();
        Pki::load_or_create(&data, &[]).unwrap();
        let foreign = Pki::load_or_create(&other, &[]).unwrap();
        fs::write(data.server_cert(), &foreign.server_cert_pem).unwrap();
        let p = Pki::load_or_create(&data, &[]).unwrap();
        assert_ne!(p.server_cert_pem, foreign.server_cert_pem);
    }

    #[test]
    fn a_missing_ca_key_is_an_error_not_a_new_ca() {
        let (_t, data) = tmp();
        Pki::load_or_create(&data, &[]).unwrap();
        fs::remove_file(data.ca_key()).unwrap();
        let err = Pki::load_or_create(&data, &[]).unwrap_err();
        assert!(matches!(err, PkiError::MissingCaKey { .. }), "{err}");
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(
            server_names(&["Portal.Example".into(), "localhost".into()])
                .unwrap()
                .len(),
            4
        );
        assert!(server_names(&["[2001:db8::1]".into()]).is_ok());
        for bad in ["", "a b", "host:443", "http://x", "é.example"] {
            assert!(server_names(&[bad.into()]).is_err(), "{bad:?} accepted");
        }
    }
}
