//! `outpost-agent run [--config FILE]`: the daemon. Exits 0 on SIGTERM/SIGINT, 3 when the portal deleted it,
//! 75 (or executes its launcher again) when an update is installed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

use super::Exit;
use crate::actions::{self, Actions};
use crate::blocking::Blocker;
use crate::build_info::{self, Fault};
use crate::config::DEFAULT_PATH;
use crate::control;
use crate::discovery::engine::{self, interfaces_to_watch, Shared};
use crate::discovery::inventory::Inventory;
use crate::geoip::Locator;
use crate::identity::Identity;
use crate::link::{Link, LinkExit, LinkParts};
use crate::notify::Notifier;
use crate::portal_api::PortalClient;
use crate::runtime_status::RuntimeFile;
use crate::settings::{LocalFile, StoredSettings};
use crate::state_dir::StateDir;
use crate::store::Store;
use crate::update::install::Installer;
use crate::update::launcher;
use crate::update::slots::Slots;

const DELETED: &str = "this agent was deleted in the portal; its state was wiped, ready for a new activation code (outpost-agent activate CODE --portal URL)";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file; a missing default file means the defaults, a missing explicit one is an error.
    #[arg(long, value_name = "FILE", default_value_t = DEFAULT_PATH.to_owned())]
    pub config: String,
}

pub async fn run(state: &StateDir, args: Args) -> anyhow::Result<Exit> {
    let explicit = (args.config != DEFAULT_PATH).then(|| PathBuf::from(&args.config));
    let local = LocalFile::load(explicit.as_deref())?;
    let file_config = local.config()?;
    crate::logging::init(file_config.log_format, "info");
    // The portal's settings over the file, as last applied; unusable ones leave the file alone in charge.
    let stored_settings = StoredSettings::new(state.settings());
    let (config, settings_version) = match stored_settings.load() {
        Ok(Some(doc)) => match local.with_settings(&doc.settings) {
            Ok((config, _)) => (config, Some(doc.version)),
            Err(e) => {
                error!(version = doc.version, error = %e, "the portal's stored settings no longer fit the local file; running with the file alone until the portal sends settings again");
                (file_config, None)
            }
        },
        Ok(None) => (file_config, None),
        Err(e) => {
            error!(error = %e, "the portal's stored settings cannot be read; running with the local file alone");
            (file_config, None)
        }
    };
    if build_info::fault() == Some(Fault::CrashAtStart) {
        anyhow::bail!("this test build crashes at start (OUTPOST_BUILD_FAULT=crash-at-start)");
    }
    let restart = launcher::restart_from_env();
    info!(
        version = build_info::VERSION,
        target = build_info::TARGET,
        updatable = restart.is_some(),
        "outpost-agent"
    );
    let Some(identity) = Identity::load(&state.identity())? else {
        if state.is_deleted() {
            eprintln!("{DELETED}");
            return Ok(Exit::Deleted);
        }
        anyhow::bail!(
            "this agent is not activated (no {}): run `outpost-agent --state {} activate CODE --portal https://HOST:PORT` first",
            state.identity().display(),
            state.root().display()
        );
    };
    // The broker secret is never logged; if it ever were, the ring the portal can read would not hold it.
    crate::logging::ring().redact(&identity.secret);
    let store = Store::open(&state.db())?;
    // Discovery: the stored inventory back in memory, one task per interface, the control socket.
    let discovery = if config.discovery.enabled {
        let mut inventory = Inventory::new();
        store.for_each_device(|d| inventory.insert_stored(d))?;
        info!(devices = inventory.len(), "inventory loaded");
        Some(Shared::new(inventory))
    } else {
        info!("discovery is turned off in the configuration");
        None
    };
    let portal = PortalClient::new(
        &identity.portal,
        identity.portal_ca_pem.as_deref().map(str::as_bytes),
    )
    .context("cannot set up the portal client from identity.json")?;
    let (stop, shutdown) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "stop requested"),
            _ = int.recv() => info!(signal = "SIGINT", "stop requested"),
        }
        let _ = stop.send(true);
        // Keep the sender alive so receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    // Blocks stored before the last stop (or reboot) are applied again before anything else happens.
    let platform = config.platform.unwrap_or(identity.platform);
    let blocker = Blocker::start(
        platform,
        config.blocking.clone(),
        interfaces_to_watch(config.interfaces.as_deref()),
        store.clone(),
        actions::lookup(discovery.clone()),
    )
    .await
    .context("cannot start blocking")?;
    let actions = Arc::new(Actions::new(
        Arc::clone(&blocker),
        discovery.clone(),
        config.power.clone(),
    ));
    let mut tasks = JoinSet::new();
    if let Some(shared) = &discovery {
        let interfaces = interfaces_to_watch(config.interfaces.as_deref());
        tasks = engine::spawn(
            config.discovery.clone(),
            interfaces,
            Arc::clone(shared),
            shutdown.clone(),
        );
        let control = control::serve(state.control_socket(), Arc::clone(shared), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = control.await {
                error!(error = %e, "the control socket failed; `outpost-agent devices` cannot ask this daemon");
            }
        });
    }
    // GeoIP: an unusable database is a warning, never a reason not to run.
    let locator = Locator::open(config.geoip.database.as_deref(), store.clone())?;
    let installer = Installer {
        slots: Slots::new(state.root()),
        portal: portal.clone(),
        agent_id: identity.agent_id.to_string(),
        secret: identity.secret.clone(),
        keys_dir: config.update.release_keys.clone(),
        max_download_rate: config.update.max_download_rate,
    };
    let link = Link::new(LinkParts {
        runtime: RuntimeFile::new(state.runtime(), identity.name.clone()),
        identity_path: state.identity(),
        identity,
        config,
        store,
        notifier: Notifier::from_env(),
        portal,
        shutdown,
        discovery,
        actions,
        locator,
        installer,
        restart,
        local,
        stored_settings,
        settings_version,
    })?;
    let exit = link.run().await;
    match exit {
        // Stopping: a box gives the paused devices their ARP caches back (the blocks stay stored and are
        // applied again at the next start); a router leaves its nftables table in place.
        Ok(LinkExit::Shutdown) | Ok(LinkExit::Restart) | Err(_) => blocker.stop().await,
        // Deleted: nothing of this agent may stay behind.
        Ok(LinkExit::Deleted) => {
            if let Err(e) = blocker.unblock_all().await {
                error!(error = %e, "lifting the blocks of the deleted agent");
            }
        }
    }
    let exit = exit?;
    // The link returned: stop the discovery tasks (they watch the same shutdown signal, which a deletion
    // does not set).
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(state.control_socket());
    match exit {
        LinkExit::Shutdown => {
            info!("stopped");
            Ok(Exit::Ok)
        }
        LinkExit::Restart => {
            info!("restarting into the installed update");
            Ok(Exit::Restart)
        }
        LinkExit::Deleted => {
            error!("{DELETED}");
            if let Err(errors) = state.wipe_to_deleted() {
                for e in &errors {
                    error!(error = %e, "wiping the state directory");
                }
                anyhow::bail!(
                    "this agent was deleted in the portal, but wiping its state failed (see above)"
                );
            }
            Ok(Exit::Deleted)
        }
    }
}
