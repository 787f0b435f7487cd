//! `outpost-agent activate CODE --portal URL [--ca FILE] [--platform P] [--force] [--json]`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use outpost_cloud_link::protocol::Platform;
use outpost_cloud_link::AgentId;
use tracing::info;

use super::Exit;
use crate::config::LogFormat;
use crate::hostinfo;
use crate::identity::Identity;
use crate::portal_api::{ActivateRequest, ActivateResponse, PortalClient};
use crate::state_dir::{atomic_write, remove_if_exists, StateDir};
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The activation code from the portal.
    pub code: String,
    /// The portal's base URL.
    #[arg(long, value_name = "https://HOST:PORT")]
    pub portal: String,
    /// PEM file with the CA to trust for the portal (the only one trusted); default: the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// What this host is; default: router if /etc/openwrt_release exists, box if /etc/outpost/box does, else linux.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Replace an existing identity (its local data and queued messages are wiped).
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn activate(state: &StateDir, args: Args) -> anyhow::Result<Exit> {
    crate::logging::init(LogFormat::Text, "warn");
    // Everything local is checked before the portal spends the code.
    preflight(state, args.force)?;
    let ca = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("read CA file {}", path.display()))?)
        }
        None => None,
    };
    let portal = PortalClient::new(&args.portal, ca.as_deref())?;
    let (host, port) = portal.host_port();
    let facts = tokio::task::spawn_blocking(move || hostinfo::gather(&host, port))
        .await
        .context("gather host facts")?;
    let platform = args
        .platform
        .unwrap_or_else(|| hostinfo::detect_platform(Path::new("/")));
    let request = ActivateRequest {
        code: args.code.trim().to_owned(),
        mac: facts.mac,
        hostname: facts.hostname,
        version: crate::build_info::VERSION.to_owned(),
        local_ip: facts.local_ip.map(|ip| ip.to_string()),
        platform,
    };
    let activation = portal.activate(&request).await?;
    // From here on the code is spent: a failure must say so, with the agent id the portal made.
    let (shown_id, shown_name) = (activation.agent_id.clone(), activation.name.clone());
    let identity = store_activation(state, &portal, ca, platform, activation)
        .map_err(|e| spent_code(&shown_id, &shown_name, state.root(), e))?;
    info!(agent_id = %identity.agent_id, name = %identity.name, "agent activated");
    if args.json {
        let out = serde_json::json!({
            "agent_id": identity.agent_id.as_str(),
            "name": identity.name,
            "broker": identity.broker,
            "portal": identity.portal,
            "platform": identity.platform,
        });
        println!("{out}");
    } else {
        println!("{}", identity.agent_id);
        eprintln!(
            "activated as {:?}; start the daemon with: outpost-agent --state {} run",
            identity.name,
            state.root().display()
        );
    }
    Ok(Exit::Ok)
}

/// What is said when a local step fails before the portal is called.
const CODE_NOT_USED: &str = "the activation code was not used";

/// Checks, before the code is spent, that activation can store its result: the state directory can be
/// created and written, nothing is in the way of the files it writes, no identity is replaced without
/// `--force`, the daemon is not running (it holds the database), and a database can be created there.
fn preflight(state: &StateDir, force: bool) -> anyhow::Result<()> {
    let root = state.root();
    // The error names the path and the cause already; it is not chained again.
    state.ensure().map_err(|e| {
        anyhow::anyhow!(
            "the state directory cannot be used ({e}); fix the path or its parent (or pass another --state); {CODE_NOT_USED}"
        )
    })?;
    match Identity::load(&state.identity()) {
        Ok(Some(existing)) if !force => bail!(
            "this agent is already activated as {} ({:?}); pass --force to replace that identity (its local data and queue are wiped)",
            existing.agent_id,
            existing.name
        ),
        Err(e) if !force => return Err(e.into()),
        _ => {}
    }
    for (path, want_dir) in [
        (state.identity(), false),
        (state.runtime(), false),
        (state.deleted_marker(), false),
        (state.db(), true),
    ] {
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.is_dir() != want_dir || meta.file_type().is_symlink() {
                bail!(
                    "{} is in the way: activation writes a {} there and found {}; move it away and run activate again; {CODE_NOT_USED}",
                    path.display(),
                    if want_dir { "directory" } else { "file" },
                    describe(&meta),
                );
            }
        }
    }
    let probe = root.join(".activate-check");
    let written = atomic_write(&probe, b"activation check\n", 0o600, true)
        .and_then(|()| remove_if_exists(&probe));
    if let Err(e) = written {
        bail!(
            "the state directory {} is not writable ({e}); fix its permissions, ownership or mount (a read-only or full file system); {CODE_NOT_USED}",
            root.display()
        );
    }
    // The daemon holds the database while it runs. Another failure to open the old one is no obstacle:
    // activation replaces it.
    if state.db().exists() {
        match Store::open(&state.db()) {
            Ok(store) => drop(store),
            Err(e @ StoreError::InUse { .. }) => {
                return Err(e).context(format!(
                    "cannot activate while the agent runs; {CODE_NOT_USED}"
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "the old database cannot be opened; activation replaces it")
            }
        }
    }
    // A database can be created here (sled's files, its lock).
    let scratch = root.join(".activate-check.db");
    let created = Store::open(&scratch).map(drop);
    let removed = std::fs::remove_dir_all(&scratch);
    if let Err(e) = created {
        return Err(e).context(format!(
            "cannot create the agent database in {}; {CODE_NOT_USED}",
            root.display()
        ));
    }
    removed.with_context(|| format!("remove the check database {}", scratch.display()))?;
    Ok(())
}

fn describe(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// The portal's answer into the state directory: a fresh database at the agent's epoch, then the identity
/// (whose presence means activated).
fn store_activation(
    state: &StateDir,
    portal: &PortalClient,
    ca: Option<Vec<u8>>,
    platform: Platform,
    activation: ActivateResponse,
) -> anyhow::Result<Identity> {
    let agent_id = AgentId::parse(&activation.agent_id)
        .context("the portal answered with an unusable agent id")?;
    // A new identity starts from a fresh database: sequence numbers, command ids and data are per identity.
    for file in [state.runtime(), state.deleted_marker()] {
        remove_if_exists(&file)?;
    }
    if let Err(e) = std::fs::remove_dir_all(state.db()) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e).with_context(|| format!("remove old database {}", state.db().display()));
        }
    }
    let store = Store::open(&state.db())?;
    store.set_epoch(activation.epoch)?;
    // The address the portal saw the activation come from: the daemon looks it up (GeoIP) at start.
    crate::geoip::remember_activation_address(&store, activation.public_ip.as_deref())?;
    drop(store);

    let identity = Identity {
        agent_id,
        secret: activation.secret,
        broker: activation.broker,
        portal: portal.base_url(),
        ca_pem: activation.ca_pem,
        portal_ca_pem: ca.map(|c| String::from_utf8_lossy(&c).into_owned()),
        name: activation.name,
        activated_at: chrono::Utc::now(),
        platform,
    };
    identity.save(&state.identity())?;
    Ok(identity)
}

/// A local step failed after the portal spent the code: say so, with the agent it made and what to do.
fn spent_code(agent_id: &str, name: &str, state: &Path, err: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the portal activated this agent as {agent_id} ({name:?}) and used the activation code, but storing the activation in {} failed: {err:#}. \
         This agent is not activated. Fix the problem above, then delete agent {agent_id} in the portal and activate again with a new code from the portal",
        state.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal_api::TEST_CA;

    fn answer() -> ActivateResponse {
        ActivateResponse {
            agent_id: "ag-spent000001".into(),
            name: "shop".into(),
            broker: "127.0.0.1:8883".into(),
            secret: "s3cret".into(),
            ca_pem: TEST_CA.into(),
            epoch: 2,
            public_ip: None,
        }
    }

    #[test]
    fn a_local_failure_after_the_portal_answered_names_the_agent_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        preflight(&state, false).unwrap();
        // Something gets in the way after the checks (the checks are not a lock).
        std::fs::create_dir(state.identity()).unwrap();
        let portal = PortalClient::new("https://127.0.0.1:9", Some(TEST_CA.as_bytes())).unwrap();
        let e = store_activation(&state, &portal, None, Platform::Linux, answer())
            .map_err(|e| spent_code("ag-spent000001", "shop", state.root(), e))
            .unwrap_err()
            .to_string();
        for needed in [
            "ag-spent000001",
            "used the activation code",
            "identity.json",
            "delete agent ag-spent000001 in the portal",
            "new code",
        ] {
            assert!(e.contains(needed), "{needed:?} missing from: {e}");
        }
    }

    #[test]
    fn preflight_leaves_nothing_behind_and_stores_an_activation() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        preflight(&state, false).unwrap();
        let left: Vec<_> = std::fs::read_dir(state.root()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        let portal = PortalClient::new("https://127.0.0.1:9", Some(TEST_CA.as_bytes())).unwrap();
        let id = store_activation(&state, &portal, None, Platform::Linux, answer()).unwrap();
        assert_eq!(Identity::load(&state.identity()).unwrap(), Some(id));
        assert_eq!(Store::open(&state.db()).unwrap().epoch().unwrap(), 2);
    }

    #[test]
    fn preflight_refuses_what_is_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        std::fs::write(state.db(), "not a database").unwrap();
        let e = format!("{:#}", preflight(&state, true).unwrap_err());
        assert!(
            e.contains("is in the way") && e.contains(CODE_NOT_USED),
            "{e}"
        );
    }
}
