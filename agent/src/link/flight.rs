//! Which outbox message each in-flight MQTT packet id carries: pure bookkeeping for the publish window.
//!
//! rumqttc assigns packet ids when its event loop takes a publish and reports them as
//! `Outgoing::Publish(pkid)` in the order the publishes were handed over; a `PubAck(pkid)` then names the
//! outbox seq to remove. Nothing survives a reconnect: the outbox is the only source of retransmission.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
pub struct InFlight {
    /// Handed to the client, packet id not yet known (in order).
    unassigned: VecDeque<u64>,
    /// Sent, waiting for PUBACK.
    by_pkid: HashMap<u16, u64>,
    /// The highest seq handed over on this connection; the next page of the outbox starts after it.
    last_sent: u64,
}

impl InFlight {
    /// `seq` was handed to the client.
    pub fn handed_over(&mut self, seq: u64) {
        self.unassigned.push_back(seq);
        self.last_sent = self.last_sent.max(seq);
    }

    /// The event loop reported `Outgoing::Publish(pkid)`: the oldest unassigned message got `pkid`.
    pub fn published(&mut self, pkid: u16) -> Option<u64> {
        let seq = self.unassigned.pop_front()?;
        self.by_pkid.insert(pkid, seq);
        Some(seq)
    }

    /// The broker acknowledged `pkid`: the seq that can leave the outbox.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        self.by_pkid.remove(&pkid)
    }

    /// Messages handed over and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unassigned.len() + self.by_pkid.len()
    }

    pub fn last_sent(&self) -> u64 {
        self.last_sent
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_map_back_to_seqs_in_publish_order() {
        let mut f = InFlight::default();
        for seq in [4, 5, 6] {
            f.handed_over(seq);
        }
        assert_eq!(f.last_sent(), 6);
        assert_eq!(f.published(1), Some(4));
        assert_eq!(f.published(2), Some(5));
        assert_eq!(f.in_flight(), 3);
        assert_eq!(f.acked(2), Some(5));
        assert_eq!(f.acked(2), None, "a repeated PUBACK removes nothing");
        assert_eq!(f.published(3), Some(6));
        assert_eq!(f.acked(1), Some(4));
        assert_eq!(f.acked(3), Some(6));
        assert!(f.is_empty());
        assert_eq!(
            f.published(9),
            None,
            "an unexpected publish event maps to nothing"
        );
    }

    #[test]
    fn reused_packet_ids_follow_the_latest_message() {
        let mut f = InFlight::default();
        f.handed_over(1);
        f.published(1);
        assert_eq!(f.acked(1), Some(1));
        f.handed_over(2);
        f.published(1);
        assert_eq!(f.acked(1), Some(2));
    }
}
