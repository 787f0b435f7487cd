//! Jittered exponential backoff for reconnecting: pure state, the caller owns the clock and the sleeping.
//!
//! rumqttc reconnects as soon as its event loop is polled again, so both sides wrap their loops in this.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Doubles from `initial` up to `max`; each delay is drawn uniformly from the upper half of the current step
/// ("equal jitter"), so a fleet that lost the broker at once does not come back at once, and no retry is instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, with `unit` in `[0, 1)` choosing where in the jitter window it falls.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let step = self
            .initial
            .checked_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delay before the next attempt, jittered from the process's random source.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(random_unit())
    }

    /// Call after a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A value in `[0, 1)` from std's randomly keyed hasher: plenty for jitter, no RNG dependency.
fn random_unit() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_the_jitter_window_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let lows: Vec<_> = (0..6).map(|_| b.next_with(0.0).as_millis()).collect();
        assert_eq!(lows, [50, 100, 200, 400, 500, 500]);
        b.reset();
        let highs: Vec<_> = (0..6).map(|_| b.next_with(1.0).as_millis()).collect();
        assert_eq!(highs, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..5 {
            b.next_with(0.5);
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_with(1.0), Duration::from_millis(100));
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(300));
        }
    }

    #[test]
    fn random_jitter_spreads() {
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let distinct = draws
            .iter()
            .map(|u| (u * 1000.0) as u32)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 32, "jitter is not random: {draws:?}");
    }
}
