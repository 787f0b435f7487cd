//! The portal's sense of time: one [`Clock`] trait, the system clock, a settable dev clock and a manual one.
//!
//! Everything time-dependent (subscriptions, code expiry, `online`, history) asks a [`Clock`], so tests and
//! `outpost-portal up --dev-clock` can move time without touching the machine's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// Where the portal reads the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The dev clock: the system clock shifted by an offset that [`SettableClock::set`] changes, so time keeps
/// flowing after a jump (agents' heartbeats stay fresh).
#[derive(Debug, Default)]
pub struct SettableClock {
    offset_ms: AtomicI64,
}

impl SettableClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on [`Clock::now`] reads `now` plus the time elapsed since this call.
    pub fn set(&self, now: DateTime<Utc>) {
        let offset = now.timestamp_millis() - Utc::now().timestamp_millis();
        self.offset_ms.store(offset, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// A clock that stands still until told otherwise (tests).
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now_ms: AtomicI64::new(now.timestamp_millis()),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        self.now_ms.store(now.timestamp_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn system_clock_follows_the_machine() {
        let before = Utc::now();
        let read = SystemClock.now();
        assert!(read >= before && read <= Utc::now());
    }

    #[test]
    fn settable_clock_jumps_and_keeps_running() {
        let clock = SettableClock::new();
        let target = Utc.with_ymd_and_hms(2030, 1, 31, 23, 59, 0).unwrap();
        clock.set(target);
        let first = clock.now();
        assert!((first - target).num_seconds().abs() < 2, "read {first}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            clock.now() > first,
            "the dev clock must keep running after a jump"
        );
    }

    #[test]
    fn manual_clock_stands_still_until_moved() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(25));
        assert_eq!(
            clock.now(),
            Utc.with_ymd_and_hms(2026, 1, 2, 1, 0, 0).unwrap()
        );
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}
