//! The agent's on-disk database (sled, in `<state>/db`); the only module that touches sled.
//!
//! # Key layout
//! ```text
//! tree "outbox"    seq (u64 BE)        -> outbox entry (cloud-link's encoding: retain, topic, envelope JSON)
//! tree "meta"      "outbox_meta"       -> next seq + dropped count (cloud-link `Meta`, 16 bytes)
//!                  "data_epoch"        -> u64 BE, the epoch stamped on every message
//!                  "command_floor"     -> u64 BE, every command id <= this was pruned from "commands"
//!                  "geoip"             -> JSON `geoip::GeoState`: the public address the portal told, the
//!                                         last location report (kept by a cleanup: it is re-sent, not data)
//! tree "commands"  command id (u64 BE) -> JSON `CommandRecord` (started, or finished with its outcome)
//! tree "data"      gathered data, wiped by a cleanup:
//!                  "dev/" vlan (u16 BE, 0 = none) mac (6 bytes) -> JSON `Device` (cloud-link inventory)
//!                  "block/" vlan (u16 BE, 0 = none) mac (6 bytes) -> JSON `BlockRecord` (cloud-link control):
//!                  a device the agent blocks; written (flushed) before a block is acknowledged, re-applied
//!                  at start (`blocking`), removed by an unblock, wiped with the rest by a cleanup
//! ```
//!
//! # Durability
//! `Ok` means durable where losing the write would break a promise: an outbox append (the message must not
//! vanish), a command record (a command must never run twice), the epoch and a cleanup are flushed before
//! returning. An outbox removal (PUBACK) is not flushed at once: losing it only re-sends a message the portal
//! drops by its seq; sled's background flush (every 500 ms) makes it durable soon after. The outbox counters
//! are made durable by the append that always follows them (and `Outbox::open` recovers the next seq from the
//! log if they lag). A flush costs one fsync of sled's log; see `flush_cost` below for the measurement.

use std::path::Path;

use outpost_cloud_link::control::{BlockRecord, DeviceRef};
use outpost_cloud_link::inventory::Device;
use outpost_cloud_link::outbox::{Meta, OutboxLog};
use outpost_cloud_link::protocol::Outcome;
use serde::{Deserialize, Serialize};

/// Executed command ids kept for deduplication; older ones are pruned (ids below the kept ones are refused).
pub const MAX_COMMAND_IDS: usize = 4096;
/// sled's page cache: its default (1 GiB) is sized for servers; an agent on a router keeps 1 MiB (the agent
/// reads its data at start and then mostly appends).
const CACHE_BYTES: u64 = 1024 * 1024;

const OUTBOX_META: &[u8] = b"outbox_meta";
const DATA_EPOCH: &[u8] = b"data_epoch";
const COMMAND_FLOOR: &[u8] = b"command_floor";
const GEOIP: &[u8] = b"geoip";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the agent database {path} is in use by another process (is the agent daemon running? stop it first)")]
    InUse { path: String },
    #[error(
        "agent database {path}: {source} (the state directory may be damaged or the disk full)"
    )]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("agent database: cannot store the {what}: its MAC is unreadable")]
    BadKey { what: String },
    #[error("agent database: cannot encode the {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("agent database: stored command record {id} is unreadable: {source}")]
    BadRecord {
        id: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// What the agent remembers about one command id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommandRecord {
    /// Recorded before running; still here after a restart means the run was interrupted.
    Started,
    Finished {
        outcome: Outcome,
    },
}

/// The open database and its trees (cheap to clone).
#[derive(Clone)]
pub struct Store {
    path: String,
    db: sled::Db,
    outbox: sled::Tree,
    meta: sled::Tree,
    commands: sled::Tree,
    data: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn from_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Store {
    /// Opens (creating) the database at `path`; fails with [`StoreError::InUse`] while another process has it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                    StoreError::InUse {
                        path: shown.clone(),
                    }
                }
                _ => StoreError::Sled {
                    path: shown.clone(),
                    source,
                },
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Sled {
                path: shown.clone(),
                source,
            })
        };
        Ok(Self {
            outbox: tree("outbox")?,
            meta: tree("meta")?,
            commands: tree("commands")?,
            data: tree("data")?,
            db,
            path: shown,
        })
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    /// The outbox log over this database, for `outpost_cloud_link::outbox::Outbox`.
    pub fn outbox_log(&self) -> OutboxTree {
        OutboxTree {
            store: self.clone(),
        }
    }

    fn meta_u64(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(key)
            .map_err(|e| self.err(e))?
            .and_then(|v| from_be(&v))
            .unwrap_or(0))
    }

    /// The data epoch stamped on every message (0 until a cleanup).
    pub fn epoch(&self) -> Result<u64, StoreError> {
        self.meta_u64(DATA_EPOCH)
    }

    /// Sets the data epoch, durably.
    pub fn set_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        self.meta
            .insert(DATA_EPOCH, &be(epoch))
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    /// The stored GeoIP state (`geoip::GeoState` as JSON), if any.
    pub fn geoip(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(GEOIP)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Replaces the GeoIP state. Not flushed: losing it in a crash only means one more lookup.
    pub fn set_geoip(&self, json: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(GEOIP, json).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What is known about command `id`: its record, or `Some(None)`-like pruned status via [`Store::command_floor`].
    pub fn command(&self, id: u64) -> Result<Option<CommandRecord>, StoreError> {
        match self.commands.get(be(id)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|source| StoreError::BadRecord { id, source }),
        }
    }

    /// Every command id at or below this was executed and then pruned from the record.
    pub fn command_floor(&self) -> Result<u64, StoreError> {
        self.meta_u64(COMMAND_FLOOR)
    }

    /// Records `id` durably, then prunes the oldest ids beyond [`MAX_COMMAND_IDS`].
    pub fn record_command(&self, id: u64, record: &CommandRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            what: format!("record of command {id}"),
            source,
        })?;
        self.commands
            .insert(be(id), bytes)
            .map_err(|e| self.err(e))?;
        self.prune_commands(MAX_COMMAND_IDS)?;
        self.flush()
    }

    fn prune_commands(&self, keep: usize) -> Result<(), StoreError> {
        let excess = self.commands.len().saturating_sub(keep);
        if excess == 0 {
            return Ok(());
        }
        let mut floor = self.command_floor()?;
        for item in self.commands.iter().take(excess) {
            let (key, _) = item.map_err(|e| self.err(e))?;
            if let Some(id) = from_be(&key) {
                floor = floor.max(id);
            }
            self.commands.remove(key).map_err(|e| self.err(e))?;
        }
        self.meta
            .insert(COMMAND_FLOOR, &be(floor))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores devices of the inventory (whole records, replacing what was there). Not flushed: losing the
    /// last half second of changes in a crash only means they are rediscovered.
    pub fn put_devices(&self, devices: &[Device]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for d in devices {
            let Some(key) = device_key(d) else {
                tracing::warn!(mac = %d.mac, "not storing a device with an unreadable MAC");
                continue;
            };
            let value = serde_json::to_vec(d).map_err(|source| StoreError::Encode {
                what: format!("device {}", d.mac),
                source,
            })?;
            batch.insert(&key[..], value);
        }
        self.data.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Every stored device (records that cannot be read are skipped with a warning).
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut out = Vec::new();
        self.for_each_device(|d| out.push(d))?;
        Ok(out)
    }

    /// Hands every stored device to `f`, one at a time (a big inventory is not read into a list first).
    pub fn for_each_device(&self, mut f: impl FnMut(Device)) -> Result<(), StoreError> {
        for item in self.data.scan_prefix(DEVICE_PREFIX) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            match serde_json::from_slice(&value) {
                Ok(d) => f(d),
                Err(e) => {
                    tracing::warn!(key = ?key, error = %e, "skipping an unreadable stored device")
                }
            }
        }
        Ok(())
    }

    /// Stores a block record durably (replacing the device's previous one).
    pub fn put_block(&self, record: &BlockRecord) -> Result<(), StoreError> {
        let Some(key) = mac_key(BLOCK_PREFIX, record.device.vlan, &record.device.mac) else {
            return Err(StoreError::BadKey {
                what: format!("block record of {}", record.device),
            });
        };
        let value = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            what: format!("block record of {}", record.device),
            source,
        })?;
        self.data.insert(key, value).map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Forgets the block record of `device`, durably; `false` when there was none.
    pub fn remove_block(&self, device: &DeviceRef) -> Result<bool, StoreError> {
        let Some(key) = mac_key(BLOCK_PREFIX, device.vlan, &device.mac) else {
            return Ok(false);
        };
        let removed = self.data.remove(key).map_err(|e| self.err(e))?.is_some();
        if removed {
            self.flush()?;
        }
        Ok(removed)
    }

    /// Every stored block record, ordered by VLAN and MAC (unreadable ones are skipped with a warning).
    pub fn blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.data.scan_prefix(BLOCK_PREFIX) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            match serde_json::from_slice(&value) {
                Ok(record) => out.push(record),
                Err(e) => {
                    tracing::warn!(key = ?key, error = %e, "skipping an unreadable stored block record")
                }
            }
        }
        Ok(out)
    }

    /// Stores one item of gathered data.
    pub fn put_data(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.data.insert(key, value).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Number of items of gathered data.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// A cleanup's share of the store: drops all gathered data, durably. The outbox loses the data messages
    /// of the old epoch through `Outbox::remove_where` (which keeps the counters and the other messages);
    /// identity, command ids and the seq counter stay.
    pub fn wipe_data(&self) -> Result<(), StoreError> {
        self.data.clear().map_err(|e| self.err(e))?;
        self.flush()
    }
}

const DEVICE_PREFIX: &[u8] = b"dev/";
const BLOCK_PREFIX: &[u8] = b"block/";

/// `prefix` + VLAN (u16 BE, 0 for none) + the 6 MAC bytes; `None` for an unreadable MAC.
fn mac_key(prefix: &[u8], vlan: Option<u16>, mac: &str) -> Option<Vec<u8>> {
    let mac = outpost_cloud_link::inventory::normalize_mac(mac)?;
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&vlan.unwrap_or(0).to_be_bytes());
    for octet in mac.split(':') {
        key.push(u8::from_str_radix(octet, 16).ok()?);
    }
    Some(key)
}

/// `dev/` + VLAN (u16 BE, 0 for none) + the 6 MAC bytes.
fn device_key(d: &Device) -> Option<[u8; 12]> {
    let mac = outpost_cloud_link::inventory::normalize_mac(&d.mac)?;
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(DEVICE_PREFIX);
    key[4..6].copy_from_slice(&d.vlan.unwrap_or(0).to_be_bytes());
    for (i, octet) in mac.split(':').enumerate() {
        key[6 + i] = u8::from_str_radix(octet, 16).ok()?;
    }
    Some(key)
}

/// [`OutboxLog`] over the store's `outbox` tree and the `outbox_meta` key.
#[derive(Debug, Clone)]
pub struct OutboxTree {
    store: Store,
}

impl OutboxLog for OutboxTree {
    type Error = StoreError;

    fn load_meta(&self) -> Result<Option<Meta>, StoreError> {
        let s = &self.store;
        Ok(s.meta
            .get(OUTBOX_META)
            .map_err(|e| s.err(e))?
            .and_then(|v| Meta::decode(&v)))
    }

    fn store_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        // Made durable by the append that always follows (see the module docs).
        let s = &self.store;
        s.meta
            .insert(OUTBOX_META, &meta.encode())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    fn append(&self, seq: u64, entry: &[u8]) -> Result<(), StoreError> {
        let s = &self.store;
        s.outbox.insert(be(seq), entry).map_err(|e| s.err(e))?;
        s.flush()
    }

    fn remove(&self, seq: u64) -> Result<Option<usize>, StoreError> {
        let s = &self.store;
        Ok(s.outbox
            .remove(be(seq))
            .map_err(|e| s.err(e))?
            .map(|v| v.len()))
    }

    fn range_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let s = &self.store;
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in s.outbox.range(be(start)..).take(limit) {
            let (k, v) = item.map_err(|e| s.err(e))?;
            if let Some(seq) = from_be(&k) {
                out.push((seq, v.to_vec()));
            }
        }
        Ok(out)
    }

    fn scan(&self) -> Result<(u64, u64, Option<u64>), StoreError> {
        let s = &self.store;
        let (mut count, mut bytes, mut last) = (0u64, 0u64, None);
        for item in s.outbox.iter() {
            let (k, v) = item.map_err(|e| s.err(e))?;
            count += 1;
            bytes += v.len() as u64;
            last = from_be(&k).or(last);
        }
        Ok((count, bytes, last))
    }

    fn oldest(&self) -> Result<Option<u64>, StoreError> {
        let s = &self.store;
        Ok(s.outbox
            .first()
            .map_err(|e| s.err(e))?
            .and_then(|(k, _)| from_be(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cloud_link::outbox::Outbox;

    fn payloads(o: &Outbox<OutboxTree>) -> Vec<(u64, String)> {
        o.pending(0, 100)
            .unwrap()
            .into_iter()
            .map(|q| (q.seq, String::from_utf8(q.entry.payload).unwrap()))
            .collect()
    }

    #[test]
    fn the_outbox_survives_a_reopen_in_order_without_reusing_seqs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut o = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
            for t in ["a", "b", "c"] {
                o.push("agents/x/up/heartbeat", false, |seq| {
                    format!("{seq}{t}").into_bytes()
                })
                .unwrap();
            }
            assert!(o.ack(2).unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        let mut o = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
        assert_eq!(payloads(&o), [(1, "1a".into()), (3, "3c".into())]);
        assert_eq!(o.depth(), 2);
        let p = o
            .push("agents/x/up/presence", true, |seq| {
                format!("{seq}d").into_bytes()
            })
            .unwrap();
        assert_eq!(p.seq, 4);
        let q = o.pending(3, 10).unwrap();
        assert_eq!(q.len(), 1);
        assert!(q[0].entry.retain);
        assert_eq!(q[0].entry.topic, "agents/x/up/presence");
    }

    #[test]
    fn a_second_open_while_in_use_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("daemon running"));
    }

    #[test]
    fn command_records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.record_command(7, &CommandRecord::Started).unwrap();
            store
                .record_command(
                    7,
                    &CommandRecord::Finished {
                        outcome: Outcome::Done,
                    },
                )
                .unwrap();
            store.record_command(8, &CommandRecord::Started).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.command(7).unwrap(),
            Some(CommandRecord::Finished {
                outcome: Outcome::Done
            })
        );
        assert_eq!(store.command(8).unwrap(), Some(CommandRecord::Started));
        assert_eq!(store.command(9).unwrap(), None);
    }

    #[test]
    fn command_ids_are_bounded_and_pruned_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in 1..=10 {
            store
                .commands
                .insert(be(id), serde_json::to_vec(&CommandRecord::Started).unwrap())
                .unwrap();
        }
        store.prune_commands(4).unwrap();
        assert_eq!(store.commands.len(), 4);
        assert_eq!(store.command_floor().unwrap(), 6);
        assert!(store.command(6).unwrap().is_none());
        assert!(store.command(7).unwrap().is_some());
    }

    #[test]
    fn cleanup_wipes_data_and_the_outboxs_data_but_keeps_ids_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut o = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
        o.push("data", false, |_| b"x".to_vec()).unwrap();
        o.push("keep", false, |_| b"y".to_vec()).unwrap();
        store.put_data(b"device/1", b"{}").unwrap();
        store.record_command(3, &CommandRecord::Started).unwrap();

        store.wipe_data().unwrap();
        assert_eq!(o.remove_where(|e| e.topic == "data").unwrap(), 1);
        store.flush().unwrap();
        store.set_epoch(2).unwrap();
        drop(o);

        let store = {
            drop(store);
            Store::open(dir.path()).unwrap()
        };
        let mut o = Outbox::open(store.outbox_log(), 1 << 20).unwrap();
        assert_eq!(payloads(&o), [(2, "y".to_owned())]);
        assert_eq!(store.data_len(), 0);
        assert_eq!(store.epoch().unwrap(), 2);
        assert_eq!(store.command(3).unwrap(), Some(CommandRecord::Started));
        assert_eq!(o.push("t", false, |_| b"z".to_vec()).unwrap().seq, 3);
    }

    #[test]
    fn devices_are_stored_by_vlan_and_mac_and_wiped_by_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let device = |vlan: Option<u16>, ip: [u8; 4]| Device {
            last_seen_ms: 2,
            ..Device::first_seen("00:1A:11:00:00:01", vlan, "lan0", Some(ip.into()), 1)
        };
        store
            .put_devices(&[device(None, [10, 0, 0, 1]), device(Some(20), [10, 0, 0, 1])])
            .unwrap();
        // The same (VLAN, MAC) replaces its record; a bad MAC is skipped.
        let mut bad = device(None, [10, 0, 0, 3]);
        bad.mac = "nope".into();
        store
            .put_devices(&[device(None, [10, 0, 0, 2]), bad])
            .unwrap();
        let stored = store.devices().unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].ipv4, Some([10, 0, 0, 2].into()));
        assert_eq!(stored[1].vlan, Some(20));
        store.wipe_data().unwrap();
        assert!(store.devices().unwrap().is_empty());
    }

    #[test]
    fn blocks_are_stored_by_vlan_and_mac_survive_a_reopen_and_are_wiped_by_cleanup() {
        use outpost_cloud_link::control::BlockMethod;
        let dir = tempfile::tempdir().unwrap();
        let record = |mac: &str, vlan: Option<u16>, since_ms: i64| BlockRecord {
            device: DeviceRef::new(mac, vlan).unwrap(),
            interface: "lan0".into(),
            method: BlockMethod::ArpPause,
            ipv4: Some([10, 0, 0, 7].into()),
            ipv6_uncovered: vec!["2001:db8::7".parse().unwrap()],
            since_ms,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .put_block(&record("00:1a:11:00:00:02", Some(20), 1))
                .unwrap();
            store
                .put_block(&record("00:1a:11:00:00:01", None, 1))
                .unwrap();
            // The same device replaces its record; devices are another prefix.
            store
                .put_block(&record("00:1A:11:00:00:01", None, 2))
                .unwrap();
            store.put_data(b"dev/x", b"{}").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let stored = store.blocks().unwrap();
        assert_eq!(
            stored,
            [
                record("00:1a:11:00:00:01", None, 2),
                record("00:1a:11:00:00:02", Some(20), 1)
            ]
        );
        let first = DeviceRef::new("00:1a:11:00:00:01", None).unwrap();
        assert!(store.remove_block(&first).unwrap());
        assert!(!store.remove_block(&first).unwrap());
        assert_eq!(store.blocks().unwrap().len(), 1);
        let mut bad = record("00:1a:11:00:00:03", None, 1);
        bad.device.mac = "nope".into();
        assert!(matches!(
            store.put_block(&bad),
            Err(StoreError::BadKey { .. })
        ));
        store.wipe_data().unwrap();
        assert!(store.blocks().unwrap().is_empty());
    }
}
