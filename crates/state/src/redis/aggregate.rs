//! Risk-feature counters and sets aggregated on this node between flushes.
//!
//! A request's feature counters are answered here, at once: the global value
//! Redis gave at the last flush plus what this node added since. A flush
//! (at least once a second, off the request path) sends the additions and
//! brings back the new global values. Bounded: the least recently used
//! entries go, with their unflushed additions (counted).

use std::time::{Duration, Instant};

use super::sharded::ShardedLru;

enum Agg {
    Counter {
        /// Global value at the last flush.
        base: i64,
        pending: i64,
    },
    Set {
        base_len: u64,
        /// Members seen here (at most the set cap), and those not yet flushed.
        members: Vec<Box<str>>,
        pending: Vec<Box<str>>,
    },
}

struct Entry {
    agg: Agg,
    ttl: Duration,
    expires: Instant,
    /// Used since the last flush: the flush brings its global value back
    /// even when this node added nothing (other nodes may have).
    touched: bool,
}

/// Additions to send, taken from the aggregator by a flush.
pub(crate) enum Flush {
    Counter {
        key: String,
        delta: i64,
        ttl: Duration,
    },
    Set {
        key: String,
        members: Vec<Box<str>>,
        ttl: Duration,
    },
}

/// What a flush learnt: the global value of each key.
pub(crate) enum Learnt {
    Counter { key: String, value: i64 },
    Set { key: String, len: u64 },
}

pub(crate) struct Aggregator {
    entries: ShardedLru<Entry>,
    set_cap: usize,
}

impl Aggregator {
    pub(crate) fn new(capacity: usize, set_cap: usize) -> Self {
        Aggregator {
            entries: ShardedLru::new(capacity, 0x51_7cc1_b727_220a),
            set_cap: set_cap.max(1),
        }
    }

    fn with_entry<T>(
        &self,
        key: &str,
        ttl: Duration,
        init: impl FnOnce() -> Agg,
        f: impl FnOnce(&mut Agg) -> T,
    ) -> T {
        let now = Instant::now();
        let mut shard = self.entries.shard(key);
        if let Some(entry) = shard.get_mut(key) {
            if entry.expires <= now {
                *entry = Entry {
                    agg: init(),
                    ttl,
                    expires: now + ttl,
                    touched: true,
                };
            }
            entry.touched = true;
            return f(&mut entry.agg);
        }
        let mut entry = Entry {
            agg: init(),
            ttl,
            expires: now + ttl,
            touched: true,
        };
        let out = f(&mut entry.agg);
        self.entries.push(&mut shard, key, entry);
        out
    }

    /// Adds to a counter; the answer is the global value as far as this node knows.
    pub(crate) fn incr(&self, key: &str, delta: i64, ttl: Duration) -> i64 {
        self.with_entry(
            key,
            ttl,
            || Agg::Counter {
                base: 0,
                pending: 0,
            },
            |agg| match agg {
                Agg::Counter { base, pending } => {
                    *pending = pending.saturating_add(delta);
                    base.saturating_add(*pending)
                }
                Agg::Set { .. } => delta,
            },
        )
    }

    /// Adds a member to a set; the answer is its size as far as this node knows.
    pub(crate) fn set_add(&self, key: &str, member: &str, ttl: Duration) -> u64 {
        let cap = self.set_cap;
        self.with_entry(
            key,
            ttl,
            || Agg::Set {
                base_len: 0,
                members: Vec::new(),
                pending: Vec::new(),
            },
            |agg| match agg {
                Agg::Set {
                    base_len,
                    members,
                    pending,
                } => {
                    if members.len() < cap && !members.iter().any(|m| m.as_ref() == member) {
                        members.push(member.into());
                        pending.push(member.into());
                    }
                    (*base_len).max(members.len() as u64)
                }
                Agg::Counter { .. } => 1,
            },
        )
    }

    /// Takes every unflushed addition, and a zero addition for every entry
    /// used since the last flush (to learn its global value).
    pub(crate) fn take(&self) -> Vec<Flush> {
        let now = Instant::now();
        let mut out = Vec::new();
        for mut shard in self.entries.each_shard() {
            for (key, entry) in shard.iter_mut() {
                if entry.expires <= now || !std::mem::take(&mut entry.touched) {
                    continue;
                }
                match &mut entry.agg {
                    Agg::Counter { pending, .. } => {
                        out.push(Flush::Counter {
                            key: key.to_string(),
                            delta: std::mem::take(pending),
                            ttl: entry.ttl,
                        });
                    }
                    Agg::Set { pending, .. } => out.push(Flush::Set {
                        key: key.to_string(),
                        members: std::mem::take(pending),
                        ttl: entry.ttl,
                    }),
                }
            }
        }
        out
    }

    /// Gives back additions a failed flush could not send.
    pub(crate) fn restore(&self, flushes: Vec<Flush>) {
        for flush in flushes {
            let key = match &flush {
                Flush::Counter { key, .. } | Flush::Set { key, .. } => key.clone(),
            };
            let mut shard = self.entries.shard(&key);
            let Some(entry) = shard.peek_mut(key.as_str()) else {
                continue;
            };
            entry.touched = true;
            match (&mut entry.agg, flush) {
                (Agg::Counter { pending, .. }, Flush::Counter { delta, .. }) => {
                    *pending = pending.saturating_add(delta);
                }
                (Agg::Set { pending, .. }, Flush::Set { members, .. }) => pending.extend(members),
                _ => {}
            }
        }
    }

    /// Records the global values a flush brought back. The additions sent
    /// are part of the global value now, so the base takes them over.
    pub(crate) fn learn(&self, learnt: Vec<Learnt>) {
        for item in learnt {
            match item {
                Learnt::Counter { key, value } => {
                    if let Some(Entry {
                        agg: Agg::Counter { base, .. },
                        ..
                    }) = self.entries.shard(&key).peek_mut(key.as_str())
                    {
                        *base = value;
                    }
                }
                Learnt::Set { key, len } => {
                    if let Some(Entry {
                        agg: Agg::Set { base_len, .. },
                        ..
                    }) = self.entries.shard(&key).peek_mut(key.as_str())
                    {
                        *base_len = len;
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::sharded::SHARDS;

    #[test]
    fn answers_include_local_additions_and_flushes_move_them_to_the_base() {
        let agg = Aggregator::new(100, 8);
        let ttl = Duration::from_secs(60);
        assert_eq!(agg.incr("c", 1, ttl), 1);
        assert_eq!(agg.incr("c", 2, ttl), 3);
        assert_eq!(agg.set_add("s", "a", ttl), 1);
        assert_eq!(agg.set_add("s", "a", ttl), 1);
        let taken = agg.take();
        assert_eq!(taken.len(), 2);
        assert!(agg.take().is_empty(), "taken once");
        // Other nodes added 10 meanwhile; the set has 5 members globally.
        agg.learn(vec![
            Learnt::Counter {
                key: "c".into(),
                value: 13,
            },
            Learnt::Set {
                key: "s".into(),
                len: 5,
            },
        ]);
        assert_eq!(agg.incr("c", 1, ttl), 14);
        assert_eq!(agg.set_add("s", "b", ttl), 5);
    }

    #[test]
    fn a_failed_flush_keeps_its_additions() {
        let agg = Aggregator::new(100, 8);
        let ttl = Duration::from_secs(60);
        agg.incr("c", 4, ttl);
        let taken = agg.take();
        agg.restore(taken);
        match agg.take().as_slice() {
            [Flush::Counter { delta, .. }] => assert_eq!(*delta, 4),
            _ => panic!("one counter expected"),
        }
    }

    #[test]
    fn bounded() {
        let agg = Aggregator::new(SHARDS * 4, 8);
        for i in 0..10_000 {
            agg.incr(&format!("k{i}"), 1, Duration::from_secs(60));
        }
        assert!(agg.len() <= SHARDS * 4);
    }
}
