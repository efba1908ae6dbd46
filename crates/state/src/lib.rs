//! Shared gateway state behind one async trait.
//!
//! Owns the [`StateStore`] contract (counters, rate-limit cells, capped sets,
//! byte values with expiry, first-use markers for nonces, and batches of
//! these), the pure GCRA arithmetic every backend shares, the [`Tier`]s that
//! keep security state apart from traffic-driven keys, the bounded in-memory
//! backend and the Redis/Valkey backend shared by the nodes of a cluster.
//! Every operation carries its own expiry, and [`StateStore::batch`] lets the
//! network backend pipeline several operations in one round trip.

mod breaker;
mod gcra;
mod memory;
pub mod redis;
mod tier;

use std::time::Duration;

use async_trait::async_trait;

pub use gcra::{Gcra, RateDecision};
pub use memory::{Loaded, MemoryStore, MemoryStoreOptions};
pub use redis::{Endpoint, EvictionError, NonceFallback, RedisMode, RedisOptions, RedisStore};
pub use tier::Tier;

/// The output of a future that never waits (the memory store's), polled once.
pub(crate) fn ready<T>(fut: impl std::future::Future<Output = StateResult<T>>) -> StateResult<T> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => Err(StateError::Unavailable(
            "a local operation did not complete at once".into(),
        )),
    }
}

/// Why a state operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The backend cannot be reached; callers apply their fail-open/closed rule.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// The key holds another kind of value than the operation expects.
    #[error("key {0:?} holds another kind of value")]
    WrongType(String),
    /// A security tier is full: the addition was refused rather than letting
    /// the store forget older security state. Refuse new work of that kind.
    #[error("the {0} tier is full")]
    TierFull(Tier),
    /// The value is larger than the backend accepts.
    #[error("value of {0} bytes is too large")]
    TooLarge(usize),
}

impl StateError {
    /// Whether the backend could not be asked (as opposed to a refusal).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }
}

pub type StateResult<T> = Result<T, StateError>;

/// One operation, for batches.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Incr {
        key: String,
        delta: i64,
        ttl: Duration,
    },
    RateLimit {
        key: String,
        limit: Gcra,
        cost: u32,
    },
    SetAdd {
        key: String,
        member: String,
        ttl: Duration,
    },
    Put {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    PutIfAbsent {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
}

/// The answer to one [`Op`], in the same position of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Count(i64),
    Rate(RateDecision),
    /// Cardinality of the set after the add.
    SetLen(u64),
    Done,
    /// `PutIfAbsent`: whether the key was absent; `Delete`: whether it existed.
    Flag(bool),
    Value(Option<Vec<u8>>),
}

/// Occupancy figures for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: u64,
    pub capacity: u64,
    /// Live entries pushed out to stay within capacity, since start.
    pub evictions: u64,
}

/// Occupancy of one tier, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    pub tier: Tier,
    /// Keys held on this node (for Redis: in the local mirror or fallback).
    pub entries: u64,
    pub capacity: u64,
    /// Live entries pushed out to stay within capacity (evicting tiers only).
    pub evictions: u64,
    /// Additions refused because the tier was full (security tiers only).
    pub refused: u64,
}

/// Whether the shared backend answers, for metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub backend: &'static str,
    /// `false` while the circuit is open and answers are local.
    pub available: bool,
    /// Times the circuit opened since start.
    pub outages: u64,
    /// Calls that failed or timed out since start.
    pub failures: u64,
    /// Commands sent and round trips made since start (pipelines; a
    /// cluster pipeline per hash tag counts as one each, sent at once).
    /// `round_trips` counts those requests waited on; flushes, mirror
    /// reloads and resyncs are `background_round_trips`.
    pub commands: u64,
    pub round_trips: u64,
    pub background_round_trips: u64,
}

/// Shared state: the in-memory table on one node, Redis across nodes.
///
/// Every key expires; every table is bounded by the backend.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Adds `delta` to a counter created at 0 with `ttl` (kept on later adds:
    /// a fixed window). Returns the new value.
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StateResult<i64>;

    /// Spends `cost` from a GCRA cell; the cell expires when it is full again.
    async fn rate_limit(&self, key: &str, limit: Gcra, cost: u32) -> StateResult<RateDecision>;

    /// Adds a member to a set (bounded per set by the backend) and returns its size.
    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> StateResult<u64>;

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<()>;

    /// Stores the value only if the key is absent; `true` when it was stored.
    /// This is the replay check for nonces and single-use challenges.
    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<bool>;

    async fn get(&self, key: &str) -> StateResult<Option<Vec<u8>>>;

    /// Removes a key; `true` when it existed.
    async fn delete(&self, key: &str) -> StateResult<bool>;

    /// Live keys starting with `prefix`, at most `limit`, with their values and
    /// remaining time to live (used to list bans and revocations).
    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StateResult<Vec<(String, Vec<u8>, Duration)>>;

    /// Runs several operations; a network backend sends them in one round trip.
    async fn batch(&self, ops: &[Op]) -> StateResult<Vec<Reply>> {
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            replies.push(self.apply(op).await?);
        }
        Ok(replies)
    }

    /// Runs one [`Op`].
    async fn apply(&self, op: &Op) -> StateResult<Reply> {
        Ok(match op {
            Op::Incr { key, delta, ttl } => Reply::Count(self.incr(key, *delta, *ttl).await?),
            Op::RateLimit { key, limit, cost } => {
                Reply::Rate(self.rate_limit(key, *limit, *cost).await?)
            }
            Op::SetAdd { key, member, ttl } => {
                Reply::SetLen(self.set_add(key, member, *ttl).await?)
            }
            Op::Put { key, value, ttl } => {
                self.put(key, value, *ttl).await?;
                Reply::Done
            }
            Op::PutIfAbsent { key, value, ttl } => {
                Reply::Flag(self.put_if_absent(key, value, *ttl).await?)
            }
            Op::Get { key } => Reply::Value(self.get(key).await?),
            Op::Delete { key } => Reply::Flag(self.delete(key).await?),
        })
    }

    fn stats(&self) -> StoreStats;

    /// Occupancy per tier.
    fn tier_stats(&self) -> Vec<TierStats>;

    /// Whether the shared backend answers; a single-node store always does.
    fn health(&self) -> Health {
        Health {
            backend: "memory",
            available: true,
            outages: 0,
            failures: 0,
            commands: 0,
            round_trips: 0,
            background_round_trips: 0,
        }
    }
}
