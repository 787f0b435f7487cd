//! The agent's outbox: a bounded, persistent FIFO; a message leaves it only when the broker has PUBACKed it.
//!
//! Every message gets the next sequence number (never reused, also across restarts), which it also carries
//! in its [`Envelope`](crate::protocol::Envelope) so the portal can drop duplicates. When the queued bytes
//! would exceed the bound, the oldest messages are dropped and counted, so the newest state always fits.
//! Storage is the [`OutboxLog`] trait: the agent implements it in its one store module (sled);
//! [`MemoryLog`] serves tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Where the outbox keeps its entries and counters. Implementations must be durable when they return `Ok`.
pub trait OutboxLog {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored counters, or `None` for a new log.
    fn load_meta(&self) -> Result<Option<Meta>, Self::Error>;
    fn store_meta(&self, meta: &Meta) -> Result<(), Self::Error>;
    /// Stores `entry` under `seq`; `seq` is greater than every stored one.
    fn append(&self, seq: u64, entry: &[u8]) -> Result<(), Self::Error>;
    /// Removes `seq`, returning the size of what was stored, if anything was.
    fn remove(&self, seq: u64) -> Result<Option<usize>, Self::Error>;
    /// Up to `limit` entries with a sequence number greater than `after`, oldest first.
    fn range_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Self::Error>;
    /// Number of entries, their total size, and the highest sequence number stored.
    fn scan(&self) -> Result<(u64, u64, Option<u64>), Self::Error>;
    /// The oldest entry's sequence number.
    fn oldest(&self) -> Result<Option<u64>, Self::Error>;
}

/// Counters kept beside the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// The sequence number the next message gets.
    pub next_seq: u64,
    /// Messages dropped to stay under the bound, ever.
    pub dropped: u64,
}

impl Meta {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        out[8..].copy_from_slice(&self.dropped.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let next_seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let dropped = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { next_seq, dropped })
    }
}

/// A queued message: where it goes and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Entry {
    /// `[retain: u8][topic length: u16 BE][topic][payload]`.
    fn encode(&self) -> Vec<u8> {
        let topic = self.topic.as_bytes();
        let mut out = Vec::with_capacity(3 + topic.len() + self.payload.len());
        out.push(u8::from(self.retain));
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let retain = *bytes.first()? != 0;
        let len = u16::from_be_bytes(bytes.get(1..3)?.try_into().ok()?) as usize;
        let topic = String::from_utf8(bytes.get(3..3 + len)?.to_vec()).ok()?;
        let payload = bytes.get(3 + len..)?.to_vec();
        Some(Self {
            topic,
            retain,
            payload,
        })
    }
}

/// A message waiting for its PUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub entry: Entry,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError<E: std::error::Error + 'static> {
    #[error("outbox storage failed: {0}")]
    Storage(#[source] E),
    #[error("message of {size} bytes is larger than the whole outbox ({max} bytes); raise outbox_max_bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("outbox entry {seq} is unreadable; the state directory may be damaged")]
    Corrupt { seq: u64 },
    #[error("topic of {0} bytes is too long")]
    TopicTooLong(usize),
}

/// The bounded FIFO over a log.
#[derive(Debug)]
pub struct Outbox<L> {
    log: L,
    max_bytes: u64,
    meta: Meta,
    depth: u64,
    bytes: u64,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub seq: u64,
    /// Older messages dropped to make room for this one.
    pub dropped: u64,
}

impl<L: OutboxLog> Outbox<L> {
    /// Opens the outbox over `log`, bounded to `max_bytes` of stored entries.
    pub fn open(log: L, max_bytes: u64) -> Result<Self, OutboxError<L::Error>> {
        let stored = log
            .load_meta()
            .map_err(OutboxError::Storage)?
            .unwrap_or(Meta {
                next_seq: 1,
                dropped: 0,
            });
        let (depth, bytes, last) = log.scan().map_err(OutboxError::Storage)?;
        // The counter is stored before each append, but take the log's word too if they disagree.
        let next_seq = stored.next_seq.max(last.map_or(1, |s| s + 1)).max(1);
        Ok(Self {
            log,
            max_bytes,
            meta: Meta { next_seq, ..stored },
            depth,
            bytes,
        })
    }

    /// Queues a message; `make` builds the payload from the sequence number it is given.
    pub fn push(
        &mut self,
        topic: &str,
        retain: bool,
        make: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Pushed, OutboxError<L::Error>> {
        if topic.len() > u16::MAX as usize {
            return Err(OutboxError::TopicTooLong(topic.len()));
        }
        let seq = self.meta.next_seq;
        let entry = Entry {
            topic: topic.to_owned(),
            retain,
            payload: make(seq),
        }
        .encode();
        let size = entry.len() as u64;
        if size > self.max_bytes {
            return Err(OutboxError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let mut dropped = 0;
        while self.bytes + size > self.max_bytes {
            let Some(oldest) = self.log.oldest().map_err(OutboxError::Storage)? else {
                break;
            };
            if let Some(n) = self.log.remove(oldest).map_err(OutboxError::Storage)? {
                self.depth -= 1;
                self.bytes -= n as u64;
                dropped += 1;
            }
        }
        self.meta.next_seq = seq + 1;
        self.meta.dropped += dropped;
        self.log
            .store_meta(&self.meta)
            .map_err(OutboxError::Storage)?;
        self.log.append(seq, &entry).map_err(OutboxError::Storage)?;
        self.depth += 1;
        self.bytes += size;
        Ok(Pushed { seq, dropped })
    }

    /// Up to `limit` queued messages after sequence number `after` (0 for the oldest), oldest first.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<Queued>, OutboxError<L::Error>> {
        self.log
            .range_after(after, limit)
            .map_err(OutboxError::Storage)?
            .into_iter()
            .map(|(seq, raw)| {
                Entry::decode(&raw)
                    .map(|entry| Queued { seq, entry })
                    .ok_or(OutboxError::Corrupt { seq })
            })
            .collect()
    }

    /// The broker has the message `seq`: forget it. Returns whether it was still queued.
    pub fn ack(&mut self, seq: u64) -> Result<bool, OutboxError<L::Error>> {
        match self.log.remove(seq).map_err(OutboxError::Storage)? {
            Some(n) => {
                self.depth -= 1;
                self.bytes -= n as u64;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes the queued messages `doomed` picks and keeps the others in their order (a cleanup drops the
    /// data of the epoch it ends, not the acknowledgements or heartbeats queued beside it). The counters stay,
    /// so sequence numbers are never reused, and the removed messages are not counted as dropped (that count
    /// is for overflow). Returns how many were removed. Removals are as durable as a PUBACK's (see the log);
    /// a caller that needs them on disk at once flushes the log itself.
    pub fn remove_where(
        &mut self,
        mut doomed: impl FnMut(&Entry) -> bool,
    ) -> Result<u64, OutboxError<L::Error>> {
        const PAGE: usize = 256;
        let mut after = 0;
        let mut removed = 0;
        loop {
            let page = self
                .log
                .range_after(after, PAGE)
                .map_err(OutboxError::Storage)?;
            let Some(&(last, _)) = page.last() else {
                return Ok(removed);
            };
            for (seq, raw) in &page {
                let entry = Entry::decode(raw).ok_or(OutboxError::Corrupt { seq: *seq })?;
                if !doomed(&entry) {
                    continue;
                }
                if let Some(n) = self.log.remove(*seq).map_err(OutboxError::Storage)? {
                    self.depth -= 1;
                    self.bytes -= n as u64;
                    removed += 1;
                }
            }
            after = last;
        }
    }

    pub fn depth(&self) -> u64 {
        self.depth
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dropped(&self) -> u64 {
        self.meta.dropped
    }

    /// The sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.meta.next_seq
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Changes the bound (new settings from the portal). A smaller bound drops nothing at once: the oldest
    /// messages give way at the next push, as always.
    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }
}

/// An in-memory [`OutboxLog`] for tests; the agent's is sled-backed.
#[derive(Debug, Default)]
pub struct MemoryLog {
    inner: Mutex<MemoryState>,
}

type MemoryState = (Option<Meta>, BTreeMap<u64, Vec<u8>>);

/// [`MemoryLog`] never fails.
#[derive(Debug, thiserror::Error)]
#[error("memory log cannot fail")]
pub struct Infallible;

impl MemoryLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl OutboxLog for MemoryLog {
    type Error = Infallible;

    fn load_meta(&self) -> Result<Option<Meta>, Infallible> {
        Ok(self.lock().0)
    }
    fn store_meta(&self, meta: &Meta) -> Result<(), Infallible> {
        self.lock().0 = Some(*meta);
        Ok(())
    }
    fn append(&self, seq: u64, entry: &[u8]) -> Result<(), Infallible> {
        self.lock().1.insert(seq, entry.to_vec());
        Ok(())
    }
    fn remove(&self, seq: u64) -> Result<Option<usize>, Infallible> {
        Ok(self.lock().1.remove(&seq).map(|v| v.len()))
    }
    fn range_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Infallible> {
        Ok(self
            .lock()
            .1
            .range(after + 1..)
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }
    fn scan(&self) -> Result<(u64, u64, Option<u64>), Infallible> {
        let g = self.lock();
        Ok((
            g.1.len() as u64,
            g.1.values().map(|v| v.len() as u64).sum(),
            g.1.keys().next_back().copied(),
        ))
    }
    fn oldest(&self) -> Result<Option<u64>, Infallible> {
        Ok(self.lock().1.keys().next().copied())
    }
}

impl<T: OutboxLog> OutboxLog for &T {
    type Error = T::Error;
    fn load_meta(&self) -> Result<Option<Meta>, Self::Error> {
        (**self).load_meta()
    }
    fn store_meta(&self, meta: &Meta) -> Result<(), Self::Error> {
        (**self).store_meta(meta)
    }
    fn append(&self, seq: u64, entry: &[u8]) -> Result<(), Self::Error> {
        (**self).append(seq, entry)
    }
    fn remove(&self, seq: u64) -> Result<Option<usize>, Self::Error> {
        (**self).remove(seq)
    }
    fn range_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Self::Error> {
        (**self).range_after(after, limit)
    }
    fn scan(&self) -> Result<(u64, u64, Option<u64>), Self::Error> {
        (**self).scan()
    }
    fn oldest(&self) -> Result<Option<u64>, Self::Error> {
        (**self).oldest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &mut Outbox<&MemoryLog>, text: &str) -> Pushed {
        o.push("agents/a/up/heartbeat", false, |seq| {
            format!("{seq}:{text}").into_bytes()
        })
        .unwrap()
    }

    fn payloads(o: &Outbox<&MemoryLog>) -> Vec<String> {
        o.pending(0, 100)
            .unwrap()
            .into_iter()
            .map(|q| String::from_utf8(q.entry.payload).unwrap())
            .collect()
    }

    #[test]
    fn fifo_until_acked() {
        let log = MemoryLog::default();
        let mut o = Outbox::open(&log, 10_000).unwrap();
        assert_eq!(push(&mut o, "a").seq, 1);
        assert_eq!(push(&mut o, "b").seq, 2);
        assert_eq!(payloads(&o), ["1:a", "2:b"]);
        assert!(o.ack(1).unwrap());
        assert!(
            !o.ack(1).unwrap(),
            "a second PUBACK for the same message is harmless"
        );
        assert_eq!(payloads(&o), ["2:b"]);
        assert_eq!(o.depth(), 1);
    }

    #[test]
    fn pending_pages_after_a_sequence_number() {
        let log = MemoryLog::default();
        let mut o = Outbox::open(&log, 10_000).unwrap();
        for t in ["a", "b", "c"] {
            push(&mut o, t);
        }
        let page: Vec<u64> = o.pending(1, 1).unwrap().iter().map(|q| q.seq).collect();
        assert_eq!(page, [2]);
    }

    #[test]
    fn survives_a_restart_without_reusing_sequence_numbers() {
        let log = MemoryLog::default();
        {
            let mut o = Outbox::open(&log, 10_000).unwrap();
            push(&mut o, "a");
            push(&mut o, "b");
            o.ack(2).unwrap();
        }
        let mut o = Outbox::open(&log, 10_000).unwrap();
        assert_eq!(o.depth(), 1);
        assert_eq!(payloads(&o), ["1:a"]);
        assert_eq!(push(&mut o, "c").seq, 3);
    }

    #[test]
    fn sequence_numbers_continue_when_meta_lags_the_log() {
        let log = MemoryLog::default();
        log.append(
            7,
            &Entry {
                topic: "t".into(),
                retain: false,
                payload: vec![],
            }
            .encode(),
        )
        .unwrap();
        let mut o = Outbox::open(&log, 10_000).unwrap();
        assert_eq!(push(&mut o, "x").seq, 8);
    }

    #[test]
    fn the_bound_drops_oldest_first_and_counts() {
        let log = MemoryLog::default();
        let one = Entry {
            topic: "agents/a/up/heartbeat".into(),
            retain: false,
            payload: b"1:a".to_vec(),
        }
        .encode()
        .len() as u64;
        let mut o = Outbox::open(&log, one * 2).unwrap();
        push(&mut o, "a");
        push(&mut o, "b");
        let p = push(&mut o, "c");
        assert_eq!(p.dropped, 1);
        assert_eq!(o.dropped(), 1);
        assert_eq!(payloads(&o), ["2:b", "3:c"]);
        assert!(o.bytes() <= one * 2);
        assert_eq!(
            Outbox::open(&log, one * 2).unwrap().dropped(),
            1,
            "the drop count is persistent"
        );
        // A smaller bound (new settings) takes effect at the next push.
        o.set_max_bytes(one);
        assert_eq!(o.max_bytes(), one);
        assert_eq!(push(&mut o, "d").dropped, 2);
        assert_eq!(payloads(&o), ["4:d"]);
    }

    #[test]
    fn a_message_larger_than_the_bound_is_refused() {
        let log = MemoryLog::default();
        let mut o = Outbox::open(&log, 10).unwrap();
        let err = o.push("t", false, |_| vec![0; 64]).unwrap_err();
        assert!(matches!(err, OutboxError::TooLarge { max: 10, .. }));
        assert_eq!(o.depth(), 0);
    }

    #[test]
    fn remove_where_keeps_the_rest_in_order_and_the_accounting_right() {
        let log = MemoryLog::default();
        let mut o = Outbox::open(&log, 1 << 20).unwrap();
        // More than one page of the scan, alternating kept and removed messages.
        for i in 0..600 {
            let topic = if i % 3 == 0 {
                "agents/a/up/report"
            } else {
                "agents/a/up/ack"
            };
            o.push(topic, false, |seq| format!("{seq}:{i}").into_bytes())
                .unwrap();
        }
        let removed = o.remove_where(|e| e.topic.ends_with("/report")).unwrap();
        assert_eq!(removed, 200);
        let left = o.pending(0, 1000).unwrap();
        assert_eq!(left.len(), 400);
        assert!(left.iter().all(|q| q.entry.topic.ends_with("/ack")));
        assert!(
            left.windows(2).all(|w| w[0].seq < w[1].seq),
            "the kept messages keep their order"
        );
        assert_eq!(o.depth(), 400);
        let reopened = Outbox::open(&log, 1 << 20).unwrap();
        assert_eq!(
            (o.depth(), o.bytes()),
            (reopened.depth(), reopened.bytes()),
            "the running byte count matches the stored entries"
        );
        assert_eq!(o.dropped(), 0, "a removal is not an overflow");
        assert_eq!(push(&mut o, "next").seq, 601, "sequence numbers go on");
    }

    #[test]
    fn entries_keep_topic_and_retain() {
        let e = Entry {
            topic: "agents/x/up/presence".into(),
            retain: true,
            payload: b"{}".to_vec(),
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode(&[1, 0]), None);
    }
}
