//! A bounded map of the Redis backend's local copies: an LRU split into
//! shards, each behind its own lock, so that the workers of a busy node do
//! not queue on one mutex. Beyond its capacity the least recently used key
//! of a shard goes.

use std::hash::BuildHasher as _;

use foldhash::fast::FixedState;
use lru::LruCache;
use parking_lot::{Mutex, MutexGuard};

pub(crate) const SHARDS: usize = 16;

pub(crate) type Shard<V> = LruCache<Box<str>, V, FixedState>;

pub(crate) struct ShardedLru<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    per_shard: usize,
    hasher: FixedState,
}

impl<V> ShardedLru<V> {
    /// About `capacity` keys in all; `seed` spreads keys over the shards.
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        let hasher = FixedState::with_seed(seed);
        ShardedLru {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::unbounded_with_hasher(hasher.clone())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher,
        }
    }

    /// The locked shard of `key`.
    pub(crate) fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        self.shards[(self.hasher.hash_one(key) as usize) % SHARDS].lock()
    }

    /// Adds `key` to its (locked) shard, dropping the shard's least recently
    /// used key beyond the bound.
    pub(crate) fn push(&self, shard: &mut Shard<V>, key: &str, value: V) {
        shard.push(key.into(), value);
        if shard.len() > self.per_shard {
            shard.pop_lru();
        }
    }

    /// Every shard, one lock at a time.
    pub(crate) fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard<V>>> {
        self.shards.iter().map(Mutex::lock)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.each_shard().map(|s| s.len()).sum()
    }
}
