//! The bounded in-memory backend.
//!
//! Each [`Tier`] has its own table. Rate-limit cells and risk features live
//! in sharded LRUs with a fixed share of their tier's capacity, so rotating
//! millions of IPs or device ids pushes out the least recently used keys of
//! that tier instead of growing memory. Security tiers (bans, revocations,
//! nonces, challenge markers) never evict: when one is full its expired
//! entries are swept, and if it is still full the addition fails with
//! [`StateError::TierFull`]. A flood of traffic keys therefore cannot lift a
//! ban or let a nonce be replayed.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use foldhash::fast::FixedState;
use lru::LruCache;
use parking_lot::Mutex;

use crate::{Gcra, RateDecision, StateError, StateResult, StateStore, StoreStats, Tier, TierStats};

mod snapshot;
pub use snapshot::Loaded;

/// Sizes of the in-memory backend: keys per tier, and value bounds.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreOptions {
    /// Risk-feature keys kept; beyond it the least recently used go.
    pub capacity: usize,
    /// Rate-limit cells and escalation counters kept; beyond it the least recently used go.
    pub limits_capacity: usize,
    /// Bans kept; a full tier refuses new bans.
    pub bans_capacity: usize,
    /// Revoked clearances kept; a full tier refuses new revocations.
    pub revocations_capacity: usize,
    /// Signature nonces remembered; a full tier refuses new signed requests.
    pub nonces_capacity: usize,
    /// Solved-challenge markers remembered; a full tier refuses new verifications.
    pub challenges_capacity: usize,
    /// Members kept per set; a full set stops growing (its size saturates).
    pub set_member_cap: usize,
    /// Values larger than this are refused.
    pub max_value_bytes: usize,
}

impl Default for MemoryStoreOptions {
    fn default() -> Self {
        MemoryStoreOptions {
            capacity: 1_000_000,
            limits_capacity: 1_000_000,
            bans_capacity: 100_000,
            revocations_capacity: 100_000,
            nonces_capacity: 1_000_000,
            challenges_capacity: 250_000,
            set_member_cap: 1_024,
            max_value_bytes: 64 * 1024,
        }
    }
}

impl MemoryStoreOptions {
    pub fn capacity_of(&self, tier: Tier) -> usize {
        match tier {
            Tier::Bans => self.bans_capacity,
            Tier::Revocations => self.revocations_capacity,
            Tier::Nonces => self.nonces_capacity,
            Tier::Challenges => self.challenges_capacity,
            Tier::Limits => self.limits_capacity,
            Tier::Features => self.capacity,
        }
    }
}

const LRU_SHARDS: usize = 64;
const FIXED_SHARDS: usize = 16;
/// A full security tier is swept for expired entries at most this often, so
/// a flood against a full tier does not turn every refusal into a full scan.
const SWEEP_EVERY_NS: u64 = 100_000_000;

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

type LruShard = LruCache<Box<str>, Entry, FixedState>;
type FixedShard = HashMap<Box<str>, Entry, FixedState>;

/// An evicting tier.
struct Lru {
    shards: Box<[Mutex<LruShard>]>,
    per_shard: usize,
    evictions: AtomicU64,
}

/// A tier that refuses additions when full.
struct Fixed {
    shards: Box<[Mutex<FixedShard>]>,
    capacity: usize,
    len: AtomicUsize,
    refused: AtomicU64,
    last_sweep_ns: AtomicU64,
}

enum Table {
    Lru(Lru),
    Fixed(Fixed),
}

/// The default, single-node [`StateStore`].
pub struct MemoryStore {
    tables: Box<[Table]>,
    options: MemoryStoreOptions,
    hasher: FixedState,
    epoch: Instant,
}

impl Lru {
    fn new(capacity: usize, hasher: &FixedState) -> Self {
        // Tables grow with use instead of being sized for the cap up front:
        // a small table stays in cache, which makes every operation faster.
        let shards = (0..LRU_SHARDS)
            .map(|_| Mutex::new(LruCache::unbounded_with_hasher(hasher.clone())))
            .collect();
        Lru {
            shards,
            per_shard: capacity.div_ceil(LRU_SHARDS).max(1),
            evictions: AtomicU64::new(0),
        }
    }
}

impl Fixed {
    fn new(capacity: usize, hasher: &FixedState) -> Self {
        let shards = (0..FIXED_SHARDS)
            .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
            .collect();
        Fixed {
            shards,
            capacity,
            len: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_sweep_ns: AtomicU64::new(0),
        }
    }

    /// Takes a slot for a new key, sweeping expired keys once if the tier is full.
    fn reserve(&self, now: u64) -> bool {
        if self.try_reserve() {
            return true;
        }
        let last = self.last_sweep_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_EVERY_NS
            && self
                .last_sweep_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
            if self.try_reserve() {
                return true;
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.len.fetch_sub(n, Ordering::Relaxed);
    }

    fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|_, entry| entry.expires_ns > now);
            self.release(before - shard.len());
        }
    }
}

impl MemoryStore {
    pub fn new(options: MemoryStoreOptions) -> Self {
        let hasher = FixedState::with_seed(0x9e37_79b9_7f4a_7c15);
        let tables = Tier::ALL
            .iter()
            .map(|&tier| {
                let capacity = options.capacity_of(tier);
                if tier.is_security() {
                    Table::Fixed(Fixed::new(capacity, &hasher))
                } else {
                    Table::Lru(Lru::new(capacity, &hasher))
                }
            })
            .collect();
        MemoryStore {
            tables,
            options,
            hasher,
            epoch: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn table(&self, tier: Tier) -> &Table {
        &self.tables[tier.index()]
    }

    fn shard_index(&self, key: &str, shards: usize) -> usize {
        (self.hasher.hash_one(key) as usize) % shards
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
        let tier = Tier::of(key);
        match self.table(tier) {
            Table::Lru(lru) => {
                let mut shard = lru.shards[self.shard_index(key, LRU_SHARDS)].lock();
                if let Some(entry) = shard.get_mut(key) {
                    if entry.expires_ns <= now {
                        *entry = init(now);
                    }
                    return f(entry, now);
                }
                let mut entry = init(now);
                let out = f(&mut entry, now);
                shard.push(key.into(), entry);
                if shard.len() > lru.per_shard
                    && let Some((_, evicted)) = shard.pop_lru()
                    && evicted.expires_ns > now
                {
                    lru.evictions.fetch_add(1, Ordering::Relaxed);
                }
                out
            }
            Table::Fixed(fixed) => {
                let shard = &fixed.shards[self.shard_index(key, FIXED_SHARDS)];
                {
                    let mut guard = shard.lock();
                    if let Some(entry) = guard.get_mut(key) {
                        if entry.expires_ns <= now {
                            *entry = init(now);
                        }
                        return f(entry, now);
                    }
                }
                // The shard lock is released: a sweep locks every shard.
                if !fixed.reserve(now) {
                    return Err(StateError::TierFull(tier));
                }
                let mut guard = shard.lock();
                match guard.get_mut(key) {
                    // Another task added the key meanwhile: give the slot back.
                    Some(entry) => {
                        fixed.release(1);
                        if entry.expires_ns <= now {
                            *entry = init(now);
                        }
                        f(entry, now)
                    }
                    None => {
                        let mut entry = init(now);
                        let out = f(&mut entry, now);
                        guard.insert(key.into(), entry);
                        out
                    }
                }
            }
        }
    }

    /// Runs `f` on the live entry of `key`, if any (expired entries are dropped).
    fn live<T>(&self, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let now = self.now_ns();
        match self.table(Tier::of(key)) {
            Table::Lru(lru) => {
                let mut shard = lru.shards[self.shard_index(key, LRU_SHARDS)].lock();
                match shard.get(key) {
                    Some(entry) if entry.expires_ns > now => Some(f(entry)),
                    Some(_) => {
                        shard.pop(key);
                        None
                    }
                    None => None,
                }
            }
            Table::Fixed(fixed) => {
                let mut shard = fixed.shards[self.shard_index(key, FIXED_SHARDS)].lock();
                match shard.get(key) {
                    Some(entry) if entry.expires_ns > now => Some(f(entry)),
                    Some(_) => {
                        shard.remove(key);
                        fixed.release(1);
                        None
                    }
                    None => None,
                }
            }
        }
    }

    /// Removes a key; `true` when it was live.
    pub(crate) fn remove_key(&self, key: &str) -> bool {
        let now = self.now_ns();
        let removed = match self.table(Tier::of(key)) {
            Table::Lru(lru) => lru.shards[self.shard_index(key, LRU_SHARDS)]
                .lock()
                .pop(key),
            Table::Fixed(fixed) => {
                let removed = fixed.shards[self.shard_index(key, FIXED_SHARDS)]
                    .lock()
                    .remove(key);
                if removed.is_some() {
                    fixed.release(1);
                }
                removed
            }
        };
        removed.is_some_and(|entry| entry.expires_ns > now)
    }

    /// Live byte values of one tier starting with `prefix`, at most `limit`.
    fn scan_tier(
        &self,
        tier: Tier,
        prefix: &str,
        limit: usize,
        found: &mut Vec<(String, Vec<u8>, Duration)>,
    ) {
        let now = self.now_ns();
        let mut visit = |key: &str, entry: &Entry| {
            if found.len() < limit
                && entry.expires_ns > now
                && key.starts_with(prefix)
                && let Value::Bytes(bytes) = &entry.value
            {
                let ttl = Duration::from_nanos(entry.expires_ns - now);
                found.push((key.to_string(), bytes.to_vec(), ttl));
            }
        };
        match self.table(tier) {
            Table::Lru(lru) => {
                for shard in lru.shards.iter() {
                    shard.lock().iter().for_each(|(k, e)| visit(k, e));
                }
            }
            Table::Fixed(fixed) => {
                for shard in fixed.shards.iter() {
                    shard.lock().iter().for_each(|(k, e)| visit(k, e));
                }
            }
        }
    }

    /// Replaces every key of `tier` starting with `prefix` by `entries`
    /// (the Redis backend's mirror of bans and revocations, on reload).
    pub(crate) fn replace_prefix(
        &self,
        prefix: &str,
        entries: &[(String, Vec<u8>, Duration)],
    ) -> StateResult<()> {
        let mut stale = Vec::new();
        self.scan_tier(Tier::of(prefix), prefix, usize::MAX, &mut stale);
        for (key, _, _) in &stale {
            if !entries.iter().any(|(k, _, _)| k == key) {
                self.remove_key(key);
            }
        }
        for (key, value, ttl) in entries {
            self.store_bytes(key, value, *ttl)?;
        }
        Ok(())
    }

    fn store_bytes(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<()> {
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

    fn check_size(&self, value: &[u8]) -> StateResult<()> {
        if value.len() > self.options.max_value_bytes {
            return Err(StateError::TooLarge(value.len()));
        }
        Ok(())
    }

    fn tier_stat(&self, tier: Tier) -> TierStats {
        let (entries, evictions, refused) = match self.table(tier) {
            Table::Lru(lru) => (
                lru.shards.iter().map(|s| s.lock().len() as u64).sum(),
                lru.evictions.load(Ordering::Relaxed),
                0,
            ),
            Table::Fixed(fixed) => (
                fixed.len.load(Ordering::Relaxed) as u64,
                0,
                fixed.refused.load(Ordering::Relaxed),
            ),
        };
        TierStats {
            tier,
            entries,
            capacity: self.options.capacity_of(tier) as u64,
            evictions,
            refused,
        }
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
        self.store_bytes(key, value, ttl)
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
        self.live(key, |entry| match &entry.value {
            Value::Bytes(bytes) => Ok(bytes.to_vec()),
            _ => Err(wrong_type(key)),
        })
        .transpose()
    }

    async fn delete(&self, key: &str) -> StateResult<bool> {
        Ok(self.remove_key(key))
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StateResult<Vec<(String, Vec<u8>, Duration)>> {
        let mut found = Vec::new();
        for tier in Tier::for_prefix(prefix) {
            self.scan_tier(tier, prefix, limit, &mut found);
        }
        Ok(found)
    }

    fn stats(&self) -> StoreStats {
        self.tier_stats()
            .iter()
            .fold(StoreStats::default(), |total, t| StoreStats {
                entries: total.entries + t.entries,
                capacity: total.capacity + t.capacity,
                evictions: total.evictions + t.evictions,
            })
    }

    fn tier_stats(&self) -> Vec<TierStats> {
        Tier::ALL.iter().map(|&tier| self.tier_stat(tier)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize) -> MemoryStore {
        MemoryStore::new(MemoryStoreOptions {
            capacity,
            limits_capacity: capacity,
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
        assert_eq!(s.put_if_absent("pc:n:k:1", b"", ttl).await, Ok(true));
        assert_eq!(s.put_if_absent("pc:n:k:1", b"", ttl).await, Ok(false));
        assert_eq!(s.put_if_absent("pc:n:k:2", b"", ttl).await, Ok(true));
    }

    #[tokio::test]
    async fn capacity_bounds_memory_and_counts_evictions() {
        let s = store(LRU_SHARDS * 10);
        for i in 0..100_000 {
            s.incr(&format!("ip:{i}"), 1, Duration::from_secs(60))
                .await
                .expect("incr");
        }
        let features = s.tier_stat(Tier::Features);
        assert!(features.entries <= (LRU_SHARDS * 10) as u64, "{features:?}");
        assert!(
            features.evictions >= 100_000 - (LRU_SHARDS * 10) as u64,
            "{features:?}"
        );
        assert_eq!(s.stats().evictions, features.evictions);
    }

    #[tokio::test]
    async fn a_full_security_tier_refuses_instead_of_forgetting() {
        let s = MemoryStore::new(MemoryStoreOptions {
            nonces_capacity: 3,
            ..MemoryStoreOptions::default()
        });
        let ttl = Duration::from_secs(60);
        for n in 0..3 {
            let key = format!("pc:n:k:{n}");
            assert_eq!(s.put_if_absent(&key, b"", ttl).await, Ok(true));
        }
        assert_eq!(
            s.put_if_absent("pc:n:k:3", b"", ttl).await,
            Err(StateError::TierFull(Tier::Nonces))
        );
        // Every nonce already seen is still refused as a replay.
        for n in 0..3 {
            let key = format!("pc:n:k:{n}");
            assert_eq!(s.put_if_absent(&key, b"", ttl).await, Ok(false));
        }
        let stats = s.tier_stat(Tier::Nonces);
        assert_eq!((stats.entries, stats.refused), (3, 1));
    }

    #[tokio::test]
    async fn a_full_security_tier_makes_room_from_expired_entries() {
        let s = MemoryStore::new(MemoryStoreOptions {
            challenges_capacity: 2,
            ..MemoryStoreOptions::default()
        });
        let short = Duration::from_millis(20);
        assert_eq!(s.put_if_absent("pc:c:a", b"", short).await, Ok(true));
        assert_eq!(s.put_if_absent("pc:c:b", b"", short).await, Ok(true));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let long = Duration::from_secs(60);
        assert_eq!(s.put_if_absent("pc:c:c", b"", long).await, Ok(true));
        assert_eq!(s.put_if_absent("pc:c:d", b"", long).await, Ok(true));
        assert_eq!(s.tier_stat(Tier::Challenges).entries, 2);
        assert!(s.delete("pc:c:c").await.expect("delete"));
        assert_eq!(s.tier_stat(Tier::Challenges).entries, 1);
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
        assert!(s.rate_limit("rl:k", limit, 1).await.expect("rl").allowed);
        assert!(s.rate_limit("rl:k", limit, 1).await.expect("rl").allowed);
        assert!(!s.rate_limit("rl:k", limit, 1).await.expect("rl").allowed);
        assert_eq!(
            s.incr("rl:k", 1, Duration::from_secs(1)).await,
            Err(StateError::WrongType("rl:k".into()))
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
        s.put("rk:x", b"feature", ttl).await.expect("put");
        let bans = s.scan_prefix("ban:", 10).await.expect("scan");
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].0, "ban:1.2.3.4");
        assert_eq!(s.scan_prefix("", 10).await.expect("scan").len(), 2);
    }
}
