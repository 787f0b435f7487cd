//! Signed agent releases: the manifest, its Ed25519 signature, the trusted release keys and every check the
//! agent makes before it installs a binary (pure: no network, no installing; later work downloads and swaps).
//!
//! # The files
//! - A release file (`*.release.json`) is JSON `{ "v": 1, "manifest": "<base64 of the manifest's exact JSON
//!   bytes>", "signatures": [{ "key": "<key id>", "sig": "<base64 Ed25519 signature over those bytes>" }] }`.
//!   The signature covers the exact bytes, so there is no canonicalisation question; the manifest is parsed
//!   only after a trusted key's signature over its bytes checks out.
//! - The manifest ([`Manifest`]): name (`outpost-agent`), version (`MAJOR.MINOR.PATCH[-pre]`, [`Version`]),
//!   target triple, size and SHA-256 of the binary, the rollback mark and optional notes.
//! - A private key file: ring's Ed25519 PKCS#8 document, PEM (`-----BEGIN PRIVATE KEY-----`) or raw DER;
//!   PKCS#8 v1 files (OpenSSL's `genpkey -algorithm ed25519`) are accepted too ([`SigningKey`]).
//! - A public key file (`*.pub`): one line `outpost-release-key-v1 <base64 of the 32-byte key>`
//!   ([`PublicKey`]). The agent trusts the keys installed with its package in [`DEFAULT_KEYS_DIR`]
//!   ([`TrustedKeys::load_dir`]), so a compromised portal cannot push code.
//! - A key id is the hex of the first 8 bytes of SHA-256 of the 32-byte public key ([`PublicKey::key_id`]).
//!
//! # The checks
//! [`verify`] (format, a valid signature by a trusted key, then the manifest's fields) and [`check_install`]
//! (target, version newer unless the release is marked as a rollback, size and SHA-256 of the binary, hashed
//! by streaming). Each refusal is its own [`ReleaseError`] saying what was wrong and what to do.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The only program releases are made for.
pub const AGENT_NAME: &str = "outpost-agent";
/// The release file format this code reads and writes (`"v"`).
pub const FORMAT_VERSION: u64 = 1;
/// The first word of a public key file's line.
pub const PUBLIC_KEY_TAG: &str = "outpost-release-key-v1";
/// Where the agent's package installs the public keys it trusts.
pub const DEFAULT_KEYS_DIR: &str = "/etc/outpost/release-keys";
/// The suffix of a release file next to its binary (`BINARY.release.json`).
pub const RELEASE_FILE_SUFFIX: &str = ".release.json";

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a release (or a key) is refused. Every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("malformed {what}: {detail}; the file is damaged or was not written by outpost-release: fetch or sign the release again")]
    Malformed { what: &'static str, detail: String },
    #[error("malformed manifest: field `{field}` {problem}; sign the release again with a correct value")]
    BadField {
        field: &'static str,
        problem: String,
    },
    #[error("bad base64 in `{field}` of the release file: {detail}; the file is damaged: fetch or sign the release again")]
    BadBase64 { field: String, detail: String },
    #[error("unsupported release file format v={found} (this agent reads v={FORMAT_VERSION}); update the agent by hand or sign the release with a matching outpost-release")]
    UnsupportedFormat { found: String },
    #[error("no release keys installed in {dir}: every release is refused; install the publisher's *.pub key file there (it comes with the agent's package)")]
    NoKeysInstalled { dir: PathBuf },
    #[error("the release is not signed by a trusted key: signed by [{seen}], trusted [{trusted}]; sign it with a key whose .pub file is installed on the agent, or install that key's .pub file", seen = .seen.join(", "), trusted = .trusted.join(", "))]
    NoTrustedSignature {
        seen: Vec<String>,
        trusted: Vec<String>,
    },
    #[error("the signature by trusted key {key} does not match the manifest: the release was changed after signing (tampered or corrupted); do not install it, fetch it again or sign it again")]
    SignatureInvalid { key: String },
    #[error("the release is for `{got}`, not `{AGENT_NAME}`; sign an outpost-agent binary")]
    WrongName { got: String },
    #[error("the release is built for target {got} but this agent runs on {expected}; publish a release signed for {expected}")]
    WrongTarget { expected: String, got: String },
    #[error("refusing a downgrade: running {running}, offered {offered}; publish a newer version, or sign this one with --rollback if going back is intended")]
    Downgrade { running: Version, offered: Version },
    #[error("version {version} is already running; nothing to install (publish a newer version)")]
    SameVersion { version: Version },
    #[error("invalid running version `{version}`: {problem}; the agent's own version must be MAJOR.MINOR.PATCH[-pre]")]
    InvalidRunningVersion { version: String, problem: String },
    #[error("the binary is {got} bytes but the manifest says {expected}; the download is incomplete or the wrong file: fetch it again")]
    SizeMismatch { expected: u64, got: u64 },
    #[error("the binary's SHA-256 is {got} but the manifest says {expected}; the binary is corrupted or not the one signed: fetch it again")]
    HashMismatch { expected: String, got: String },
    #[error("reading the binary failed: {0}; check the file and try again")]
    ReadBinary(std::io::Error),
    #[error("release key file {path}: {problem}")]
    KeyFile { path: PathBuf, problem: String },
    #[error("release key directory {dir} cannot be read: {error}; create it (mode 755) and install the publisher's *.pub key files there")]
    KeyDir { dir: PathBuf, error: std::io::Error },
    #[error("private key: {problem}")]
    PrivateKey { problem: String },
    #[error("generating a key failed: the system's random source is unavailable; try again")]
    KeyGeneration,
}

impl ReleaseError {
    /// A stable one-word name of the refusal, for scripts (`outpost-release verify --json`) and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReleaseError::Malformed { .. } => "malformed",
            ReleaseError::BadField { .. } => "bad-field",
            ReleaseError::BadBase64 { .. } => "bad-base64",
            ReleaseError::UnsupportedFormat { .. } => "unsupported-format",
            ReleaseError::NoKeysInstalled { .. } => "no-keys-installed",
            ReleaseError::NoTrustedSignature { .. } => "untrusted-key",
            ReleaseError::SignatureInvalid { .. } => "signature-invalid",
            ReleaseError::WrongName { .. } => "wrong-name",
            ReleaseError::WrongTarget { .. } => "wrong-target",
            ReleaseError::Downgrade { .. } => "downgrade",
            ReleaseError::SameVersion { .. } => "same-version",
            ReleaseError::InvalidRunningVersion { .. } => "invalid-running-version",
            ReleaseError::SizeMismatch { .. } => "size-mismatch",
            ReleaseError::HashMismatch { .. } => "hash-mismatch",
            ReleaseError::ReadBinary(_) => "read-binary",
            ReleaseError::KeyFile { .. } => "key-file",
            ReleaseError::KeyDir { .. } => "key-dir",
            ReleaseError::PrivateKey { .. } => "private-key",
            ReleaseError::KeyGeneration => "key-generation",
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Versions

/// `MAJOR.MINOR.PATCH` with an optional `-pre` suffix (dot-separated `[0-9A-Za-z-]` identifiers), ordered by
/// semver precedence: numbers compare numerically (`0.1.10 > 0.1.9`), a pre-release is lower than its release
/// (`1.0.0 > 1.0.0-rc1`), pre-release identifiers compare numerically when both are numbers, numbers are lower
/// than words, and a shorter list of identifiers is lower than a longer one it starts. No leading zeros in
/// numbers (so each version has one spelling and equality is exact) and no `+build` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The identifiers after `-`, empty for a release.
    pub pre: Vec<String>,
}

impl Version {
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

fn parse_number(part: &str, what: &str) -> Result<u64, String> {
    if part.is_empty() {
        return Err(format!("the {what} number is empty"));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the {what} number `{part}` is not made of digits"));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(format!("the {what} number `{part}` has a leading zero"));
    }
    part.parse()
        .map_err(|_| format!("the {what} number `{part}` is too large"))
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('+') {
            return Err("build metadata (`+...`) is not allowed".into());
        }
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (s, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(
                "expected MAJOR.MINOR.PATCH with an optional -pre suffix, e.g. 1.2.3 or 1.2.3-rc1"
                    .into(),
            );
        };
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if id.is_empty() {
                        return Err("a pre-release identifier is empty".to_string());
                    }
                    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        return Err(format!("the pre-release identifier `{id}` has characters other than [0-9A-Za-z-]"));
                    }
                    if id.bytes().all(|b| b.is_ascii_digit()) {
                        parse_number(id, "pre-release")?;
                    }
                    Ok(id.to_string())
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Version {
            major: parse_number(major, "major")?,
            minor: parse_number(minor, "minor")?,
            patch: parse_number(patch, "patch")?,
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = compare_identifier(a, b);
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------------------------------------------------
// The manifest and the release file

/// What a release says about its binary. Signed as the exact bytes of its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`AGENT_NAME`].
    pub name: String,
    /// `MAJOR.MINOR.PATCH[-pre]` ([`Manifest::version`] parses it).
    pub version: String,
    /// The Rust target triple the binary is built for, e.g. `aarch64-unknown-linux-musl`.
    pub target: String,
    /// The binary's size in bytes.
    pub size: u64,
    /// The binary's SHA-256, 64 lower-case hex digits.
    pub sha256: String,
    /// Marked as a rollback: the agent accepts it even when it is older than the running version.
    #[serde(default)]
    pub rollback: bool,
    /// Free text for people (what changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl Manifest {
    /// The manifest of `binary` (size and SHA-256 read by streaming), checked as [`Manifest::validate`] does.
    pub fn for_binary(
        binary: impl Read,
        version: &str,
        target: &str,
        rollback: bool,
        notes: Option<String>,
    ) -> Result<Manifest, ReleaseError> {
        let (size, sha256) = size_and_sha256(binary)?;
        let manifest = Manifest {
            name: AGENT_NAME.to_string(),
            version: version.to_string(),
            target: target.to_string(),
            size,
            sha256,
            rollback,
            notes,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// The version, parsed.
    pub fn version(&self) -> Result<Version, ReleaseError> {
        self.version
            .parse()
            .map_err(|problem| ReleaseError::BadField {
                field: "version",
                problem: format!("`{}` is not a version: {problem}", self.version),
            })
    }

    /// Checks every field: the name, the version's syntax, a plausible target triple, the hash's form.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        if self.name != AGENT_NAME {
            return Err(ReleaseError::WrongName {
                got: self.name.clone(),
            });
        }
        self.version()?;
        let target_ok = !self.target.is_empty()
            && self.target.len() <= 100
            && self.target.split('-').count() >= 2
            && self.target.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
            });
        if !target_ok {
            return Err(ReleaseError::BadField {
                field: "target",
                problem: format!(
                    "`{}` is not a target triple (like aarch64-unknown-linux-musl: [a-z0-9_.-], parts joined by -)",
                    self.target
                ),
            });
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReleaseError::BadField {
                field: "sha256",
                problem: format!("`{}` is not 64 lower-case hex digits", self.sha256),
            });
        }
        Ok(())
    }
}

/// One signature in a release file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signing key's id ([`PublicKey::key_id`]).
    pub key: String,
    /// Base64 of the 64-byte Ed25519 signature over the manifest's bytes.
    pub sig: String,
}

/// The release file: the manifest's exact bytes (base64) and the signatures over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRelease {
    /// [`FORMAT_VERSION`].
    pub v: u64,
    /// Base64 of the manifest's JSON bytes.
    pub manifest: String,
    pub signatures: Vec<SignatureEntry>,
}

impl SignedRelease {
    /// A release file for these manifest bytes, with no signature yet ([`SignedRelease::add_signature`]).
    pub fn unsigned(manifest_bytes: &[u8]) -> SignedRelease {
        SignedRelease {
            v: FORMAT_VERSION,
            manifest: B64.encode(manifest_bytes),
            signatures: Vec::new(),
        }
    }

    /// Signs the manifest's bytes with `key` and appends the signature (a release may carry several).
    pub fn add_signature(&mut self, key: &SigningKey) -> Result<(), ReleaseError> {
        let bytes = self.manifest_bytes()?;
        let sig = key.pair.sign(&bytes);
        self.signatures.push(SignatureEntry {
            key: key.key_id(),
            sig: B64.encode(sig.as_ref()),
        });
        Ok(())
    }

    /// The manifest's exact bytes (the signed ones).
    pub fn manifest_bytes(&self) -> Result<Vec<u8>, ReleaseError> {
        B64.decode(self.manifest.as_bytes())
            .map_err(|e| ReleaseError::BadBase64 {
                field: "manifest".into(),
                detail: e.to_string(),
            })
    }

    /// Parses a release file's structure (no signature check: that is [`verify`]). An unsupported `v` is
    /// refused before anything else, so a newer format is reported as such.
    pub fn from_json(bytes: &[u8]) -> Result<SignedRelease, ReleaseError> {
        let malformed = |detail: String| ReleaseError::Malformed {
            what: "release file",
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not JSON ({e})")))?;
        let serde_json::Value::Object(fields) = &value else {
            return Err(malformed("not a JSON object".into()));
        };
        match fields.get("v") {
            None => return Err(malformed("missing field `v`".into())),
            Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(ReleaseError::UnsupportedFormat {
                    found: v.to_string(),
                })
            }
        }
        serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
    }

    /// The release file's JSON (pretty, with a final newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a release file serializes");
        out.push(b'\n');
        out
    }
}

// ---------------------------------------------------------------------------------------------------------
// Keys

/// An Ed25519 release public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex of the first 8 bytes of SHA-256 of the 32-byte key.
    pub fn key_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        hex(&digest.as_ref()[..8])
    }

    /// The public key file's content: `outpost-release-key-v1 <base64>` and a newline.
    pub fn to_line(&self) -> String {
        format!("{PUBLIC_KEY_TAG} {}\n", B64.encode(self.0))
    }

    /// Parses a public key file's content (one line; a final newline is fine, nothing else is).
    pub fn parse_line(text: &str) -> Result<PublicKey, String> {
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\n') {
            return Err(format!(
                "expected exactly one line `{PUBLIC_KEY_TAG} <base64 of 32 bytes>`, found several"
            ));
        }
        let Some((tag, key)) = line.split_once(' ') else {
            return Err(format!(
                "expected one line `{PUBLIC_KEY_TAG} <base64 of 32 bytes>`"
            ));
        };
        if tag != PUBLIC_KEY_TAG {
            return Err(format!("starts with `{tag}`, expected `{PUBLIC_KEY_TAG}`"));
        }
        let bytes = B64
            .decode(key.as_bytes())
            .map_err(|e| format!("the key is not valid base64 ({e})"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("the key is {} bytes, an Ed25519 key is 32", b.len()))?;
        Ok(PublicKey(bytes))
    }

    /// Reads a public key file; errors name the file.
    pub fn load(path: &Path) -> Result<PublicKey, ReleaseError> {
        let key_file = |problem: String| ReleaseError::KeyFile {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = std::fs::read(path).map_err(|e| key_file(format!("cannot be read: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| key_file("is not text: not a release public key".into()))?;
        PublicKey::parse_line(&text).map_err(|problem| {
            key_file(format!(
                "{problem}; replace it with the .pub file outpost-release keygen wrote"
            ))
        })
    }
}

/// A private release key (only on the publisher's machine, never on agents).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

impl SigningKey {
    /// A new key: the key and its PKCS#8 v2 document (DER; [`pkcs8_to_pem`] for the file).
    pub fn generate() -> Result<(SigningKey, Vec<u8>), ReleaseError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| ReleaseError::KeyGeneration)?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
    }

    /// Reads an Ed25519 PKCS#8 document, PEM (`-----BEGIN PRIVATE KEY-----`) or raw DER; v1 (no public key,
    /// as OpenSSL writes) or v2 (as ring writes).
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, ReleaseError> {
        let private_key = |problem: String| ReleaseError::PrivateKey { problem };
        let trimmed = bytes.trim_ascii_start();
        let der = if trimmed.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| private_key("the PEM file is not text".into()))?;
            pem_to_der(text).map_err(private_key)?
        } else {
            bytes.to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| {
            private_key(format!(
                "not an Ed25519 PKCS#8 private key ({e}); use a key written by outpost-release keygen (PEM or DER)"
            ))
        })?;
        Ok(SigningKey { pair })
    }

    /// Reads a private key file; errors name the file.
    pub fn load(path: &Path) -> Result<SigningKey, ReleaseError> {
        let bytes = std::fs::read(path).map_err(|e| ReleaseError::KeyFile {
            path: path.to_path_buf(),
            problem: format!("cannot be read: {e}"),
        })?;
        SigningKey::from_pkcs8(&bytes).map_err(|e| match e {
            ReleaseError::PrivateKey { problem } => ReleaseError::KeyFile {
                path: path.to_path_buf(),
                problem,
            },
            other => other,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        let bytes: [u8; 32] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        PublicKey(bytes)
    }

    pub fn key_id(&self) -> String {
        self.public_key().key_id()
    }
}

fn pem_to_der(text: &str) -> Result<Vec<u8>, String> {
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    match lines.next() {
        Some(PEM_BEGIN) => {}
        Some(other) => {
            return Err(format!(
                "the PEM block is `{other}`, expected `{PEM_BEGIN}` (an unencrypted PKCS#8 key)"
            ))
        }
        None => return Err("the PEM file is empty".into()),
    }
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == PEM_END {
            return B64
                .decode(body.as_bytes())
                .map_err(|e| format!("the PEM body is not valid base64 ({e})"));
        }
        body.push_str(line);
    }
    Err(format!("the PEM file has no `{PEM_END}` line (truncated?)"))
}

/// A PKCS#8 document wrapped in PEM (`-----BEGIN PRIVATE KEY-----`, 64-column lines).
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let body = B64.encode(der);
    let mut out = String::from(PEM_BEGIN);
    out.push('\n');
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// The release public keys an agent trusts, by key id.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    dir: PathBuf,
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    /// Every `*.pub` file in `dir` (other files are ignored; a `*.pub` that is not a key is an error naming
    /// it). A missing or unreadable directory is an error; an empty one trusts nothing.
    pub fn load_dir(dir: &Path) -> Result<TrustedKeys, ReleaseError> {
        let key_dir = |error| ReleaseError::KeyDir {
            dir: dir.to_path_buf(),
            error,
        };
        let mut keys = BTreeMap::new();
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(key_dir)? {
            let path = entry.map_err(key_dir)?.path();
            if path.extension().is_some_and(|e| e == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let key = PublicKey::load(&path)?;
            keys.insert(key.key_id(), key);
        }
        Ok(TrustedKeys {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    /// Keys given directly; `dir` is only named in messages.
    pub fn from_keys(
        dir: impl Into<PathBuf>,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> TrustedKeys {
        TrustedKeys {
            dir: dir.into(),
            keys: keys.into_iter().map(|k| (k.key_id(), k)).collect(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Signing and the checks

/// Signs `manifest` (checked first: nothing is signed that an agent would refuse as malformed) with the
/// PKCS#8 private key `key_pkcs8` (PEM or DER).
pub fn sign(manifest: &Manifest, key_pkcs8: &[u8]) -> Result<SignedRelease, ReleaseError> {
    sign_with(manifest, &SigningKey::from_pkcs8(key_pkcs8)?)
}

/// [`sign`] with a key already read.
pub fn sign_with(manifest: &Manifest, key: &SigningKey) -> Result<SignedRelease, ReleaseError> {
    manifest.validate()?;
    let bytes = serde_json::to_vec(manifest).expect("a manifest serializes");
    let mut release = SignedRelease::unsigned(&bytes);
    release.add_signature(key)?;
    Ok(release)
}

/// A release that passed [`verify_release`]: its manifest and the trusted key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    pub key_id: String,
}

/// Checks a release file: its format, a valid signature by a trusted key over the manifest's bytes (one is
/// enough), then the manifest's fields. Returns the manifest.
pub fn verify(signed_bytes: &[u8], trusted: &TrustedKeys) -> Result<Manifest, ReleaseError> {
    verify_release(signed_bytes, trusted).map(|v| v.manifest)
}

/// [`verify`], also saying which trusted key signed.
pub fn verify_release(
    signed_bytes: &[u8],
    trusted: &TrustedKeys,
) -> Result<Verified, ReleaseError> {
    if trusted.is_empty() {
        return Err(ReleaseError::NoKeysInstalled {
            dir: trusted.dir.clone(),
        });
    }
    let release = SignedRelease::from_json(signed_bytes)?;
    let bytes = release.manifest_bytes()?;
    let mut invalid_by = None;
    let mut signed_by = None;
    for (i, entry) in release.signatures.iter().enumerate() {
        let Some(key) = trusted.keys.get(&entry.key) else {
            continue;
        };
        let sig = B64
            .decode(entry.sig.as_bytes())
            .map_err(|e| ReleaseError::BadBase64 {
                field: format!("signatures[{i}].sig"),
                detail: e.to_string(),
            })?;
        if UnparsedPublicKey::new(&signature::ED25519, key.as_bytes())
            .verify(&bytes, &sig)
            .is_ok()
        {
            signed_by = Some(entry.key.clone());
            break;
        }
        invalid_by.get_or_insert_with(|| entry.key.clone());
    }
    let Some(key_id) = signed_by else {
        return Err(match invalid_by {
            Some(key) => ReleaseError::SignatureInvalid { key },
            None => ReleaseError::NoTrustedSignature {
                seen: release.signatures.iter().map(|s| s.key.clone()).collect(),
                trusted: trusted.key_ids(),
            },
        });
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Malformed {
            what: "manifest",
            detail: e.to_string(),
        })?;
    manifest.validate()?;
    Ok(Verified { manifest, key_id })
}

/// The release must be built for the target the agent runs on.
pub fn check_target(manifest: &Manifest, running_target: &str) -> Result<(), ReleaseError> {
    if manifest.target != running_target {
        return Err(ReleaseError::WrongTarget {
            expected: running_target.to_string(),
            got: manifest.target.clone(),
        });
    }
    Ok(())
}

/// The release must be newer than the running version; one marked as a rollback only has to differ.
pub fn check_version(manifest: &Manifest, running_version: &str) -> Result<(), ReleaseError> {
    let running: Version =
        running_version
            .parse()
            .map_err(|problem| ReleaseError::InvalidRunningVersion {
                version: running_version.to_string(),
                problem,
            })?;
    let offered = manifest.version()?;
    match offered.cmp(&running) {
        Ordering::Equal => Err(ReleaseError::SameVersion { version: offered }),
        Ordering::Less if !manifest.rollback => Err(ReleaseError::Downgrade { running, offered }),
        _ => Ok(()),
    }
}

/// Size and lower-case hex SHA-256 of everything `reader` gives, read in 64 KiB pieces.
pub fn size_and_sha256(mut reader: impl Read) -> Result<(u64, String), ReleaseError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReleaseError::ReadBinary(e)),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(ctx.finish().as_ref())))
}

/// The binary (streamed) must have the manifest's size and SHA-256.
pub fn check_binary(manifest: &Manifest, binary: impl Read) -> Result<(), ReleaseError> {
    let (size, sha256) = size_and_sha256(binary)?;
    if size != manifest.size {
        return Err(ReleaseError::SizeMismatch {
            expected: manifest.size,
            got: size,
        });
    }
    if sha256 != manifest.sha256 {
        return Err(ReleaseError::HashMismatch {
            expected: manifest.sha256.clone(),
            got: sha256,
        });
    }
    Ok(())
}

/// Every check before installing a verified release: target, version (no downgrade unless marked as a
/// rollback), then the binary's size and SHA-256 (streamed: pass a `File`).
pub fn check_install(
    manifest: &Manifest,
    running_version: &str,
    running_target: &str,
    binary: impl Read,
) -> Result<(), ReleaseError> {
    check_target(manifest, running_target)?;
    check_version(manifest, running_version)?;
    check_binary(manifest, binary)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "aarch64-unknown-linux-musl";
    const BINARY: &[u8] = b"\x7fELF pretend agent binary";
    /// `openssl genpkey -algorithm ed25519`: a PKCS#8 v1 key (no public key inside).
    const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIClmh/Z830Ce64DnF54S9EE/u6LMvIeyysDZW6in5faq\n\
        -----END PRIVATE KEY-----\n";
    /// `openssl pkey -in KEY -pubout -outform DER | tail -c 32 | base64` of that key.
    const OPENSSL_PUB: &str = "KoXuDt4hx3HTKYw/draSxEMmFYAbrfXxhcsqkiMZ3nM=";

    fn manifest(version: &str) -> Manifest {
        Manifest::for_binary(BINARY, version, TARGET, false, None).unwrap()
    }

    fn key() -> (SigningKey, Vec<u8>) {
        SigningKey::generate().unwrap()
    }

    fn trusting(keys: &[&SigningKey]) -> TrustedKeys {
        TrustedKeys::from_keys(
            "/etc/outpost/release-keys",
            keys.iter().map(|k| k.public_key()),
        )
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn good_path_sign_verify_check_install() {
        let (key, der) = key();
        let mut m = manifest("0.2.0");
        m.notes = Some("faster sweeps".into());
        let signed = sign(&m, &der).unwrap();
        assert_eq!(signed.v, 1);
        assert_eq!(signed.signatures[0].key, key.key_id());
        let bytes = signed.to_json();
        let verified = verify_release(&bytes, &trusting(&[&key])).unwrap();
        assert_eq!(verified.manifest, m);
        assert_eq!(verified.key_id, key.key_id());
        check_install(&verified.manifest, "0.1.0", TARGET, BINARY).unwrap();
        // The exact bytes are signed: the manifest inside is the compact JSON of the fields.
        let inner: serde_json::Value =
            serde_json::from_slice(&signed.manifest_bytes().unwrap()).unwrap();
        assert_eq!(inner["name"], "outpost-agent");
        assert_eq!(inner["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(inner["size"], BINARY.len() as u64);
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        let (size, sha) = size_and_sha256(&b"abc"[..]).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Several read buffers' worth: streaming gives the same digest as hashing it whole.
        let big = vec![7u8; 200_000];
        let (size, sha) = size_and_sha256(&big[..]).unwrap();
        assert_eq!(size, 200_000);
        assert_eq!(
            sha,
            hex(ring::digest::digest(&ring::digest::SHA256, &big).as_ref())
        );
    }

    #[test]
    fn tampered_manifest_is_refused() {
        let (key, der) = key();
        let signed = sign(&manifest("0.2.0"), &der).unwrap();
        let mut bytes = signed.manifest_bytes().unwrap();
        let at = bytes.windows(5).position(|w| w == b"0.2.0").unwrap();
        bytes[at + 2] = b'9'; // "0.9.0"
        let mut tampered = SignedRelease::unsigned(&bytes);
        tampered.signatures = signed.signatures.clone();
        let err = verify(&tampered.to_json(), &trusting(&[&key])).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::SignatureInvalid { key: k } if *k == key.key_id()),
            "{err}"
        );
        assert!(err.to_string().contains("changed after signing"), "{err}");

        // Flipping a single bit anywhere is caught too.
        let mut bytes = signed.manifest_bytes().unwrap();
        bytes[10] ^= 1;
        let mut tampered = SignedRelease::unsigned(&bytes);
        tampered.signatures = signed.signatures;
        assert!(matches!(
            verify(&tampered.to_json(), &trusting(&[&key])),
            Err(ReleaseError::SignatureInvalid { .. })
        ));
    }

    #[test]
    fn a_changed_signature_is_refused() {
        let (key, der) = key();
        let mut signed = sign(&manifest("0.2.0"), &der).unwrap();
        let mut sig = B64.decode(&signed.signatures[0].sig).unwrap();
        sig[0] ^= 0x80;
        signed.signatures[0].sig = B64.encode(sig);
        assert!(matches!(
            verify(&signed.to_json(), &trusting(&[&key])),
            Err(ReleaseError::SignatureInvalid { .. })
        ));
    }

    #[test]
    fn untrusted_key_is_refused_naming_the_key_ids() {
        let (trusted_key, _) = key();
        let (other, der) = key();
        let signed = sign(&manifest("0.2.0"), &der).unwrap();
        let err = verify(&signed.to_json(), &trusting(&[&trusted_key])).unwrap_err();
        match &err {
            ReleaseError::NoTrustedSignature { seen, trusted } => {
                assert_eq!(seen, &vec![other.key_id()]);
                assert_eq!(trusted, &vec![trusted_key.key_id()]);
            }
            e => panic!("expected NoTrustedSignature, got {e}"),
        }
        assert!(err.to_string().contains(&other.key_id()), "{err}");

        // A signature claiming a trusted key's id but made with another key does not pass.
        let mut forged = signed.clone();
        forged.signatures[0].key = trusted_key.key_id();
        assert!(matches!(
            verify(&forged.to_json(), &trusting(&[&trusted_key])),
            Err(ReleaseError::SignatureInvalid { .. })
        ));

        // With no signatures at all.
        let mut bare = signed;
        bare.signatures.clear();
        assert!(matches!(
            verify(&bare.to_json(), &trusting(&[&trusted_key])),
            Err(ReleaseError::NoTrustedSignature { seen, .. }) if seen.is_empty()
        ));
    }

    #[test]
    fn one_trusted_signature_among_several_is_enough() {
        let (a, _) = key();
        let (b, _) = key();
        let mut signed = sign_with(&manifest("0.2.0"), &a).unwrap();
        signed.add_signature(&b).unwrap();
        let verified = verify_release(&signed.to_json(), &trusting(&[&b])).unwrap();
        assert_eq!(verified.key_id, b.key_id());
    }

    #[test]
    fn no_keys_installed_refuses_everything() {
        let (_, der) = key();
        let signed = sign(&manifest("0.2.0"), &der).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let trusted = TrustedKeys::load_dir(dir.path()).unwrap();
        let err = verify(&signed.to_json(), &trusted).unwrap_err();
        assert!(matches!(err, ReleaseError::NoKeysInstalled { .. }));
        assert!(
            err.to_string().contains(&format!(
                "no release keys installed in {}",
                dir.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn load_dir_reads_pub_files_and_refuses_bad_ones() {
        let (a, _) = key();
        let (b, _) = key();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pub"), a.public_key().to_line()).unwrap();
        std::fs::write(dir.path().join("b.pub"), b.public_key().to_line()).unwrap();
        std::fs::write(dir.path().join("README"), "not a key, ignored").unwrap();
        let trusted = TrustedKeys::load_dir(dir.path()).unwrap();
        let mut ids = vec![a.key_id(), b.key_id()];
        ids.sort();
        assert_eq!(trusted.key_ids(), ids);

        let bad = dir.path().join("bad.pub");
        for (content, expect) in [
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n",
                "expected `outpost-release-key-v1`",
            ),
            ("outpost-release-key-v1 !!!notbase64\n", "not valid base64"),
            ("outpost-release-key-v1 AAAA\n", "3 bytes"),
            ("outpost-release-key-v1\n", "expected one line"),
            ("", "expected one line"),
        ] {
            std::fs::write(&bad, content).unwrap();
            let err = TrustedKeys::load_dir(dir.path()).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ReleaseError::KeyFile { ref path, .. } if *path == bad),
                "{text}"
            );
            assert!(
                text.contains("bad.pub") && text.contains(expect),
                "{content:?}: {text}"
            );
        }
        std::fs::write(
            &bad,
            format!("{}{}", a.public_key().to_line(), b.public_key().to_line()),
        )
        .unwrap();
        assert!(TrustedKeys::load_dir(dir.path())
            .unwrap_err()
            .to_string()
            .contains("several"));
        std::fs::write(&bad, [0xffu8, 0xfe, 0x00]).unwrap();
        assert!(TrustedKeys::load_dir(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not text"));

        let missing = dir.path().join("missing");
        let err = TrustedKeys::load_dir(&missing).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyDir { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn public_key_line_round_trips() {
        let (k, _) = key();
        let line = k.public_key().to_line();
        assert!(line.starts_with("outpost-release-key-v1 ") && line.ends_with('\n'));
        assert_eq!(PublicKey::parse_line(&line).unwrap(), k.public_key());
        assert_eq!(
            PublicKey::parse_line(line.trim_end()).unwrap(),
            k.public_key()
        );
        assert_eq!(k.key_id().len(), 16);
    }

    #[test]
    fn pem_and_der_private_keys_are_the_same_key() {
        let (k, der) = key();
        let pem = pkcs8_to_pem(&der);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let from_pem = SigningKey::from_pkcs8(pem.as_bytes()).unwrap();
        let from_der = SigningKey::from_pkcs8(&der).unwrap();
        assert_eq!(from_pem.public_key(), k.public_key());
        assert_eq!(from_der.public_key(), k.public_key());
        // Signed with the PEM, verified with the key: works.
        let signed = sign(&manifest("0.2.0"), pem.as_bytes()).unwrap();
        verify(&signed.to_json(), &trusting(&[&k])).unwrap();
        // Windows line ends and surrounding blank lines are fine.
        let crlf = format!("\n{}", pem.replace('\n', "\r\n"));
        assert_eq!(
            SigningKey::from_pkcs8(crlf.as_bytes())
                .unwrap()
                .public_key(),
            k.public_key()
        );
    }

    #[test]
    fn openssl_pkcs8_v1_keys_are_accepted() {
        let k = SigningKey::from_pkcs8(OPENSSL_PEM.as_bytes()).unwrap();
        let expected = PublicKey::parse_line(&format!("{PUBLIC_KEY_TAG} {OPENSSL_PUB}")).unwrap();
        assert_eq!(k.public_key(), expected);
    }

    #[test]
    fn bad_private_keys_are_refused() {
        for (bytes, expect) in [
            (
                &b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"[..],
                "expected `-----BEGIN PRIVATE KEY-----`",
            ),
            (
                &b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n"[..],
                "no `-----END PRIVATE KEY-----`",
            ),
            (
                &b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n"[..],
                "not valid base64",
            ),
            (
                &b"\x30\x03\x02\x01\x00"[..],
                "not an Ed25519 PKCS#8 private key",
            ),
        ] {
            let err = SigningKey::from_pkcs8(bytes).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "hello").unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(
            matches!(err, ReleaseError::KeyFile { .. }) && err.to_string().contains("key.pem"),
            "{err}"
        );
    }

    #[test]
    fn wrong_target_is_refused() {
        let err = check_install(
            &manifest("0.2.0"),
            "0.1.0",
            "armv7-unknown-linux-gnueabihf",
            BINARY,
        )
        .unwrap_err();
        match &err {
            ReleaseError::WrongTarget { expected, got } => {
                assert_eq!(expected, "armv7-unknown-linux-gnueabihf");
                assert_eq!(got, TARGET);
            }
            e => panic!("expected WrongTarget, got {e}"),
        }
        assert!(err
            .to_string()
            .contains("built for target aarch64-unknown-linux-musl but this agent runs on armv7"));
    }

    #[test]
    fn wrong_hash_and_size_are_refused() {
        let m = manifest("0.2.0");
        let mut other = BINARY.to_vec();
        other[5] ^= 1; // same size, other content
        let err = check_install(&m, "0.1.0", TARGET, &other[..]).unwrap_err();
        match &err {
            ReleaseError::HashMismatch { expected, got } => {
                assert_eq!(expected, &m.sha256);
                assert_eq!(got, &size_and_sha256(&other[..]).unwrap().1);
            }
            e => panic!("expected HashMismatch, got {e}"),
        }
        let err = check_install(&m, "0.1.0", TARGET, &BINARY[..BINARY.len() - 1]).unwrap_err();
        assert!(
            matches!(err, ReleaseError::SizeMismatch { expected, got } if expected == BINARY.len() as u64 && got == expected - 1),
            "{err}"
        );
    }

    #[test]
    fn read_errors_are_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let err = check_binary(&manifest("0.2.0"), Failing).unwrap_err();
        assert!(
            matches!(err, ReleaseError::ReadBinary(_)) && err.to_string().contains("disk gone"),
            "{err}"
        );
    }

    #[test]
    fn downgrade_and_same_version_are_refused_unless_rollback() {
        let err = check_install(&manifest("0.1.9"), "0.1.10", TARGET, BINARY).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::Downgrade { running, offered } if *running == v("0.1.10") && *offered == v("0.1.9")),
            "{err}"
        );
        assert!(
            err.to_string().contains("running 0.1.10, offered 0.1.9"),
            "{err}"
        );
        assert!(err.to_string().contains("--rollback"), "{err}");
        let err = check_install(&manifest("1.0.0-rc1"), "1.0.0", TARGET, BINARY).unwrap_err();
        assert!(matches!(err, ReleaseError::Downgrade { .. }), "{err}");
        let err = check_install(&manifest("0.2.0"), "0.2.0", TARGET, BINARY).unwrap_err();
        assert!(matches!(err, ReleaseError::SameVersion { .. }), "{err}");

        let mut rollback = manifest("0.1.9");
        rollback.rollback = true;
        check_install(&rollback, "0.1.10", TARGET, BINARY).unwrap();
        // A rollback must still differ from what runs.
        let err = check_install(&rollback, "0.1.9", TARGET, BINARY).unwrap_err();
        assert!(matches!(err, ReleaseError::SameVersion { .. }), "{err}");
        // The newer release is fine either way.
        check_install(&manifest("1.0.0"), "1.0.0-rc1", TARGET, BINARY).unwrap();

        let err = check_install(&manifest("0.2.0"), "dev", TARGET, BINARY).unwrap_err();
        assert!(
            matches!(err, ReleaseError::InvalidRunningVersion { .. }),
            "{err}"
        );
    }

    #[test]
    fn versions_order_by_semver_precedence() {
        assert!(v("0.1.10") > v("0.1.9"));
        assert!(v("1.0.0") > v("1.0.0-rc1"));
        assert!(v("1.0.0-rc2") > v("1.0.0-rc1"));
        assert!(v("1.0.0-rc.10") > v("1.0.0-rc.9"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-1") < v("1.0.0-alpha"));
        assert!(v("1.0.0-beta") > v("1.0.0-alpha.beta"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert!(v("1.10.0") > v("1.9.5"));
        assert_eq!(v("1.2.3").cmp(&v("1.2.3")), Ordering::Equal);
        assert_eq!(v("1.2.3-rc.1").to_string(), "1.2.3-rc.1");
        assert_eq!(v("0.1.0").to_string(), "0.1.0");
        for bad in [
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "01.2.3",
            "1.2.3-",
            "1.2.3-rc..1",
            "1.2.3-r_c",
            "1.2.3+build",
            "",
            "1.2.3-01",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn malformed_files_are_refused_naming_what() {
        let (key, der) = key();
        let trusted = trusting(&[&key]);
        let good = sign(&manifest("0.2.0"), &der).unwrap();
        let as_value = || serde_json::to_value(&good).unwrap();

        let err = verify(b"not json", &trusted).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::Malformed {
                    what: "release file",
                    ..
                }
            ),
            "{err}"
        );
        let err = verify(b"[1]", &trusted).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");

        let mut value = as_value();
        value.as_object_mut().unwrap().remove("v");
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(err.to_string().contains("missing field `v`"), "{err}");

        let mut value = as_value();
        value["v"] = 2.into();
        value["something_new"] = true.into();
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::UnsupportedFormat { found } if found == "2"),
            "{err}"
        );

        let mut value = as_value();
        value["extra"] = 1.into();
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");

        let mut value = as_value();
        value.as_object_mut().unwrap().remove("signatures");
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(
            err.to_string().contains("missing field `signatures`"),
            "{err}"
        );

        let mut value = as_value();
        value["manifest"] = "***".into();
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::BadBase64 { field, .. } if field == "manifest"),
            "{err}"
        );

        let mut value = as_value();
        value["signatures"][0]["sig"] = "***".into();
        let err = verify(&serde_json::to_vec(&value).unwrap(), &trusted).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::BadBase64 { field, .. } if field == "signatures[0].sig"),
            "{err}"
        );
    }

    /// Signs arbitrary manifest bytes (as a careless or hostile publisher with a trusted key could) and
    /// verifies them: the manifest's own checks still apply after the signature.
    fn verify_signed_bytes(bytes: &[u8]) -> Result<Manifest, ReleaseError> {
        let (key, _) = key();
        let mut release = SignedRelease::unsigned(bytes);
        release.add_signature(&key).unwrap();
        verify(&release.to_json(), &trusting(&[&key]))
    }

    #[test]
    fn signed_but_invalid_manifests_are_refused() {
        let good = serde_json::to_value(manifest("0.2.0")).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut m = good.clone();
            m[field] = value;
            serde_json::to_vec(&m).unwrap()
        };
        let err = verify_signed_bytes(&with("name", "busybox".into())).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::WrongName { got } if got == "busybox"),
            "{err}"
        );
        let err = verify_signed_bytes(&with("version", "v2".into())).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::BadField {
                    field: "version",
                    ..
                }
            ),
            "{err}"
        );
        let err = verify_signed_bytes(&with("target", "".into())).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::BadField {
                    field: "target",
                    ..
                }
            ),
            "{err}"
        );
        let err = verify_signed_bytes(&with("sha256", "ABC".into())).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::BadField {
                    field: "sha256",
                    ..
                }
            ),
            "{err}"
        );
        let upper = good["sha256"].as_str().unwrap().to_uppercase();
        let err = verify_signed_bytes(&with("sha256", upper.into())).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::BadField {
                    field: "sha256",
                    ..
                }
            ),
            "{err}"
        );
        let err = verify_signed_bytes(&with("size", "12".into())).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::Malformed {
                    what: "manifest",
                    ..
                }
            ),
            "{err}"
        );
        let err = verify_signed_bytes(&with("surprise", true.into())).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `surprise`"),
            "{err}"
        );
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("sha256");
        let err = verify_signed_bytes(&serde_json::to_vec(&missing).unwrap()).unwrap_err();
        assert!(err.to_string().contains("missing field `sha256`"), "{err}");
        let err = verify_signed_bytes(b"\xff\xfe").unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::Malformed {
                    what: "manifest",
                    ..
                }
            ),
            "{err}"
        );
        verify_signed_bytes(&serde_json::to_vec(&good).unwrap()).unwrap();
    }

    #[test]
    fn sign_refuses_what_the_agent_would_refuse() {
        let (_, der) = key();
        let mut m = manifest("0.2.0");
        m.version = "2".into();
        assert!(matches!(
            sign(&m, &der),
            Err(ReleaseError::BadField {
                field: "version",
                ..
            })
        ));
        assert!(Manifest::for_binary(BINARY, "1.0.0", "x86_64 linux", false, None).is_err());
    }
}
