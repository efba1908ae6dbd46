//! Risk-feature values read on every request (the state's epoch, when an id
//! was first seen, a clearance's environment record, a device refused at the
//! check) answered on this node for a short while after Redis last gave them.
//!
//! These keys are written once and read on every request of their subject,
//! so without a local copy the risk stage would cost a round trip per
//! request for an answer that almost never changes. A copy is used for
//! `max_age` (the flush interval, at most a second, the staleness the issue
//! allows risk features), then asked again. Security state never comes from
//! here: only the features tier is cached. Bounded: least recently used
//! copies go first.

use std::time::{Duration, Instant};

use super::sharded::ShardedLru;

/// Values larger than this are not copied: features are small.
const MAX_VALUE_BYTES: usize = 1024;

struct Copy {
    value: Option<Box<[u8]>>,
    fetched: Instant,
}

pub(crate) struct ValueCache {
    copies: ShardedLru<Copy>,
    max_age: Duration,
}

impl ValueCache {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        ValueCache {
            copies: ShardedLru::new(capacity, 0x2b99_f0c1_8d3e_4a57),
            max_age,
        }
    }

    /// The value Redis gave for `key` less than `max_age` ago (`Some(None)`:
    /// it had none), or `None` when Redis must be asked.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<Option<Vec<u8>>> {
        let mut shard = self.copies.shard(key);
        let copy = shard.get(key)?;
        if now.saturating_duration_since(copy.fetched) >= self.max_age {
            shard.pop(key);
            return None;
        }
        Some(copy.value.as_deref().map(<[u8]>::to_vec))
    }

    /// What Redis holds for `key` as of `now`.
    pub(crate) fn learn(&self, key: &str, value: Option<&[u8]>, now: Instant) {
        if value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return self.forget(key);
        }
        let copy = Copy {
            value: value.map(Box::from),
            fetched: now,
        };
        self.copies.push(&mut self.copies.shard(key), key, copy);
    }

    /// The value is unknown (a write whose result is not known).
    pub(crate) fn forget(&self, key: &str) {
        self.copies.shard(key).pop(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.copies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_answer_until_they_are_too_old() {
        let t0 = Instant::now();
        let cache = ValueCache::new(64, Duration::from_millis(500));
        assert_eq!(cache.get("rk:fs:dv:a", t0), None);
        cache.learn("rk:fs:dv:a", Some(b"v1"), t0);
        cache.learn("rk:epoch", None, t0);
        let soon = t0 + Duration::from_millis(499);
        assert_eq!(cache.get("rk:fs:dv:a", soon), Some(Some(b"v1".to_vec())));
        assert_eq!(
            cache.get("rk:epoch", soon),
            Some(None),
            "absence is known too"
        );
        let late = t0 + Duration::from_millis(500);
        assert_eq!(cache.get("rk:fs:dv:a", late), None);
        cache.forget("rk:epoch");
        assert_eq!(cache.get("rk:epoch", t0), None);
    }

    #[test]
    fn bounded_and_large_values_are_not_copied() {
        let t0 = Instant::now();
        let cache = ValueCache::new(32, Duration::from_secs(1));
        for n in 0..1_000 {
            cache.learn(&format!("rk:fs:dv:{n}"), Some(b"x"), t0);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        cache.learn("rk:env:big", Some(&[0u8; MAX_VALUE_BYTES + 1]), t0);
        assert_eq!(cache.get("rk:env:big", t0), None);
    }
}
