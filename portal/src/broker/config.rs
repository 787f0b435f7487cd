//! What Mosquitto is told: its configuration file (rewritten at every start) and the initial
//! dynamic-security JSON with the portal's own admin account.
//!
//! The broker has exactly one listener, MQTT over TLS (no plaintext listener at all), no anonymous access, and
//! the dynamic-security plugin as its only authority: each agent is one client with one role
//! (see [`super::dynsec`]). `dynamic-security.json` is created once and never overwritten afterwards (the
//! plugin itself keeps the agents' clients in it); only the portal's own admin entry is repaired if needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{io_err, BrokerError};
use crate::paths::DataDir;

/// The broker username of the portal's own sessions (admin and link).
pub const ADMIN_USERNAME: &str = "outpost-portal";
/// The dynamic-security role of the portal's own sessions.
pub const ADMIN_ROLE: &str = "outpost-portal";
/// PBKDF2 rounds for the hashes this module writes (what `mosquitto_ctrl dynsec init` uses).
pub const DYNSEC_ITERATIONS: u32 = 101;
/// How often Mosquitto writes its in-memory state (persistent sessions, queued messages) to disk.
pub const AUTOSAVE_INTERVAL_S: u32 = 5;

/// The portal's broker credentials, as saved in [`DataDir::broker_admin_secret`] (0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl AdminCredentials {
    fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            username: ADMIN_USERNAME.to_owned(),
            password: hex::encode(bytes),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Configuration text
// ---------------------------------------------------------------------------------------------------------

/// Everything `mosquitto.conf` depends on.
#[derive(Debug, Clone)]
pub struct ConfigInput {
    pub listen: SocketAddr,
    /// The user the portal runs as: Mosquitto started as root would otherwise switch to `mosquitto` and
    /// could not read the 0600 key.
    pub user: Option<String>,
    pub plugin: PathBuf,
    pub broker_dir: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    pub dynsec_json: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ConfigInput {
    pub fn new(data: &DataDir, listen: SocketAddr, plugin: PathBuf, user: Option<String>) -> Self {
        Self {
            listen,
            user,
            plugin,
            broker_dir: data.broker_dir(),
            pid_file: data.broker_pid(),
            log_file: data.broker_log(),
            dynsec_json: data.dynsec_json(),
            cert_file: data.server_cert(),
            key_file: data.server_key(),
        }
    }
}

/// A path as a Mosquitto config value; Mosquitto's parser has no quoting, so line breaks are refused.
fn conf_path(p: &Path) -> Result<String, BrokerError> {
    let s = p.to_str().ok_or_else(|| {
        BrokerError::Setup(format!(
            "{} is not valid UTF-8; choose another data directory",
            p.display()
        ))
    })?;
    if s.contains(['\n', '\r', '#']) || s.starts_with(' ') || s.ends_with(' ') {
        return Err(BrokerError::Setup(format!(
            "the path {s:?} cannot be written into mosquitto.conf; choose another data directory"
        )));
    }
    Ok(s.to_owned())
}

/// The text of `mosquitto.conf`.
pub fn render_config(c: &ConfigInput) -> Result<String, BrokerError> {
    if c.listen.port() == 0 {
        return Err(BrokerError::Setup(
            "the MQTT listen address needs a port (e.g. 0.0.0.0:8883)".into(),
        ));
    }
    let mut persistence_dir = conf_path(&c.broker_dir)?;
    if !persistence_dir.ends_with('/') {
        persistence_dir.push('/');
    }
    let mut out = String::new();
    out.push_str(
        "# Written by outpost-portal at every start: edits here are lost.\n\
         # The agents' broker accounts live in dynamic-security.json, managed by the portal.\n\n",
    );
    out.push_str("per_listener_settings false\n");
    out.push_str("allow_anonymous false\n");
    out.push_str("set_tcp_nodelay true\n");
    if let Some(user) = &c.user {
        if user.is_empty() || user.contains(char::is_whitespace) {
            return Err(BrokerError::Setup(format!(
                "unusable user name {user:?} for the broker"
            )));
        }
        out.push_str(&format!("user {user}\n"));
    }
    out.push_str(&format!("pid_file {}\n", conf_path(&c.pid_file)?));
    out.push('\n');
    out.push_str("persistence true\n");
    out.push_str(&format!("persistence_location {persistence_dir}\n"));
    out.push_str("persistence_file mosquitto.db\n");
    out.push_str(&format!("autosave_interval {AUTOSAVE_INTERVAL_S}\n"));
    out.push_str("persistent_client_expiration 30d\n");
    out.push_str("max_queued_messages 10000\n");
    out.push('\n');
    out.push_str(&format!("log_dest file {}\n", conf_path(&c.log_file)?));
    for t in ["error", "warning", "notice", "information"] {
        out.push_str(&format!("log_type {t}\n"));
    }
    out.push_str("log_timestamp true\n");
    out.push_str("log_timestamp_format %Y-%m-%dT%H:%M:%S\n");
    out.push_str("connection_messages true\n");
    out.push('\n');
    out.push_str(&format!("plugin {}\n", conf_path(&c.plugin)?));
    out.push_str(&format!(
        "plugin_opt_config_file {}\n",
        conf_path(&c.dynsec_json)?
    ));
    out.push('\n');
    out.push_str("# The only listener: MQTT over TLS.\n");
    out.push_str(&format!("listener {} {}\n", c.listen.port(), c.listen.ip()));
    out.push_str("protocol mqtt\n");
    out.push_str(&format!("certfile {}\n", conf_path(&c.cert_file)?));
    out.push_str(&format!("keyfile {}\n", conf_path(&c.key_file)?));
    // No `tls_version` line on purpose: in Mosquitto 2.0 `tls_version tlsv1.2` means "only 1.2", while
    // the default accepts TLS 1.2 and 1.3 (and nothing older).
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Dynamic-security JSON
// ---------------------------------------------------------------------------------------------------------

/// A dynamic-security password entry: PBKDF2-HMAC-SHA512 over the password with a random 12-byte salt,
/// 64-byte hash; salt and hash base64 (standard alphabet), as Mosquitto 2.0 stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub password: String,
    pub salt: String,
    pub iterations: u32,
}

/// Hashes `password` with `salt` the way the dynamic-security plugin checks it.
pub fn dynsec_password_hash(password: &str, salt: &[u8], iterations: u32) -> PasswordHash {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    let b64 = base64::engine::general_purpose::STANDARD;
    PasswordHash {
        password: b64.encode(hash),
        salt: b64.encode(salt),
        iterations,
    }
}

fn new_password_hash(password: &str) -> PasswordHash {
    let salt: [u8; 12] = rand::random();
    dynsec_password_hash(password, &salt, DYNSEC_ITERATIONS)
}

/// Does the stored entry of `client` match `password`?
fn client_password_matches(client: &Value, password: &str) -> bool {
    let (Some(hash), Some(salt), Some(iterations)) = (
        client.get("password").and_then(Value::as_str),
        client.get("salt").and_then(Value::as_str),
        client.get("iterations").and_then(Value::as_u64),
    ) else {
        return false;
    };
    let Ok(salt) = base64::engine::general_purpose::STANDARD.decode(salt) else {
        return false;
    };
    dynsec_password_hash(password, &salt, iterations as u32).password == hash
}

fn acl(acltype: &str, topic: &str) -> Value {
    json!({ "acltype": acltype, "topic": topic, "priority": 0, "allow": true })
}

/// The portal's role: administer the dynamic-security plugin, receive every agent's messages, send commands.
pub fn admin_role() -> Value {
    const CONTROL: &str = "$CONTROL/dynamic-security/#";
    let all_up = outpost_cloud_link::topics::ALL_UP;
    const ALL_DOWN: &str = "agents/+/down/#";
    json!({
        "rolename": ADMIN_ROLE,
        "textdescription": "The Outpost portal: broker administration, agent messages in, commands out",
        "acls": [
            acl("publishClientSend", CONTROL),
            acl("publishClientReceive", CONTROL),
            acl("subscribeLiteral", CONTROL),
            acl("subscribePattern", CONTROL),
            acl("unsubscribePattern", CONTROL),
            acl("publishClientReceive", all_up),
            acl("subscribeLiteral", all_up),
            acl("subscribePattern", all_up),
            acl("unsubscribePattern", all_up),
            acl("publishClientSend", ALL_DOWN),
        ]
    })
}

fn admin_client(creds: &AdminCredentials) -> Value {
    let hash = new_password_hash(&creds.password);
    json!({
        "username": creds.username,
        "textname": "The Outpost portal",
        "password": hash.password,
        "salt": hash.salt,
        "iterations": hash.iterations,
        "roles": [{ "rolename": ADMIN_ROLE }]
    })
}

/// The dynamic-security JSON of a new broker: only the portal's admin client and role, and every default
/// access denied (an agent may do only what its own role allows).
pub fn initial_dynsec(creds: &AdminCredentials) -> Value {
    json!({
        "defaultACLAccess": {
            "publishClientSend": false,
            "publishClientReceive": false,
            "subscribe": false,
            "unsubscribe": false
        },
        "clients": [admin_client(creds)],
        "groups": [],
        "roles": [admin_role()]
    })
}

/// Makes sure `doc` lets the portal in with `creds`: the admin client exists with this password and holds
/// the admin role, and the role exists. Everything else (the agents) is left alone. Returns whether
/// anything changed.
pub fn repair_admin_entry(doc: &mut Value, creds: &AdminCredentials) -> Result<bool, String> {
    let obj = doc
        .as_object_mut()
        .ok_or("the top level is not a JSON object")?;
    let mut changed = false;

    let roles = obj.entry("roles").or_insert_with(|| json!([]));
    let roles = roles.as_array_mut().ok_or("\"roles\" is not a list")?;
    if !roles
        .iter()
        .any(|r| r.get("rolename").and_then(Value::as_str) == Some(ADMIN_ROLE))
    {
        roles.push(admin_role());
        changed = true;
    }

    let clients = obj.entry("clients").or_insert_with(|| json!([]));
    let clients = clients.as_array_mut().ok_or("\"clients\" is not a list")?;
    match clients
        .iter_mut()
        .find(|c| c.get("username").and_then(Value::as_str) == Some(creds.username.as_str()))
    {
        None => {
            clients.push(admin_client(creds));
            changed = true;
        }
        Some(client) => {
            if !client_password_matches(client, &creds.password) {
                let hash = new_password_hash(&creds.password);
                client["password"] = json!(hash.password);
                client["salt"] = json!(hash.salt);
                client["iterations"] = json!(hash.iterations);
                changed = true;
            }
            if client.get("disabled").and_then(Value::as_bool) == Some(true) {
                client["disabled"] = json!(false);
                changed = true;
            }
            let has_role = client
                .get("roles")
                .and_then(Value::as_array)
                .is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r.get("rolename").and_then(Value::as_str) == Some(ADMIN_ROLE))
                });
            if !has_role {
                let roles = client
                    .as_object_mut()
                    .ok_or("a client is not a JSON object")?
                    .entry("roles")
                    .or_insert_with(|| json!([]));
                roles
                    .as_array_mut()
                    .ok_or("a client's \"roles\" is not a list")?
                    .push(json!({ "rolename": ADMIN_ROLE }));
                changed = true;
            }
        }
    }
    Ok(changed)
}

// ---------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BrokerError> {
    crate::pki::write_file(path, bytes, mode).map_err(|e| match e {
        crate::pki::PkiError::Io { context, source } => BrokerError::Io { context, source },
        other => BrokerError::Setup(other.to_string()),
    })
}

fn ensure_dir(dir: &Path) -> Result<(), BrokerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot restrict {}", dir.display())))?;
    }
    Ok(())
}

/// The user this process runs as, for Mosquitto's `user` option.
pub fn current_user() -> Option<String> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => Some(u.name),
        _ if uid.is_root() => Some("root".into()),
        _ => None,
    }
}

/// Loads the admin credentials, or makes new ones (saved 0600).
fn load_or_create_admin(data: &DataDir) -> Result<(AdminCredentials, bool), BrokerError> {
    let path = data.broker_admin_secret();
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<AdminCredentials>(&bytes) {
            Ok(c) if !c.username.is_empty() && !c.password.is_empty() => return Ok((c, false)),
            _ => {
                tracing::warn!(path = %path.display(), "the portal's broker credentials are unreadable; making new ones")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    }
    let creds = AdminCredentials::generate();
    let bytes = serde_json::to_vec_pretty(&creds).unwrap_or_default();
    write_file(&path, &bytes, 0o600)?;
    Ok((creds, true))
}

/// Writes `mosquitto.conf` (every time), creates `dynamic-security.json` with the portal's admin client if it
/// is missing (never overwriting an existing one; only the admin entry is repaired), and returns the
/// portal's broker credentials.
pub fn prepare(
    data: &DataDir,
    listen: SocketAddr,
    plugin: PathBuf,
) -> Result<AdminCredentials, BrokerError> {
    ensure_dir(data.root())?;
    ensure_dir(&data.broker_dir())?;
    let conf = render_config(&ConfigInput::new(data, listen, plugin, current_user()))?;
    write_file(&data.broker_config(), conf.as_bytes(), 0o600)?;

    let (creds, _new) = load_or_create_admin(data)?;
    let dynsec_path = data.dynsec_json();
    match std::fs::read(&dynsec_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let doc = initial_dynsec(&creds);
            let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            write_file(&dynsec_path, &bytes, 0o600)?;
            tracing::info!(path = %dynsec_path.display(), "created the broker's dynamic-security configuration");
        }
        Err(e) => return Err(io_err(format!("cannot read {}", dynsec_path.display()))(e)),
        Ok(bytes) => {
            let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
                BrokerError::Setup(format!(
                    "{} is not valid JSON ({e}); it holds the agents' broker accounts, so it is not replaced: \
                     restore it from a backup",
                    dynsec_path.display()
                ))
            })?;
            let changed = repair_admin_entry(&mut doc, &creds).map_err(|e| {
                BrokerError::Setup(format!("{} is malformed: {e}", dynsec_path.display()))
            })?;
            if changed {
                let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
                write_file(&dynsec_path, &bytes, 0o600)?;
                tracing::warn!(path = %dynsec_path.display(), "repaired the portal's own account in the broker configuration");
            }
        }
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ConfigInput {
        let data = DataDir::new("/var/lib/outpost-portal");
        ConfigInput::new(
            &data,
            "0.0.0.0:8883".parse().unwrap(),
            PathBuf::from("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
            Some("outpost".into()),
        )
    }

    #[test]
    fn config_has_only_a_tls_listener_and_the_required_settings() {
        let text = render_config(&input()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        let has = |l: &str| lines.contains(&l);
        assert!(has("listener 8883 0.0.0.0"));
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("listener ")).count(),
            1
        );
        assert_eq!(lines.iter().filter(|l| l.starts_with("port ")).count(), 0);
        assert!(has("certfile /var/lib/outpost-portal/server.pem"));
        assert!(has("keyfile /var/lib/outpost-portal/server-key.pem"));
        assert!(has("allow_anonymous false"));
        assert!(has("set_tcp_nodelay true"));
        assert!(has(
            "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
        ));
        assert!(has(
            "plugin_opt_config_file /var/lib/outpost-portal/broker/dynamic-security.json"
        ));
        assert!(has("persistence true"));
        assert!(has("persistence_location /var/lib/outpost-portal/broker/"));
        assert!(has("autosave_interval 5"));
        assert!(has("pid_file /var/lib/outpost-portal/broker/mosquitto.pid"));
        assert!(has(
            "log_dest file /var/lib/outpost-portal/broker/mosquitto.log"
        ));
        assert!(has("user outpost"));
        assert!(!text.contains("acl_file"));
        assert!(!text.contains("tls_version"));
        assert!(!text.contains("password_file"));
    }

    #[test]
    fn config_listens_where_asked() {
        let mut i = input();
        i.listen = "[::1]:18883".parse().unwrap();
        assert!(render_config(&i)
            .unwrap()
            .contains("\nlistener 18883 ::1\n"));
        i.listen = "127.0.0.1:0".parse().unwrap();
        assert!(render_config(&i).is_err());
        i.listen = "127.0.0.1:1".parse().unwrap();
        i.broker_dir = PathBuf::from("/tmp/a\nlistener 1883");
        assert!(render_config(&i).is_err());
    }

    #[test]
    fn password_hash_matches_mosquitto_ctrl() {
        // Made by `mosquitto_ctrl dynsec init d.json admin secretpw` (Mosquitto 2.0.11).
        let salt = base64::engine::general_purpose::STANDARD
            .decode("4yIewdAwk2ZS/Cy7")
            .unwrap();
        let h = dynsec_password_hash("secretpw", &salt, 101);
        assert_eq!(h.salt, "4yIewdAwk2ZS/Cy7");
        assert_eq!(
            h.password,
            "vTgSwVKtUoAJXNw6MHyRJME/T4NeUDDb/+qL1EIf1hZ4vO/S4bPCPAKH2LGpQYMSJSWWLC7l7EtISr4UxFtBnQ=="
        );
        assert_eq!(h.iterations, 101);
    }

    #[test]
    fn initial_dynsec_denies_by_default_and_lets_the_portal_in() {
        let creds = AdminCredentials::generate();
        let doc = initial_dynsec(&creds);
        for k in [
            "publishClientSend",
            "publishClientReceive",
            "subscribe",
            "unsubscribe",
        ] {
            assert_eq!(doc["defaultACLAccess"][k], json!(false), "{k}");
        }
        let client = &doc["clients"][0];
        assert_eq!(client["username"], ADMIN_USERNAME);
        assert!(client_password_matches(client, &creds.password));
        assert!(!client_password_matches(client, "wrong"));
        let acls = doc["roles"][0]["acls"].as_array().unwrap();
        let allowed = |t: &str, topic: &str| {
            acls.iter()
                .any(|a| a["acltype"] == t && a["topic"] == topic && a["allow"] == true)
        };
        assert!(allowed("publishClientSend", "$CONTROL/dynamic-security/#"));
        assert!(allowed("subscribePattern", "$CONTROL/dynamic-security/#"));
        assert!(allowed(
            "publishClientReceive",
            "$CONTROL/dynamic-security/#"
        ));
        assert!(allowed("subscribePattern", "agents/+/up/#"));
        assert!(allowed("publishClientReceive", "agents/+/up/#"));
        assert!(allowed("publishClientSend", "agents/+/down/#"));
        assert!(!allowed("publishClientSend", "agents/+/up/#"));
    }

    #[test]
    fn repair_touches_only_the_admin_entry() {
        let old = AdminCredentials::generate();
        let mut doc = initial_dynsec(&old);
        doc["clients"]
            .as_array_mut()
            .unwrap()
            .push(json!({"username": "ag-1", "roles": [{"rolename": "agent-ag-1"}]}));
        assert!(!repair_admin_entry(&mut doc, &old).unwrap());
        let new = AdminCredentials::generate();
        assert!(repair_admin_entry(&mut doc, &new).unwrap());
        assert!(client_password_matches(&doc["clients"][0], &new.password));
        assert_eq!(doc["clients"][1]["username"], "ag-1");
        assert!(!repair_admin_entry(&mut doc, &new).unwrap());

        let mut empty = json!({"clients": [], "roles": []});
        assert!(repair_admin_entry(&mut empty, &new).unwrap());
        assert_eq!(empty["roles"][0]["rolename"], ADMIN_ROLE);
    }

    #[test]
    fn prepare_never_replaces_an_existing_dynsec_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("d"));
        let plugin = PathBuf::from("/x.so");
        let listen: SocketAddr = "127.0.0.1:18883".parse().unwrap();
        let creds = prepare(&data, listen, plugin.clone()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(data.broker_admin_secret()), 0o600);
        assert_eq!(mode(data.broker_dir()), 0o700);
        let mut doc: Value =
            serde_json::from_slice(&std::fs::read(data.dynsec_json()).unwrap()).unwrap();
        doc["clients"]
            .as_array_mut()
            .unwrap()
            .push(json!({"username": "ag-1"}));
        std::fs::write(data.dynsec_json(), serde_json::to_vec(&doc).unwrap()).unwrap();

        let again = prepare(&data, "127.0.0.1:18884".parse().unwrap(), plugin.clone()).unwrap();
        assert_eq!(again.password, creds.password);
        let after: Value =
            serde_json::from_slice(&std::fs::read(data.dynsec_json()).unwrap()).unwrap();
        assert_eq!(after, doc);
        assert!(std::fs::read_to_string(data.broker_config())
            .unwrap()
            .contains("listener 18884 127.0.0.1"));

        // Lost admin secret: a new one, written into the existing file, agents kept.
        std::fs::remove_file(data.broker_admin_secret()).unwrap();
        let fresh = prepare(&data, listen, plugin).unwrap();
        assert_ne!(fresh.password, creds.password);
        let after: Value =
            serde_json::from_slice(&std::fs::read(data.dynsec_json()).unwrap()).unwrap();
        assert_eq!(after["clients"][1]["username"], "ag-1");
        assert!(client_password_matches(
            &after["clients"][0],
            &fresh.password
        ));
    }
}
