//! Runs the portal's commands at most once each: decode, dedupe by id (recorded in sled before running, so
//! also across restarts), run, record the outcome. The caller queues the returned outcome as an `Ack`.
//!
//! Device-control commands (block, unblock, power), updates, settings, restarts and diagnostics take seconds
//! or need the link's state and talk to the network: they are handed
//! back as [`Handled::Deferred`] once recorded as started; the caller runs them off its loop and records
//! their outcome with [`Executor::finish`].

use std::path::Path;

use outpost_cloud_link::outbox::Outbox;
use outpost_cloud_link::protocol::{Command, CommandEnvelope, Outcome, PROTOCOL_VERSION};
use serde::Deserialize;

use crate::identity::Identity;
use crate::store::{CommandRecord, OutboxTree, Store, StoreError};

/// Longest name accepted by a rename.
const MAX_NAME_LEN: usize = 200;

/// Why a command could not be handled at all (storage trouble, not a failed command).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cleanup could not clear the outbox: {0}")]
    Outbox(String),
}

/// A handled command: the id and the outcome to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub command_id: u64,
    pub outcome: Outcome,
    /// `true` when the id had been seen before and nothing ran now.
    pub duplicate: bool,
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

/// Runs commands against the store, the outbox and the identity file.
pub struct Executor<'a> {
    pub store: &'a Store,
    pub outbox: &'a mut Outbox<OutboxTree>,
    pub identity: &'a mut Identity,
    pub identity_path: &'a Path,
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
            })));
        }
        self.store.record_command(id, &CommandRecord::Started)?;
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
        Ok(Some(Handled::Done(self.finish(id, outcome)?)))
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
            Command::Cleanup { epoch } => {
                self.store.wipe_data()?;
                self.outbox
                    .clear()
                    .map_err(|e| ExecError::Outbox(e.to_string()))?;
                let current = self.store.epoch()?;
                self.store.set_epoch(current.max(epoch))?;
                tracing::info!(
                    epoch = current.max(epoch),
                    "cleanup: local data and outbox wiped"
                );
                Outcome::Done
            }
        };
        tracing::info!(command_id = id, command = kind, outcome = ?outcome, "command executed");
        Ok(outcome)
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

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        outbox: Outbox<OutboxTree>,
        identity: Identity,
        identity_path: std::path::PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db")).unwrap();
            let outbox = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
            let identity_path = dir.path().join("identity.json");
            let identity = sample();
            identity.save(&identity_path).unwrap();
            Self {
                _dir: dir,
                store,
                outbox,
                identity,
                identity_path,
            }
        }

        fn reopen(self) -> Self {
            let Fixture {
                _dir,
                store,
                outbox,
                identity,
                identity_path,
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
            }
        }

        fn executor(&mut self) -> Executor<'_> {
            Executor {
                store: &self.store,
                outbox: &mut self.outbox,
                identity: &mut self.identity,
                identity_path: &self.identity_path,
            }
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

    #[test]
    fn cleanup_wipes_data_and_outbox_and_sets_the_epoch() {
        let mut f = Fixture::new();
        f.store.put_data(b"k", b"v").unwrap();
        f.outbox.push("t", false, |_| b"old".to_vec()).unwrap();
        let next = f.outbox.next_seq();
        let e = f.cmd(4, Command::Cleanup { epoch: 3 });
        assert_eq!(e.outcome, Outcome::Done);
        assert_eq!(f.store.data_len(), 0);
        assert_eq!(f.outbox.depth(), 0);
        assert_eq!(
            f.outbox.next_seq(),
            next,
            "sequence numbers are never reused"
        );
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
