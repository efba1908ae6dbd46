//! Login attempts per client address: at most `max` attempts that did not
//! succeed within `window`; further attempts are refused until the window
//! ends.
//!
//! An attempt is *reserved* before the password is verified, under the same
//! lock as the check, so concurrent attempts cannot all pass a check that
//! only counts finished failures: 60 concurrent wrong logins against a limit
//! of 10 reach the password hash 10 times. A success gives its reservation
//! back; everything else (a wrong password, an error, a client that hung up)
//! keeps it.
//!
//! The table is bounded: when full, expired entries go first, then the
//! entry whose window started earliest, so rotating addresses cannot grow it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    attempts: u32,
    since: Instant,
}

#[derive(Debug)]
struct Table {
    max: u32,
    window: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
}

#[derive(Debug)]
pub struct LoginLimiter {
    table: Mutex<Table>,
}

/// A reserved attempt. It stays counted unless [`Attempt::refund`] gives
/// it back: a request dropped mid-verification (the client hung up) must not
/// free its place while the hash is still being computed.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    ip: IpAddr,
    /// The window it was counted in: a refund after that window ended must
    /// not reduce the count of the next one.
    since: Instant,
}

impl Attempt<'_> {
    /// The login succeeded: the attempt no longer counts.
    pub fn refund(self) {
        self.limiter.lock().refund(self.ip, self.since);
    }
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration, capacity: usize) -> Self {
        LoginLimiter {
            table: Mutex::new(Table {
                max: max.max(1),
                window,
                capacity: capacity.max(1),
                entries: HashMap::new(),
            }),
        }
    }

    /// Reserves one attempt for `ip`, or `Err(wait)` when its attempts in
    /// the current window are used up.
    pub fn reserve(&self, ip: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
        let since = self.lock().reserve(ip, now)?;
        Ok(Attempt {
            limiter: self,
            ip,
            since,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table holds plain counts: a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Table {
    /// The start of the window the attempt is counted in.
    fn reserve(&mut self, ip: IpAddr, now: Instant) -> Result<Instant, Duration> {
        let (max, window) = (self.max, self.window);
        if let Some(e) = self.entries.get_mut(&ip) {
            if now.saturating_duration_since(e.since) >= window {
                *e = Entry {
                    attempts: 1,
                    since: now,
                };
                return Ok(now);
            }
            if e.attempts >= max {
                return Err((e.since + window).saturating_duration_since(now));
            }
            e.attempts += 1;
            return Ok(e.since);
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        self.entries.insert(
            ip,
            Entry {
                attempts: 1,
                since: now,
            },
        );
        Ok(now)
    }

    fn refund(&mut self, ip: IpAddr, since: Instant) {
        let Some(e) = self.entries.get_mut(&ip) else {
            return;
        };
        if e.since != since {
            return;
        }
        e.attempts = e.attempts.saturating_sub(1);
        if e.attempts == 0 {
            self.entries.remove(&ip);
        }
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.since) < window);
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
    fn reserved_attempts_count_before_they_finish() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(3, Duration::from_secs(300), 16);
        let held: Vec<_> = (0..3)
            .map(|_| limiter.reserve(ip(1), t0).unwrap())
            .collect();
        assert!(
            limiter.reserve(ip(1), t0).is_err(),
            "three attempts in flight use the limit up"
        );
        held.into_iter().for_each(Attempt::refund);
        assert!(
            limiter.reserve(ip(1), t0).is_ok(),
            "attempts given back free their places"
        );
    }

    #[test]
    fn refuses_after_max_failures_until_the_window_ends() {
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        let limiter = LoginLimiter::new(3, window, 16);
        for _ in 0..3 {
            assert!(limiter.reserve(ip(1), t0).is_ok());
        }
        let wait = limiter
            .reserve(ip(1), t0 + Duration::from_secs(100))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(200));
        assert!(
            limiter.reserve(ip(2), t0).is_ok(),
            "other addresses unaffected"
        );
        assert!(limiter.reserve(ip(1), t0 + window).is_ok());
        assert!(limiter.reserve(ip(1), t0 + window).is_ok(), "a new window");
    }

    #[test]
    fn a_refund_from_an_ended_window_leaves_the_next_alone() {
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        let limiter = LoginLimiter::new(2, window, 16);
        let old = limiter.reserve(ip(1), t0).unwrap();
        assert!(limiter.reserve(ip(1), t0 + window).is_ok());
        assert!(limiter.reserve(ip(1), t0 + window).is_ok());
        old.refund();
        assert!(limiter.reserve(ip(1), t0 + window).is_err());
    }

    #[test]
    fn success_refunds_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(1, Duration::from_secs(60), 8);
        limiter.reserve(ip(1), t0).unwrap().refund();
        assert_eq!(limiter.len(), 0, "a refunded attempt leaves no entry");
        for n in 0..1000 {
            let at = t0 + Duration::from_millis(u64::from(n));
            assert!(limiter.reserve(ip(n), at).is_ok());
        }
        assert_eq!(limiter.len(), 8);
        assert!(
            limiter
                .reserve(ip(999), t0 + Duration::from_secs(1))
                .is_err()
        );
        assert!(limiter.reserve(ip(0), t0).is_ok(), "the oldest was evicted");
    }
}
