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
use crate::portal_api::{ActivateRequest, PortalClient};
use crate::state_dir::StateDir;
use crate::store::Store;

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
    state.ensure()?;
    match Identity::load(&state.identity()) {
        Ok(Some(existing)) if !args.force => bail!(
            "this agent is already activated as {} ({:?}); pass --force to replace that identity (its local data and queue are wiped)",
            existing.agent_id,
            existing.name
        ),
        Err(e) if !args.force => return Err(e.into()),
        _ => {}
    }
    // The daemon holds the database while it runs; refuse before spending the code.
    if state.db().exists() {
        drop(Store::open(&state.db()).context("cannot activate while the agent runs")?);
    }
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
    let agent_id = AgentId::parse(&activation.agent_id)
        .context("the portal answered with an unusable agent id")?;

    // A new identity starts from a fresh database: sequence numbers, command ids and data are per identity.
    for file in [state.runtime(), state.deleted_marker()] {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).with_context(|| format!("remove {}", file.display()));
            }
        }
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
