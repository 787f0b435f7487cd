//! Growing waits after failed sign-ins, per account and per source address, on top of the flat per-minute
//! limit (`SignInLimiter`): the first [`FREE_FAILURES`] failures cost nothing; each one after that locks
//! the account (and the address) out for twice as long as the one before, from 2 s up to [`MAX_WAIT`]. A
//! successful sign-in clears the account's count. Memory stays bounded: past [`MAX_KEYS`] keys the ones no
//! longer locked are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a key may have before waits start.
pub const FREE_FAILURES: u32 = 2;
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Keys kept before unlocked ones are forgotten.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
}

/// The wait after the `failures`-th failure (none for the free ones).
pub fn wait_after(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES).filter(|n| *n > 0)?;
    let secs = 1u64.checked_shl(over.min(20)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

/// Failure counts and lock-outs by account and by address.
#[derive(Debug, Default)]
pub struct FailureBackoff {
    keys: Mutex<HashMap<String, Entry>>,
}

fn keys(addr: Option<IpAddr>, account: &str) -> [String; 2] {
    [
        format!("account:{}", account.trim().to_lowercase()),
        format!(
            "address:{}",
            addr.map(|a| a.to_string()).unwrap_or_default()
        ),
    ]
}

impl FailureBackoff {
    /// `Ok` if neither the account nor the address is locked out at `now`, else how long is left.
    pub fn check(&self, addr: Option<IpAddr>, account: &str, now: Instant) -> Result<(), Duration> {
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys(addr, account)
            .iter()
            .filter_map(|k| map.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in against the account and the address.
    pub fn failed(&self, addr: Option<IpAddr>, account: &str, now: Instant) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_KEYS {
            map.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
        }
        for key in keys(addr, account) {
            let entry = map.entry(key).or_insert(Entry {
                failures: 0,
                locked_until: None,
            });
            entry.failures = entry.failures.saturating_add(1);
            entry.locked_until = wait_after(entry.failures).map(|w| now + w);
        }
    }

    /// A successful sign-in: the account starts afresh (the address keeps its count).
    pub fn succeeded(&self, account: &str) {
        let [account_key, _] = keys(None, account);
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        assert_eq!(wait_after(1), None);
        assert_eq!(wait_after(2), None);
        assert_eq!(wait_after(3), Some(Duration::from_secs(2)));
        assert_eq!(wait_after(4), Some(Duration::from_secs(4)));
        assert_eq!(wait_after(9), Some(Duration::from_secs(128)));
        assert_eq!(wait_after(12), Some(MAX_WAIT));
        assert_eq!(wait_after(u32::MAX), Some(MAX_WAIT));
    }

    #[test]
    fn an_account_is_locked_for_a_while_then_cleared_by_success() {
        let b = FailureBackoff::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.check(Some(ip), "Ann@example.com", t0).is_ok());
            b.failed(Some(ip), "ann@example.com", t0);
        }
        assert_eq!(
            b.check(Some(other), "ann@example.com", t0),
            Err(Duration::from_secs(2)),
            "the account is locked from any address"
        );
        assert_eq!(
            b.check(Some(ip), "bob@example.com", t0),
            Err(Duration::from_secs(2)),
            "and the address for any account"
        );
        let later = t0 + Duration::from_secs(2);
        assert!(b.check(Some(other), "ann@example.com", later).is_ok());
        b.failed(Some(other), "ann@example.com", later);
        assert_eq!(
            b.check(Some(other), "ann@example.com", later),
            Err(Duration::from_secs(4))
        );
        b.succeeded("ann@example.com");
        assert!(b.check(Some(other), "ann@example.com", later).is_ok());
        assert!(b
            .check(Some(ip), "ann@example.com", later + Duration::from_secs(1))
            .is_ok());
    }
}
