//! Runs the portal's commands at most once each: decode, dedupe by id (recorded in sled before running, so
//! also across restarts), run, record the outcome. The caller queues the returned outcome as an `Ack`.
//!
//! Device-control commands (block, unblock, power), updates, settings, restarts and diagnostics take seconds
//! or need the link's state and talk to the network: they are handed
//! back as [`Handled::Deferred`] once recorded as started; the caller runs them off its loop and records
//! their outcome with [`Executor::finish`].

use std::path::Path;

use outpost_cloud_link::outbox::{Entry, Outbox};
use outpost_cloud_link::protocol::{Command, CommandEnvelope, Envelope, Outcome, PROTOCOL_VERSION};
use serde::Deserialize;

use crate::identity::Identity;
use crate::settings::StoredSettings;
use crate::state_dir::StateDirError;
use crate::store::{CommandRecord, OutboxTree, Store, StoreError};

/// Longest name accepted by a rename.
const MAX_NAME_LEN: usize = 200;

/// Why a command could not be handled at all (storage trouble, not a failed command).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cleanup could not remove the old epoch's data from the outbox: {0}")]
    Outbox(String),
    #[error("cleanup could not remove the portal's settings: {0}")]
    Settings(#[from] StateDirError),
}

/// A handled command: the id and the outcome to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub command_id: u64,
    pub outcome: Outcome,
    /// `true` when the id had been seen before and nothing ran now.
    pub duplicate: bool,
    /// `true` when a cleanup ran now (whatever its epoch): the caller forgets its in-memory data too.
    pub cleanup: bool,
}

/// What [`Executor::handle`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Run (or answered from the record) now.
    Done(Executed),
    /// Recorded as started; the caller runs it and then calls [`Executor::finish`].
    Deferred { command_id: u64, cmd: Command },
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

/// Runs commands against the store, the outbox, the identity file and the stored settings.
pub struct Executor<'a> {
    pub store: &'a Store,
    pub outbox: &'a mut Outbox<OutboxTree>,
    pub identity: &'a mut Identity,
    pub identity_path: &'a Path,
    /// The portal's settings document (`STATE/settings.json`), removed by a cleanup.
    pub settings: &'a StoredSettings,
}

impl Executor<'_> {
    /// Handles one message from the command topic. `Ok(None)`: it carries no command id (logged and dropped).
    pub fn handle(&mut self, payload: &[u8]) -> Result<Option<Handled>, ExecError> {
        let decoded = CommandEnvelope::decode(payload);
        let id = match &decoded {
            Ok(env) => env.id,
            Err(e) => match serde_json::from_slice::<IdOnly>(payload) {
                Ok(IdOnly { id }) => id,
                Err(_) => {
                    tracing::warn!(error = %e, "ignoring a command message without a readable id");
                    return Ok(None);
                }
            },
        };
        if let Some(previous) = self.previous_outcome(id)? {
            tracing::info!(
                command_id = id,
                "command seen before; acknowledging again without running it"
            );
            return Ok(Some(Handled::Done(Executed {
                command_id: id,
                outcome: previous,
                duplicate: true,
                cleanup: false,
            })));
        }
        self.store.record_command(id, &CommandRecord::Started)?;
        let cleanup = matches!(&decoded, Ok(env) if matches!(env.cmd, Command::Cleanup { .. }));
        let outcome = match decoded {
            Ok(env) if is_deferred(&env.cmd) => {
                return Ok(Some(Handled::Deferred {
                    command_id: id,
                    cmd: env.cmd,
                }))
            }
            Ok(env) => self.run(id, env.cmd)?,
            Err(e) => {
                tracing::warn!(command_id = id, error = %e, protocol = PROTOCOL_VERSION, "cannot run command");
                Outcome::failed(e.to_string())
            }
        };
        let mut done = self.finish(id, outcome)?;
        done.cleanup = cleanup;
        Ok(Some(Handled::Done(done)))
    }

    /// Records the outcome of command `id` (run now, or deferred and finished by the caller).
    pub fn finish(&self, id: u64, outcome: Outcome) -> Result<Executed, ExecError> {
        self.store.record_command(
            id,
            &CommandRecord::Finished {
                outcome: outcome.clone(),
            },
        )?;
        Ok(Executed {
            command_id: id,
            outcome,
            duplicate: false,
            cleanup: false,
        })
    }

    fn previous_outcome(&self, id: u64) -> Result<Option<Outcome>, ExecError> {
        Ok(match self.store.command(id)? {
            Some(CommandRecord::Finished { outcome }) => Some(outcome),
            Some(CommandRecord::Started) => Some(Outcome::failed(format!(
                "command {id} was interrupted by an agent restart; it was not run again"
            ))),
            None if id <= self.store.command_floor()? => Some(Outcome::failed(format!(
                "command {id} is older than the agent's command history; it was not run again"
            ))),
            None => None,
        })
    }

    fn run(&mut self, id: u64, cmd: Command) -> Result<Outcome, ExecError> {
        let kind = cmd.name();
        let outcome = match cmd {
            Command::Ping => Outcome::Done,
            // Handed back by `handle` before it gets here.
            Command::Block { .. }
            | Command::Unblock { .. }
            | Command::Power { .. }
            | Command::Update { .. }
            | Command::ApplySettings { .. }
            | Command::Restart
            | Command::Logs { .. }
            | Command::Health => Outcome::failed(format!("{kind} cannot run inline")),
            Command::Rename { name } => self.rename(name),
            Command::Cleanup { epoch } => self.cleanup(epoch)?,
        };
        tracing::info!(command_id = id, command = kind, outcome = ?outcome, "command executed");
        Ok(outcome)
    }

    /// Wipes the gathered data, the old epoch's data still queued (acknowledgements, heartbeats, presence,
    /// hellos and update reports stay, in order) and the portal's settings; keeps the identity, the name,
    /// the command ids and the sequence counter. The epoch only ever moves forward.
    fn cleanup(&mut self, epoch: u64) -> Result<Outcome, ExecError> {
        self.store.wipe_data()?;
        let removed = self
            .outbox
            .remove_where(is_epoch_data)
            .map_err(|e| ExecError::Outbox(e.to_string()))?;
        // Removals are not flushed on their own (see `store`); a cleanup's must not come back after a crash.
        self.store.flush()?;
        self.settings.remove()?;
        let current = self.store.epoch()?;
        self.store.set_epoch(current.max(epoch))?;
        tracing::info!(
            epoch = current.max(epoch),
            removed,
            kept = self.outbox.depth(),
            "cleanup: local data, the queued data messages and the portal's settings wiped"
        );
        Ok(Outcome::Done)
    }

    fn rename(&mut self, name: String) -> Outcome {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Outcome::failed(format!("name must be 1 to {MAX_NAME_LEN} characters"));
        }
        let mut updated = self.identity.clone();
        updated.name = name;
        match updated.save(self.identity_path) {
            Ok(()) => {
                *self.identity = updated;
                Outcome::Done
            }
            Err(e) => Outcome::failed(format!("could not store the new name: {e}")),
        }
    }
}

/// Whether a queued message is data of its epoch (see `AgentMessage::is_epoch_data`). A message that cannot
/// be read is kept: losing it is worse than the portal dropping it by its epoch.
fn is_epoch_data(entry: &Entry) -> bool {
    serde_json::from_slice::<Envelope>(&entry.payload).is_ok_and(|env| env.msg.is_epoch_data())
}

/// Whether `cmd` is run by the caller, off the link's loop.
fn is_deferred(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Block { .. }
            | Command::Unblock { .. }
            | Command::Power { .. }
            | Command::Update { .. }
            | Command::ApplySettings { .. }
            | Command::Restart
            | Command::Logs { .. }
            | Command::Health
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sample;
    use outpost_cloud_link::control::BLOCKS_REPORT;
    use outpost_cloud_link::geoip::LOCATION_REPORT;
    use outpost_cloud_link::inventory::{DELTA_KIND, SNAPSHOT_KIND};
    use outpost_cloud_link::protocol::{Ack, AgentMessage, Heartbeat, Presence, Report};
    use outpost_cloud_link::settings::SettingsDoc;
    use outpost_cloud_link::topics;
    use outpost_cloud_link::update::UPDATE_REPORT;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        outbox: Outbox<OutboxTree>,
        identity: Identity,
        identity_path: std::path::PathBuf,
        settings: StoredSettings,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db")).unwrap();
            let outbox = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
            let identity_path = dir.path().join("identity.json");
            let identity = sample();
            identity.save(&identity_path).unwrap();
            let settings = StoredSettings::new(dir.path().join("settings.json"));
            Self {
                _dir: dir,
                store,
                outbox,
                identity,
                identity_path,
                settings,
            }
        }

        fn reopen(self) -> Self {
            let Fixture {
                _dir,
                store,
                outbox,
                identity,
                identity_path,
                settings,
            } = self;
            drop(outbox);
            drop(store);
            let store = Store::open(&_dir.path().join("db")).unwrap();
            let outbox = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
            Self {
                _dir,
                store,
                outbox,
                identity,
                identity_path,
                settings,
            }
        }

        fn executor(&mut self) -> Executor<'_> {
            Executor {
                store: &self.store,
                outbox: &mut self.outbox,
                identity: &mut self.identity,
                identity_path: &self.identity_path,
                settings: &self.settings,
            }
        }

        /// Queues `msg` the way the link does (its topic, an envelope stamped with `epoch`).
        fn queue(&mut self, msg: AgentMessage, epoch: u64) {
            let topic = topics::up(&self.identity.agent_id, msg.kind());
            self.outbox
                .push(&topic, false, |seq| {
                    Envelope::new(seq, epoch, 0, msg).encode()
                })
                .unwrap();
        }

        /// What is queued, as (topic kind, report kind or "").
        fn queued(&self) -> Vec<(String, String)> {
            self.outbox
                .pending(0, 1000)
                .unwrap()
                .into_iter()
                .map(|q| {
                    let env: Envelope = serde_json::from_slice(&q.entry.payload).unwrap();
                    let report = match &env.msg {
                        AgentMessage::Report(r) => r.kind.clone(),
                        _ => String::new(),
                    };
                    (env.msg.kind().as_str().to_owned(), report)
                })
                .collect()
        }

        fn handle(&mut self, raw: &[u8]) -> Option<Executed> {
            match self.executor().handle(raw).unwrap()? {
                Handled::Done(e) => Some(e),
                Handled::Deferred { .. } => panic!("deferred"),
            }
        }

        fn cmd(&mut self, id: u64, cmd: Command) -> Executed {
            self.handle(&CommandEnvelope::new(id, cmd).encode())
                .unwrap()
        }
    }

    #[test]
    fn ping_is_done() {
        let mut f = Fixture::new();
        let e = f.cmd(1, Command::Ping);
        assert_eq!(e.outcome, Outcome::Done);
        assert!(!e.duplicate);
    }

    #[test]
    fn rename_updates_identity_json() {
        let mut f = Fixture::new();
        let e = f.cmd(
            2,
            Command::Rename {
                name: " Shop front ".into(),
            },
        );
        assert_eq!(e.outcome, Outcome::Done);
        assert_eq!(f.identity.name, "Shop front");
        let stored = Identity::load(&f.identity_path).unwrap().unwrap();
        assert_eq!(stored.name, "Shop front");
        assert_eq!(stored.secret, f.identity.secret, "the rest is kept");
        let bad = f.cmd(3, Command::Rename { name: "  ".into() });
        assert!(matches!(bad.outcome, Outcome::Failed { .. }));
        assert_eq!(f.identity.name, "Shop front");
    }

    fn report(kind: &str) -> AgentMessage {
        AgentMessage::Report(Report {
            kind: kind.into(),
            body: serde_json::json!({"x": 1}),
        })
    }

    #[test]
    fn cleanup_wipes_data_and_only_the_outboxs_data_messages_and_sets_the_epoch() {
        let mut f = Fixture::new();
        f.store.put_data(b"k", b"v").unwrap();
        f.queue(
            AgentMessage::Ack(Ack {
                command_id: 1,
                outcome: Outcome::Done,
                result: None,
            }),
            0,
        );
        f.queue(report(SNAPSHOT_KIND), 0);
        f.queue(report(UPDATE_REPORT), 0);
        f.queue(report(DELTA_KIND), 0);
        f.queue(
            AgentMessage::Heartbeat(Heartbeat {
                uptime_s: 5,
                outbox_depth: 4,
                outbox_dropped: 0,
            }),
            0,
        );
        f.queue(report(BLOCKS_REPORT), 0);
        f.queue(AgentMessage::Presence(Presence { online: true }), 0);
        f.queue(report(LOCATION_REPORT), 0);
        f.queue(report(DELTA_KIND), 0);
        // A message this build cannot read is kept (the portal judges it by its epoch).
        f.outbox
            .push("agents/x/up/report", false, |_| b"not json".to_vec())
            .unwrap();
        let next = f.outbox.next_seq();
        let e = f.cmd(4, Command::Cleanup { epoch: 3 });
        assert_eq!(e.outcome, Outcome::Done);
        assert!(e.cleanup, "the executor says a cleanup ran");
        assert_eq!(f.store.data_len(), 0);
        let kept: Vec<u64> = f
            .outbox
            .pending(0, 100)
            .unwrap()
            .iter()
            .map(|q| q.seq)
            .collect();
        assert_eq!(
            kept,
            [1, 3, 5, 7, 10],
            "the others keep their order and seq"
        );
        assert_eq!(
            f.outbox.pending(9, 1).unwrap()[0].entry.payload,
            b"not json"
        );
        f.outbox.ack(10).unwrap();
        assert_eq!(
            f.queued(),
            [
                ("ack".to_owned(), String::new()),
                ("report".to_owned(), UPDATE_REPORT.to_owned()),
                ("heartbeat".to_owned(), String::new()),
                ("presence".to_owned(), String::new()),
            ]
        );
        assert_eq!(f.outbox.depth(), 4);
        assert_eq!(
            f.outbox.next_seq(),
            next,
            "sequence numbers are never reused"
        );
        let bytes = f.outbox.bytes();
        let f = f.reopen();
        assert_eq!(
            (f.outbox.depth(), f.outbox.bytes()),
            (4, bytes),
            "the byte count matches what is stored"
        );
        assert_eq!(f.queued().len(), 4);
        assert_eq!(f.outbox.dropped(), 0, "a cleanup is not an overflow");
        assert_eq!(f.store.epoch().unwrap(), 3);
        assert_eq!(
            Identity::load(&f.identity_path).unwrap().unwrap().name,
            "site-gw"
        );
        assert!(
            f.store.command(4).unwrap().is_some(),
            "command ids are kept"
        );
    }

    #[test]
    fn cleanup_removes_the_portals_settings_and_keeps_the_identity() {
        let mut f = Fixture::new();
        let doc = SettingsDoc {
            version: 3,
            settings: serde_json::from_str(r#"{"heartbeat_secs": 2}"#).unwrap(),
        };
        f.settings.save(&doc).unwrap();
        assert_eq!(f.settings.load().unwrap(), Some(doc));
        assert_eq!(
            f.cmd(9, Command::Cleanup { epoch: 1 }).outcome,
            Outcome::Done
        );
        assert!(!f.settings.path().exists());
        assert_eq!(f.settings.load().unwrap(), None);
        assert_eq!(
            Identity::load(&f.identity_path).unwrap(),
            Some(f.identity.clone())
        );
        // Nothing stored: a cleanup is still fine.
        assert_eq!(
            f.cmd(10, Command::Cleanup { epoch: 2 }).outcome,
            Outcome::Done
        );
    }

    #[test]
    fn a_cleanup_at_an_epoch_not_above_the_stored_one_is_still_reported_as_a_cleanup() {
        let mut f = Fixture::new();
        f.store.set_epoch(5).unwrap();
        f.store.put_data(b"k", b"v").unwrap();
        let e = f.cmd(11, Command::Cleanup { epoch: 5 });
        assert!(e.cleanup && !e.duplicate);
        assert_eq!(f.store.data_len(), 0);
        assert_eq!(f.store.epoch().unwrap(), 5, "the epoch never goes back");
        let older = f.cmd(12, Command::Cleanup { epoch: 2 });
        assert!(older.cleanup);
        assert_eq!(f.store.epoch().unwrap(), 5);
        // A redelivered cleanup runs nothing, so it is not reported as one.
        let again = f.cmd(12, Command::Cleanup { epoch: 2 });
        assert!(again.duplicate && !again.cleanup);
        assert!(!f.cmd(13, Command::Ping).cleanup);
    }

    #[test]
    fn a_duplicate_is_acked_with_the_stored_outcome_and_not_run_again() {
        let mut f = Fixture::new();
        f.cmd(
            5,
            Command::Rename {
                name: "First".into(),
            },
        );
        let mut f = f.reopen();
        // Same id, different body: it must not run.
        let e = f.cmd(
            5,
            Command::Rename {
                name: "Second".into(),
            },
        );
        assert!(e.duplicate);
        assert_eq!(e.outcome, Outcome::Done);
        assert_eq!(
            Identity::load(&f.identity_path).unwrap().unwrap().name,
            "First"
        );
    }

    #[test]
    fn a_command_interrupted_by_a_restart_is_not_run_again() {
        let mut f = Fixture::new();
        f.store.record_command(6, &CommandRecord::Started).unwrap();
        let e = f.cmd(6, Command::Ping);
        assert!(e.duplicate);
        assert!(
            matches!(e.outcome, Outcome::Failed { ref message, .. } if message.contains("interrupted"))
        );
    }

    #[test]
    fn a_newer_protocol_version_is_acked_failed_with_the_reason() {
        let mut f = Fixture::new();
        let e = f
            .handle(br#"{"v":9,"id":7,"cmd":{"type":"reboot_everything"}}"#)
            .unwrap();
        assert_eq!(e.command_id, 7);
        let Outcome::Failed { message, .. } = e.outcome else {
            panic!("not failed")
        };
        assert!(message.contains("version 9"), "{message}");
        // And it is remembered like any other id.
        assert!(
            f.handle(br#"{"v":9,"id":7,"cmd":{"type":"x"}}"#)
                .unwrap()
                .duplicate
        );
    }

    #[test]
    fn control_commands_are_deferred_recorded_and_never_run_twice() {
        let mut f = Fixture::new();
        let cmd = Command::Unblock {
            device: "aa:bb:cc:dd:ee:01".parse().unwrap(),
        };
        let raw = CommandEnvelope::new(8, cmd.clone()).encode();
        let handled = f.executor().handle(&raw).unwrap().unwrap();
        assert_eq!(
            handled,
            Handled::Deferred {
                command_id: 8,
                cmd: cmd.clone()
            }
        );
        assert_eq!(f.store.command(8).unwrap(), Some(CommandRecord::Started));
        let done = f.executor().finish(8, Outcome::Done).unwrap();
        assert_eq!(done.outcome, Outcome::Done);
        // A redelivery is answered from the record.
        let again = f.handle(&raw).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.outcome, Outcome::Done);
    }

    #[test]
    fn garbage_without_an_id_is_dropped() {
        let mut f = Fixture::new();
        assert_eq!(f.handle(b"nonsense"), None);
    }
}
