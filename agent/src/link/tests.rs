//! The link's handling of commands without a broker: a real store, outbox, blocker (router method, with
//! `true` standing in for `nft`), inventory and settings files in a temporary state directory. Commands go
//! through `on_command` as the session loop hands them over; what the link queued is read from the outbox.

use std::sync::Arc;
use std::time::Duration;

use outpost_cloud_link::control::{BlockMethod, BlockRecord, DeviceRef};
use outpost_cloud_link::inventory::{Device, SNAPSHOT_KIND};
use outpost_cloud_link::protocol::{
    AgentMessage, Command, CommandEnvelope, Envelope, Outcome, Platform,
};
use outpost_cloud_link::settings::SettingsDoc;
use tokio::sync::watch;

use super::{Link, LinkParts};
use crate::actions::{self, Actions};
use crate::blocking::Blocker;
use crate::discovery::engine::Shared;
use crate::discovery::inventory::Inventory;
use crate::geoip::Locator;
use crate::identity::{sample, Identity};
use crate::notify::Notifier;
use crate::portal_api::{PortalClient, TEST_CA};
use crate::runtime_status::RuntimeFile;
use crate::settings::{LocalFile, StoredSettings};
use crate::state_dir::StateDir;
use crate::store::Store;
use crate::update::install::Installer;
use crate::update::slots::Slots;

/// The local file of every rig: a heartbeat and outbox size of its own, so going back to it shows.
const LOCAL: &str = "heartbeat_secs = 30\noutbox_max_bytes = 2000000\ninterfaces = []\n[discovery]\nenabled = false\nreport_interval_secs = 10\n[blocking]\nnft = \"/bin/true\"\n";

const BLOCKED: &str = "00:1a:11:00:00:20";

struct Rig {
    _dir: tempfile::TempDir,
    state: StateDir,
    link: Link,
    shared: Arc<Shared>,
    blocker: Arc<Blocker>,
    _stop: watch::Sender<bool>,
}

fn device(mac: &str) -> Device {
    Device {
        last_seen_ms: 2,
        ..Device::first_seen(mac, None, "lan0", Some([10, 0, 0, 20].into()), 1)
    }
}

/// A link at data epoch `epoch`, knowing one device and blocking it, running with `stored` settings (as
/// after a restart that laid them over the file).
async fn rig(epoch: u64, stored: Option<&str>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    state.ensure().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, LOCAL).unwrap();
    let local = LocalFile::load(Some(&file)).unwrap();
    let stored_settings = StoredSettings::new(state.settings());
    let (config, settings_version) = match stored {
        None => (local.config().unwrap(), None),
        Some(json) => {
            let doc = SettingsDoc {
                version: 7,
                settings: serde_json::from_str(json).unwrap(),
            };
            stored_settings.save(&doc).unwrap();
            (local.with_settings(&doc.settings).unwrap().0, Some(7))
        }
    };
    let identity: Identity = sample();
    identity.save(&state.identity()).unwrap();
    let store = Store::open(&state.db()).unwrap();
    store.set_epoch(epoch).unwrap();
    let d = device(BLOCKED);
    store.put_devices(std::slice::from_ref(&d)).unwrap();
    store
        .put_block(&BlockRecord {
            device: DeviceRef::new(BLOCKED, None).unwrap(),
            interface: "lan0".into(),
            method: BlockMethod::Nftables,
            ipv4: d.ipv4,
            ipv6_uncovered: Vec::new(),
            since_ms: 1,
        })
        .unwrap();
    let mut inventory = Inventory::new();
    inventory.insert_stored(d);
    let shared = Shared::new(inventory);
    let blocker = Blocker::start(
        Platform::Router,
        config.blocking.clone(),
        Vec::new(),
        store.clone(),
        actions::lookup(Some(Arc::clone(&shared))),
    )
    .await
    .unwrap();
    assert_eq!(blocker.blocks().len(), 1, "the stored block is applied");
    let portal = PortalClient::new("https://127.0.0.1:9", Some(TEST_CA.as_bytes())).unwrap();
    let (stop, shutdown) = watch::channel(false);
    let link = Link::new(LinkParts {
        runtime: RuntimeFile::new(state.runtime(), identity.name.clone()),
        identity_path: state.identity(),
        installer: Installer {
            slots: Slots::new(state.root()),
            portal: portal.clone(),
            agent_id: identity.agent_id.to_string(),
            secret: identity.secret.clone(),
            keys_dir: config.update.release_keys.clone(),
            max_download_rate: 0,
        },
        identity,
        actions: Arc::new(Actions::new(
            Arc::clone(&blocker),
            Some(Arc::clone(&shared)),
            config.power.clone(),
        )),
        locator: Locator::open(None, store.clone()).unwrap(),
        config,
        store,
        notifier: Notifier::disabled(),
        portal,
        shutdown,
        discovery: Some(Arc::clone(&shared)),
        restart: None,
        local,
        stored_settings,
        settings_version,
    })
    .unwrap();
    Rig {
        _dir: dir,
        state,
        link,
        shared,
        blocker,
        _stop: stop,
    }
}

impl Rig {
    fn command(&mut self, id: u64, cmd: Command) {
        self.link
            .on_command(&CommandEnvelope::new(id, cmd).encode())
            .unwrap();
    }

    /// What the link queued, oldest first.
    fn queued(&self) -> Vec<Envelope> {
        self.link
            .outbox
            .pending(0, 1000)
            .unwrap()
            .into_iter()
            .map(|q| serde_json::from_slice(&q.entry.payload).unwrap())
            .collect()
    }

    /// Waits (up to 5 s) for the blocker's task to lift every block.
    async fn blocks_lifted(&self) -> bool {
        for _ in 0..100 {
            if self.blocker.blocks().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn ack_of(env: &Envelope) -> Option<(u64, &Outcome)> {
    match &env.msg {
        AgentMessage::Ack(a) => Some((a.command_id, &a.outcome)),
        _ => None,
    }
}

#[tokio::test]
async fn a_cleanup_not_above_the_stored_epoch_still_forgets_the_devices_and_blocks_in_memory() {
    for epoch in [4, 3] {
        let mut r = rig(4, None).await;
        assert_eq!(r.shared.len(), 1);
        r.command(21, Command::Cleanup { epoch });
        assert_eq!(r.shared.len(), 0, "epoch {epoch}: the inventory in memory");
        assert!(
            r.blocks_lifted().await,
            "epoch {epoch}: the blocks are lifted"
        );
        assert_eq!(
            r.link.store.epoch().unwrap(),
            4,
            "the epoch never goes back"
        );
        let queued = r.queued();
        // The (empty) snapshot of the epoch, then the acknowledgement.
        let snapshot = queued
            .iter()
            .find(|e| matches!(&e.msg, AgentMessage::Report(rep) if rep.kind == SNAPSHOT_KIND))
            .expect("a snapshot is queued after the cleanup");
        assert_eq!(snapshot.epoch, 4);
        let AgentMessage::Report(rep) = &snapshot.msg else {
            unreachable!()
        };
        assert_eq!(rep.body["devices"], serde_json::json!([]), "{}", rep.body);
        assert_eq!(queued.last().and_then(ack_of), Some((21, &Outcome::Done)));
        assert!(!r.link.restart_now, "no settings were pushed: no restart");
    }
}

#[tokio::test]
async fn a_cleanup_puts_pushed_live_settings_back_to_the_files_at_once_without_a_restart() {
    let mut r = rig(0, None).await;
    r.command(
        30,
        Command::ApplySettings {
            doc: serde_json::json!({"version": 3, "settings": {
                "heartbeat_secs": 2, "outbox_max_bytes": 100000,
                "discovery": {"report_interval_secs": 1}}}),
        },
    );
    assert_eq!(r.link.settings_version, Some(3));
    assert_eq!(r.link.config.heartbeat, Duration::from_secs(2));
    assert_eq!(r.link.outbox.max_bytes(), 100_000);
    assert!(r.state.settings().exists());
    assert!(!r.link.restart_now);

    r.command(31, Command::Cleanup { epoch: 1 });
    assert!(!r.state.settings().exists(), "settings.json is removed");
    assert_eq!(r.link.settings_version, None);
    assert_eq!(r.link.config.heartbeat, Duration::from_secs(30));
    assert_eq!(
        r.link.config.discovery.report_interval,
        Duration::from_secs(10)
    );
    assert_eq!(r.link.outbox.max_bytes(), 2_000_000);
    assert_eq!(r.link.heartbeat.period(), Duration::from_secs(30));
    assert_eq!(r.link.report.period(), Duration::from_secs(10));
    assert!(!r.link.restart_now, "only live settings differed");
    assert_eq!(
        r.queued().last().and_then(ack_of),
        Some((31, &Outcome::Done))
    );
}

#[tokio::test]
async fn a_cleanup_that_removes_a_setting_needing_a_restart_restarts_after_queueing_its_ack() {
    let mut r = rig(
        0,
        Some(r#"{"heartbeat_secs": 2, "discovery": {"rate_pps": 100}}"#),
    )
    .await;
    assert_eq!(r.link.settings_version, Some(7));
    assert_eq!(r.link.config.discovery.rate_pps, Some(100));
    r.command(40, Command::Cleanup { epoch: 1 });
    assert!(!r.state.settings().exists());
    assert_eq!(r.link.settings_version, None);
    assert_eq!(
        r.link.heartbeat.period(),
        Duration::from_secs(30),
        "the live settings go back at once"
    );
    assert!(r.link.restart_now, "the agent restarts to run without them");
    // The restart path (`session_once`) closes the session through `close`, which sends what the outbox
    // holds first; the acknowledgement is there, and on disk if the flush runs out of time.
    let queued = r.queued();
    assert_eq!(queued.last().and_then(ack_of), Some((40, &Outcome::Done)));
    // After the restart the file alone is in charge.
    let local = LocalFile::load(Some(&r._dir.path().join("agent.toml"))).unwrap();
    assert_eq!(
        StoredSettings::new(r.state.settings()).load().unwrap(),
        None
    );
    assert_ne!(local.config().unwrap().discovery.rate_pps, Some(100));
}
