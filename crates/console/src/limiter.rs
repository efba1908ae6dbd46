//! Failed logins per client address: after `max` failures within `window`,
//! further attempts are refused until the window ends. The table is bounded:
//! when full, expired entries go first, then the entry whose window started
//! earliest, so rotating addresses cannot grow it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
}

#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration, capacity: usize) -> Self {
        LoginLimiter {
            max: max.max(1),
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// `Err(wait)` when `ip` has used up its failures in the current window.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.entries.get(&ip) {
            Some(e) if e.failures >= self.max => {
                let ends = e.since + self.window;
                match ends.checked_duration_since(now) {
                    Some(wait) if !wait.is_zero() => Err(wait),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let window = self.window;
        if let Some(e) = self.entries.get_mut(&ip) {
            if now.duration_since(e.since) >= window {
                *e = Entry {
                    failures: 1,
                    since: now,
                };
            } else {
                e.failures = e.failures.saturating_add(1);
            }
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        self.entries.insert(
            ip,
            Entry {
                failures: 1,
                since: now,
            },
        );
    }

    /// A successful login clears the address's failures.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, e| now.duration_since(e.since) < window);
        if self.entries.len() < self.capacity {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.since)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.entries.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn refuses_after_max_failures_until_the_window_ends() {
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        let mut limiter = LoginLimiter::new(3, window, 16);
        for _ in 0..3 {
            assert!(limiter.check(ip(1), t0).is_ok());
            limiter.failed(ip(1), t0);
        }
        let wait = limiter
            .check(ip(1), t0 + Duration::from_secs(100))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(200));
        assert!(
            limiter.check(ip(2), t0).is_ok(),
            "other addresses unaffected"
        );
        assert!(limiter.check(ip(1), t0 + window).is_ok());
        limiter.failed(ip(1), t0 + window);
        assert!(limiter.check(ip(1), t0 + window).is_ok(), "a new window");
    }

    #[test]
    fn success_clears_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(1, Duration::from_secs(60), 8);
        limiter.failed(ip(1), t0);
        assert!(limiter.check(ip(1), t0).is_err());
        limiter.succeeded(ip(1));
        assert!(limiter.check(ip(1), t0).is_ok());
        for n in 0..1000 {
            limiter.failed(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(limiter.len(), 8);
        assert!(limiter.check(ip(999), t0 + Duration::from_secs(1)).is_err());
        assert!(limiter.check(ip(0), t0).is_ok(), "the oldest was evicted");
    }
}
