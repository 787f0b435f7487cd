//! The activation rate limit: so many attempts per minute per source address (governor's keyed GCRA), checked
//! before the code is looked at so codes cannot be guessed quickly.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Activation attempts allowed per source address.
pub struct ActivationLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl ActivationLimiter {
    /// `per_minute` attempts per minute per address, all of them usable at once.
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    /// `Ok` if `addr` may try now, else how long it must wait. An unknown address shares one bucket.
    pub fn check(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        let key = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses whose bucket is full again (called by the sweeper so memory stays bounded).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_budget() {
        let limiter = ActivationLimiter::per_minute(3);
        let a = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check(b).is_ok());
        limiter.forget_idle();
    }
}
