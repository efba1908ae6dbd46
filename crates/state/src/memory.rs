//! The bounded in-memory backend.
//!
//! Keys are spread over shards, each a mutex-guarded LRU with a fixed share
//! of the capacity, so rotating millions of IPs or device ids pushes out the
//! least recently used keys instead of growing memory. Expired entries are
//! dropped when touched and preferred for eviction by the LRU order.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use foldhash::fast::FixedState;
use lru::LruCache;
use parking_lot::Mutex;

use crate::{Gcra, RateDecision, StateError, StateResult, StateStore, StoreStats};

/// Sizes of the in-memory backend.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreOptions {
    /// Keys kept in all; beyond it the least recently used go.
    pub capacity: usize,
    /// Members kept per set; a full set stops growing (its size saturates).
    pub set_member_cap: usize,
    /// Values larger than this are refused.
    pub max_value_bytes: usize,
}

impl Default for MemoryStoreOptions {
    fn default() -> Self {
        MemoryStoreOptions {
            capacity: 1_000_000,
            set_member_cap: 1_024,
            max_value_bytes: 64 * 1024,
        }
    }
}

const SHARDS: usize = 64;

enum Value {
    Counter(i64),
    Tat(u64),
    Set(Vec<Box<str>>),
    Bytes(Box<[u8]>),
}

struct Entry {
    value: Value,
    expires_ns: u64,
}

type Shard = LruCache<Box<str>, Entry, FixedState>;

/// The default, single-node [`StateStore`].
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// Entries per shard; beyond it the least recently used entry goes.
    per_shard: usize,
    options: MemoryStoreOptions,
    hasher: FixedState,
    epoch: Instant,
    evictions: AtomicU64,
}

impl MemoryStore {
    pub fn new(options: MemoryStoreOptions) -> Self {
        let per_shard = options.capacity.div_ceil(SHARDS).max(1);
        let hasher = FixedState::with_seed(0x9e37_79b9_7f4a_7c15);
        // Tables grow with use instead of being sized for the cap up front:
        // a small table stays in cache, which makes every operation faster.
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(LruCache::unbounded_with_hasher(hasher.clone())))
            .collect();
        MemoryStore {
            shards,
            per_shard,
            options,
            hasher,
            epoch: Instant::now(),
            evictions: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn deadline(&self, now: u64, ttl: Duration) -> u64 {
        now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Runs `f` on the live entry of `key` (created by `init` when absent or expired).
    fn with_entry<T>(
        &self,
        key: &str,
        init: impl FnOnce(u64) -> Entry,
        f: impl FnOnce(&mut Entry, u64) -> StateResult<T>,
    ) -> StateResult<T> {
        let now = self.now_ns();
        let mut shard = self.shard(key).lock();
        if let Some(entry) = shard.get_mut(key) {
            if entry.expires_ns > now {
                return f(entry, now);
            }
            *entry = init(now);
            return f(entry, now);
        }
        let mut entry = init(now);
        let out = f(&mut entry, now);
        shard.push(key.into(), entry);
        if shard.len() > self.per_shard
            && let Some((_, evicted)) = shard.pop_lru()
            && evicted.expires_ns > now
        {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    fn live<T>(&self, key: &str, f: impl FnOnce(&Entry, u64) -> T) -> Option<T> {
        let now = self.now_ns();
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(entry) if entry.expires_ns > now => Some(f(entry, now)),
            Some(_) => {
                shard.pop(key);
                None
            }
            None => None,
        }
    }

    fn check_size(&self, value: &[u8]) -> StateResult<()> {
        if value.len() > self.options.max_value_bytes {
            return Err(StateError::Unavailable(format!(
                "value of {} bytes exceeds the {} byte limit",
                value.len(),
                self.options.max_value_bytes
            )));
        }
        Ok(())
    }
}

fn wrong_type(key: &str) -> StateError {
    StateError::WrongType(key.to_string())
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StateResult<i64> {
        self.with_entry(
            key,
            |now| Entry {
                value: Value::Counter(0),
                expires_ns: self.deadline(now, ttl),
            },
            |entry, _| match &mut entry.value {
                Value::Counter(n) => {
                    *n = n.saturating_add(delta);
                    Ok(*n)
                }
                _ => Err(wrong_type(key)),
            },
        )
    }

    async fn rate_limit(&self, key: &str, limit: Gcra, cost: u32) -> StateResult<RateDecision> {
        self.with_entry(
            key,
            |now| Entry {
                value: Value::Tat(0),
                expires_ns: now,
            },
            |entry, now| match &mut entry.value {
                Value::Tat(tat) => {
                    let (decision, new_tat) = limit.spend(*tat, now, cost);
                    *tat = new_tat;
                    entry.expires_ns = new_tat.max(now + 1);
                    Ok(decision)
                }
                _ => Err(wrong_type(key)),
            },
        )
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> StateResult<u64> {
        let cap = self.options.set_member_cap;
        self.with_entry(
            key,
            |now| Entry {
                value: Value::Set(Vec::new()),
                expires_ns: self.deadline(now, ttl),
            },
            |entry, now| match &mut entry.value {
                Value::Set(members) => {
                    if members.len() < cap && !members.iter().any(|m| m.as_ref() == member) {
                        members.push(member.into());
                    }
                    entry.expires_ns = entry.expires_ns.max(self.deadline(now, ttl));
                    Ok(members.len() as u64)
                }
                _ => Err(wrong_type(key)),
            },
        )
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<()> {
        self.check_size(value)?;
        self.with_entry(
            key,
            |now| Entry {
                value: Value::Bytes(Box::default()),
                expires_ns: now,
            },
            |entry, now| {
                entry.value = Value::Bytes(value.into());
                entry.expires_ns = self.deadline(now, ttl);
                Ok(())
            },
        )
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<bool> {
        self.check_size(value)?;
        let mut fresh = false;
        self.with_entry(
            key,
            |now| {
                fresh = true;
                Entry {
                    value: Value::Bytes(value.into()),
                    expires_ns: self.deadline(now, ttl),
                }
            },
            |_, _| Ok(()),
        )?;
        Ok(fresh)
    }

    async fn get(&self, key: &str) -> StateResult<Option<Vec<u8>>> {
        self.live(key, |entry, _| match &entry.value {
            Value::Bytes(bytes) => Ok(bytes.to_vec()),
            _ => Err(wrong_type(key)),
        })
        .transpose()
    }

    async fn delete(&self, key: &str) -> StateResult<bool> {
        let now = self.now_ns();
        let removed = self.shard(key).lock().pop(key);
        Ok(removed.is_some_and(|entry| entry.expires_ns > now))
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StateResult<Vec<(String, Vec<u8>, Duration)>> {
        let now = self.now_ns();
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (key, entry) in shard.iter() {
                if found.len() >= limit {
                    return Ok(found);
                }
                if entry.expires_ns > now
                    && key.starts_with(prefix)
                    && let Value::Bytes(bytes) = &entry.value
                {
                    let ttl = Duration::from_nanos(entry.expires_ns - now);
                    found.push((key.to_string(), bytes.to_vec(), ttl));
                }
            }
        }
        Ok(found)
    }

    fn stats(&self) -> StoreStats {
        let entries = self.shards.iter().map(|s| s.lock().len() as u64).sum();
        let capacity = (self.per_shard * self.shards.len()) as u64;
        StoreStats {
            entries,
            capacity,
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize) -> MemoryStore {
        MemoryStore::new(MemoryStoreOptions {
            capacity,
            ..MemoryStoreOptions::default()
        })
    }

    #[tokio::test]
    async fn counters_expire() {
        let s = store(100);
        assert_eq!(s.incr("a", 2, Duration::from_millis(30)).await, Ok(2));
        assert_eq!(s.incr("a", 3, Duration::from_millis(30)).await, Ok(5));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(s.incr("a", 1, Duration::from_millis(30)).await, Ok(1));
    }

    #[tokio::test]
    async fn nonce_is_first_use_once() {
        let s = store(100);
        let ttl = Duration::from_secs(60);
        assert_eq!(s.put_if_absent("n:1", b"", ttl).await, Ok(true));
        assert_eq!(s.put_if_absent("n:1", b"", ttl).await, Ok(false));
        assert_eq!(s.put_if_absent("n:2", b"", ttl).await, Ok(true));
    }

    #[tokio::test]
    async fn capacity_bounds_memory_and_counts_evictions() {
        let s = store(SHARDS * 10);
        for i in 0..100_000 {
            s.incr(&format!("ip:{i}"), 1, Duration::from_secs(60))
                .await
                .expect("incr");
        }
        let stats = s.stats();
        assert!(stats.entries <= (SHARDS * 10) as u64, "{stats:?}");
        assert!(
            stats.evictions >= 100_000 - (SHARDS * 10) as u64,
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn sets_are_capped() {
        let s = MemoryStore::new(MemoryStoreOptions {
            set_member_cap: 3,
            ..MemoryStoreOptions::default()
        });
        let ttl = Duration::from_secs(60);
        for account in ["a", "b", "a", "c", "d", "e"] {
            s.set_add("dev:1", account, ttl).await.expect("add");
        }
        assert_eq!(s.set_add("dev:1", "a", ttl).await, Ok(3));
    }

    #[tokio::test]
    async fn rate_limit_and_wrong_type() {
        let s = store(100);
        let limit = Gcra::per_second(10.0, 2);
        assert!(s.rate_limit("k", limit, 1).await.expect("rl").allowed);
        assert!(s.rate_limit("k", limit, 1).await.expect("rl").allowed);
        assert!(!s.rate_limit("k", limit, 1).await.expect("rl").allowed);
        assert_eq!(
            s.incr("k", 1, Duration::from_secs(1)).await,
            Err(StateError::WrongType("k".into()))
        );
    }

    #[tokio::test]
    async fn batch_and_scan() {
        let s = store(100);
        let ttl = Duration::from_secs(60);
        let replies = s
            .batch(&[
                crate::Op::Put {
                    key: "ban:1.2.3.4".into(),
                    value: b"flood".to_vec(),
                    ttl,
                },
                crate::Op::Get {
                    key: "ban:1.2.3.4".into(),
                },
                crate::Op::Delete { key: "none".into() },
            ])
            .await
            .expect("batch");
        assert_eq!(
            replies,
            [
                crate::Reply::Done,
                crate::Reply::Value(Some(b"flood".to_vec())),
                crate::Reply::Flag(false)
            ]
        );
        let bans = s.scan_prefix("ban:", 10).await.expect("scan");
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].0, "ban:1.2.3.4");
    }
}
