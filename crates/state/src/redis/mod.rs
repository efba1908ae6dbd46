//! The Redis / Valkey backend, shared by every node of a cluster.
//!
//! - One round trip per batch: the remote operations of a batch go in one
//!   pipeline (in Redis Cluster, one pipeline per hash tag, sent at once).
//! - GCRA runs in a Lua script on the server's clock.
//! - Bans and revocations are mirrored locally and read from the mirror;
//!   every change is announced on a pub/sub channel and each node reloads
//!   the changed key, so a ban reaches every node within milliseconds.
//! - Risk-feature counters and sets are aggregated locally and flushed in
//!   the background (`flush_every`, at most a second); risk-feature values
//!   (first seen, environment records) are answered from a local copy for
//!   `flush_every` after Redis gave them. Only rate limits and security
//!   state (nonces, challenge markers, new bans) wait on Redis.
//! - Every call has a timeout and goes through a circuit breaker. While the
//!   circuit is open nothing waits on Redis: rate limits apply at
//!   limit / nodes on this node, bans and revocations come from the mirror,
//!   signature nonces are refused or checked locally ([`NonceFallback`]),
//!   everything else is answered by the local tiers. A probe reconnects,
//!   replays the bans and revocations made meanwhile, reloads the mirror and
//!   closes the circuit.

mod aggregate;
mod conn;
mod eviction;
mod keys;
mod scripts;
mod sharded;
mod values;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use parking_lot::Mutex;
use redis::{Cmd, Value};
use tokio::task::AbortHandle;

pub use conn::{Endpoint, RedisMode};
pub use eviction::EvictionError;

use self::aggregate::{Aggregator, Flush, Learnt};
use self::conn::Conn;
use self::scripts::Scripts;
use self::values::ValueCache;
use crate::breaker::Breaker;
use crate::{
    Gcra, Health, MemoryStore, MemoryStoreOptions, Op, RateDecision, Reply, StateError,
    StateResult, StateStore, StoreStats, Tier, TierStats,
};

/// What signature nonces do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceFallback {
    /// `put_if_absent` on a nonce fails with [`StateError::Unavailable`]; the
    /// caller refuses the signed request (fail closed).
    Refuse,
    /// Nonces are checked against this node's memory only (fail open, with
    /// replays through other nodes undetected until Redis is back).
    Local,
}

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub endpoint: Endpoint,
    /// Time allowed for one call; slower counts as a failure.
    pub timeout: Duration,
    /// Consecutive failures that open the circuit.
    pub failures_to_open: u32,
    /// How often an open circuit probes Redis.
    pub probe_every: Duration,
    /// How often aggregated risk features are flushed.
    pub flush_every: Duration,
    /// Gateway nodes: the divisor of rate limits while Redis is unreachable.
    pub nodes: u32,
    pub nonces_when_down: NonceFallback,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Start even when the server's `maxmemory-policy` may evict keys
    /// (security state included), with a warning instead of a refusal.
    pub allow_eviction: bool,
    /// The local tiers: mirror of bans and revocations, and the fallback.
    pub local: MemoryStoreOptions,
}

impl RedisOptions {
    /// Defaults around one endpoint.
    pub fn new(endpoint: Endpoint) -> Self {
        RedisOptions {
            endpoint,
            timeout: Duration::from_millis(30),
            failures_to_open: 3,
            probe_every: Duration::from_millis(500),
            flush_every: Duration::from_millis(500),
            nodes: 1,
            nonces_when_down: NonceFallback::Refuse,
            key_prefix: "pc".into(),
            allow_eviction: false,
            local: MemoryStoreOptions::default(),
        }
    }
}

/// Writes to mirrored tiers kept for replay after an outage, at most.
const MAX_UNSYNCED: usize = 10_000;
/// Flushes and reloads run off the request path and may take longer.
const BACKGROUND_TIMEOUT_FACTOR: u32 = 20;
/// Aggregated keys sent per flush pipeline.
const FLUSH_CHUNK: usize = 1_000;
/// The mirror is reloaded whole this often, in case a pub/sub message was lost.
const MIRROR_RELOAD: Duration = Duration::from_secs(10);
/// Risk-feature values copied locally, at most.
const VALUE_COPIES: usize = 100_000;

/// The shared [`StateStore`] on Redis or Valkey.
pub struct RedisStore {
    options: RedisOptions,
    conn: ArcSwapOption<Conn>,
    breaker: Breaker,
    local: MemoryStore,
    features: Aggregator,
    values: ValueCache,
    scripts: Scripts,
    unsynced: Mutex<Vec<Op>>,
    tasks: Mutex<Vec<AbortHandle>>,
    commands: AtomicU64,
    /// Round trips made for requests, and those of background work
    /// (flushes, mirror reloads, resyncs), which no request waits on.
    round_trips: AtomicU64,
    background_round_trips: AtomicU64,
}

/// Who waits on a call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Request,
    Background,
}

/// How one operation is answered.
enum Route {
    /// Answered on this node.
    Local(StateResult<Reply>),
    /// Needs Redis: its commands (the last one's reply is the answer).
    Remote(Vec<(String, Cmd)>, Expect),
}

/// How to read the reply of a remote operation.
#[derive(Clone, Copy)]
enum Expect {
    Count,
    Rate,
    SetLen,
    Done,
    /// `SET NX`: OK when stored.
    Stored,
    /// `DEL` or a mirror delete: a positive count.
    Removed,
    Value,
    /// A mirror put: -1 when the tier is full.
    MirrorPut(Tier),
}

impl RedisStore {
    /// Connects (or starts disconnected, answering locally, when Redis is
    /// unreachable) and starts the background tasks: probe, flush, pub/sub.
    /// Refuses a reachable server whose eviction policy could drop security
    /// state, unless `allow_eviction`.
    pub async fn start(options: RedisOptions) -> Result<Arc<RedisStore>, EvictionError> {
        let background = options.timeout * BACKGROUND_TIMEOUT_FACTOR;
        let conn = tokio::time::timeout(background, options.endpoint.connect(options.timeout))
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|c| c.map_err(|e| e.to_string()));
        let connected = conn.is_ok();
        if connected {
            check_eviction(&options.endpoint, background, options.allow_eviction).await?;
        }
        let store = Arc::new(RedisStore {
            breaker: Breaker::new(options.failures_to_open, !connected),
            local: MemoryStore::new(options.local),
            features: Aggregator::new(options.local.capacity, options.local.set_member_cap),
            values: ValueCache::new(
                VALUE_COPIES.min(options.local.capacity),
                options.flush_every,
            ),
            scripts: Scripts::new(),
            conn: ArcSwapOption::from(conn.as_ref().ok().cloned().map(Arc::new)),
            unsynced: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            commands: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            background_round_trips: AtomicU64::new(0),
            options,
        });
        match conn {
            Ok(_) => {
                if let Err(e) = store.resync().await {
                    tracing::warn!(error = %e, "cannot load bans and revocations from Redis");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "state backend unreachable at start: answering locally until it is back"
            ),
        }
        let weak = Arc::downgrade(&store);
        let tasks = vec![
            tokio::spawn(probe_loop(weak.clone())).abort_handle(),
            tokio::spawn(flush_loop(weak.clone())).abort_handle(),
            tokio::spawn(subscribe_loop(weak)).abort_handle(),
        ];
        *store.tasks.lock() = tasks;
        Ok(store)
    }

    fn key(&self, key: &str) -> String {
        keys::redis_key(&self.options.key_prefix, key)
    }

    fn unavailable(&self) -> StateError {
        StateError::Unavailable("state backend unreachable".into())
    }

    /// Decides how `op` is answered.
    fn route(&self, op: &Op) -> Route {
        let tier = Tier::of(op_key(op));
        match op {
            Op::Incr { key, delta, ttl } if tier == Tier::Features => {
                Route::Local(Ok(Reply::Count(self.features.incr(key, *delta, *ttl))))
            }
            Op::SetAdd { key, member, ttl } if tier == Tier::Features => {
                Route::Local(Ok(Reply::SetLen(self.features.set_add(key, member, *ttl))))
            }
            Op::Get { .. } if tier.is_mirrored() => Route::Local(self.local_apply(op)),
            Op::Get { key } if tier == Tier::Features => {
                match self.values.get(key, std::time::Instant::now()) {
                    Some(value) => Route::Local(Ok(Reply::Value(value))),
                    None => self.remote_or_fallback(op, tier),
                }
            }
            // A first-seen marker already known to exist is not sent again.
            Op::PutIfAbsent { key, .. }
                if tier == Tier::Features
                    && matches!(
                        self.values.get(key, std::time::Instant::now()),
                        Some(Some(_))
                    ) =>
            {
                Route::Local(Ok(Reply::Flag(false)))
            }
            _ => self.remote_or_fallback(op, tier),
        }
    }

    fn remote_or_fallback(&self, op: &Op, tier: Tier) -> Route {
        if self.breaker.allows() {
            self.remote(op, tier)
        } else {
            Route::Local(self.fallback(op))
        }
    }

    fn remote(&self, op: &Op, tier: Tier) -> Route {
        let prefix = &self.options.key_prefix;
        if tier.is_mirrored() {
            let (index, values) = keys::mirror_keys(prefix, tier);
            let tag = keys::tag_of(&index).to_string();
            let channel = keys::channel(prefix);
            let mut cmd;
            let expect = match op {
                Op::Put { key, value, ttl } => {
                    cmd = redis::cmd("EVALSHA");
                    cmd.arg(self.scripts.mirror_put.get_hash())
                        .arg(2)
                        .arg(&index)
                        .arg(&values)
                        .arg(key)
                        .arg(value.as_slice())
                        .arg(millis(*ttl))
                        .arg(self.options.local.capacity_of(tier))
                        .arg(&channel);
                    Expect::MirrorPut(tier)
                }
                Op::Delete { key } => {
                    cmd = redis::cmd("EVALSHA");
                    cmd.arg(self.scripts.mirror_delete.get_hash())
                        .arg(2)
                        .arg(&index)
                        .arg(&values)
                        .arg(key)
                        .arg(&channel);
                    Expect::Removed
                }
                // Counters, cells and first-use markers make no sense for
                // bans and revocations; answer them locally.
                _ => return Route::Local(self.local_apply(op)),
            };
            return Route::Remote(vec![(tag, cmd)], expect);
        }
        let key = self.key(op_key(op));
        let tag = keys::tag_of(&key).to_string();
        let (cmds, expect) = match op {
            Op::Incr { delta, ttl, .. } => (vec![self.incr_cmd(&key, *delta, *ttl)], Expect::Count),
            Op::RateLimit { limit, cost, .. } => {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts.gcra.get_hash())
                    .arg(1)
                    .arg(&key)
                    .arg(limit.emission_interval_ns.div_ceil(1_000).max(1))
                    .arg(limit.tolerance_ns / 1_000)
                    .arg(*cost);
                (vec![cmd], Expect::Rate)
            }
            Op::SetAdd { member, ttl, .. } => {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts.set_add.get_hash())
                    .arg(1)
                    .arg(&key)
                    .arg(self.options.local.set_member_cap)
                    .arg(millis(*ttl))
                    .arg(member);
                (vec![cmd], Expect::SetLen)
            }
            Op::Put { value, ttl, .. } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key)
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(millis(*ttl));
                (vec![cmd], Expect::Done)
            }
            Op::PutIfAbsent { value, ttl, .. } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key)
                    .arg(value.as_slice())
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(*ttl));
                (vec![cmd], Expect::Stored)
            }
            Op::Get { .. } => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(&key);
                (vec![cmd], Expect::Value)
            }
            Op::Delete { .. } => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(&key);
                (vec![cmd], Expect::Removed)
            }
        };
        Route::Remote(cmds.into_iter().map(|c| (tag.clone(), c)).collect(), expect)
    }

    fn incr_cmd(&self, redis_key: &str, delta: i64, ttl: Duration) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.incr.get_hash())
            .arg(1)
            .arg(redis_key)
            .arg(delta)
            .arg(millis(ttl));
        cmd
    }

    /// Runs an operation on the local tiers (the memory store never awaits).
    fn local_apply(&self, op: &Op) -> StateResult<Reply> {
        crate::ready(self.local.apply(op))
    }

    /// The answer while Redis cannot be asked.
    fn fallback(&self, op: &Op) -> StateResult<Reply> {
        let tier = Tier::of(op_key(op));
        match op {
            Op::RateLimit { key, limit, cost } => {
                let share = limit.per_node(self.options.nodes);
                crate::ready(self.local.rate_limit(key, share, *cost)).map(Reply::Rate)
            }
            Op::PutIfAbsent { .. }
                if tier == Tier::Nonces
                    && self.options.nonces_when_down == NonceFallback::Refuse =>
            {
                Err(self.unavailable())
            }
            Op::Put { .. } | Op::Delete { .. } if tier.is_mirrored() => {
                let reply = self.local_apply(op)?;
                let mut unsynced = self.unsynced.lock();
                if unsynced.len() < MAX_UNSYNCED {
                    unsynced.push(op.clone());
                }
                Ok(reply)
            }
            _ => self.local_apply(op),
        }
    }

    /// Runs commands, one pipeline per hash tag in a cluster (all at once),
    /// one pipeline in all otherwise; loads the scripts once on `NOSCRIPT`.
    async fn query(
        &self,
        cmds: &[(String, Cmd)],
        timeout: Duration,
        path: Path,
    ) -> Result<Vec<Value>, String> {
        let Some(conn) = self.conn.load_full() else {
            return Err("not connected".into());
        };
        let values = self.query_once(&conn, cmds, timeout, path).await?;
        if !values.iter().any(is_noscript) {
            return Ok(values);
        }
        self.load_scripts(&conn, timeout).await?;
        self.query_once(&conn, cmds, timeout, path).await
    }

    async fn query_once(
        &self,
        conn: &Conn,
        cmds: &[(String, Cmd)],
        timeout: Duration,
        path: Path,
    ) -> Result<Vec<Value>, String> {
        let groups: Vec<Vec<usize>> = match conn {
            Conn::Single(_) => vec![(0..cmds.len()).collect()],
            Conn::Cluster(_) => {
                let mut by_tag: HashMap<&str, Vec<usize>> = HashMap::new();
                for (i, (tag, _)) in cmds.iter().enumerate() {
                    by_tag.entry(tag.as_str()).or_default().push(i);
                }
                by_tag.into_values().collect()
            }
        };
        self.commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        let trips = match path {
            Path::Request => &self.round_trips,
            Path::Background => &self.background_round_trips,
        };
        trips.fetch_add(groups.len() as u64, Ordering::Relaxed);
        let runs = groups.iter().map(|group| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in group {
                pipe.add_command(cmds[i].1.clone());
            }
            async move { conn.query(&pipe).await }
        });
        let results = tokio::time::timeout(timeout, join_all(runs))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?;
        let mut values = vec![Value::Nil; cmds.len()];
        for (group, result) in groups.iter().zip(results) {
            let replies = result.map_err(|e| e.to_string())?;
            if replies.len() != group.len() {
                return Err(format!(
                    "{} replies to {} commands",
                    replies.len(),
                    group.len()
                ));
            }
            for (&i, value) in group.iter().zip(replies) {
                values[i] = value;
            }
        }
        Ok(values)
    }

    async fn load_scripts(&self, conn: &Conn, timeout: Duration) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for script in self.scripts.all() {
            pipe.load_script(script);
        }
        match tokio::time::timeout(timeout, conn.query(&pipe)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("script load timed out".into()),
        }
    }

    fn record_failure(&self, error: &str) {
        if self.breaker.failure() {
            tracing::error!(
                error,
                nodes = self.options.nodes,
                "state backend unreachable: answering locally (rate limits at limit / nodes, \
                 bans and revocations from the local copy) until it is back"
            );
        }
    }

    /// Runs a batch: local answers at once, remote ones in one round trip.
    async fn run(&self, ops: &[Op]) -> StateResult<Vec<Reply>> {
        let mut answers: Vec<Option<StateResult<Reply>>> = Vec::with_capacity(ops.len());
        let mut cmds = Vec::new();
        // (op index, index of its answering command, how to read it)
        let mut pending = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.route(op) {
                Route::Local(answer) => answers.push(Some(answer)),
                Route::Remote(op_cmds, expect) => {
                    cmds.extend(op_cmds);
                    pending.push((i, cmds.len() - 1, expect));
                    answers.push(None);
                }
            }
        }
        if !pending.is_empty() {
            match self.query(&cmds, self.options.timeout, Path::Request).await {
                Ok(values) => {
                    self.breaker.success();
                    for (i, at, expect) in pending {
                        answers[i] = Some(self.read(&ops[i], &values[at], expect));
                    }
                }
                Err(error) => {
                    self.record_failure(&error);
                    for (i, _, _) in pending {
                        answers[i] = Some(self.fallback(&ops[i]));
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(self.unavailable())))
            .collect()
    }

    /// Reads one remote reply, and keeps the local mirror in step.
    fn read(&self, op: &Op, value: &Value, expect: Expect) -> StateResult<Reply> {
        if let Value::ServerError(e) = value {
            return Err(server_error(op_key(op), e));
        }
        let reply = match expect {
            Expect::Count => Reply::Count(int(value)?),
            Expect::SetLen => Reply::SetLen(u64::try_from(int(value)?).unwrap_or(0)),
            Expect::Rate => Reply::Rate(rate(value)?),
            Expect::Done => Reply::Done,
            Expect::Stored => Reply::Flag(matches!(value, Value::Okay | Value::SimpleString(_))),
            Expect::Removed => Reply::Flag(int(value)? > 0),
            Expect::Value => Reply::Value(bytes(value)?),
            Expect::MirrorPut(tier) => {
                if int(value)? < 0 {
                    return Err(StateError::TierFull(tier));
                }
                Reply::Done
            }
        };
        let tier = Tier::of(op_key(op));
        if tier.is_mirrored() {
            // The local copy follows at once; other nodes hear of it by pub/sub.
            let _ = self.local_apply(op);
        }
        if tier == Tier::Features {
            self.learn_value(op, &reply);
        }
        Ok(reply)
    }

    /// Keeps the local copies of feature values in step with what Redis said.
    fn learn_value(&self, op: &Op, reply: &Reply) {
        let now = std::time::Instant::now();
        match (op, reply) {
            (Op::Get { key }, Reply::Value(value)) => self.values.learn(key, value.as_deref(), now),
            (Op::PutIfAbsent { key, value, .. }, Reply::Flag(true))
            | (Op::Put { key, value, .. }, _) => self.values.learn(key, Some(value), now),
            (Op::PutIfAbsent { key, .. } | Op::Delete { key }, _) => self.values.forget(key),
            _ => {}
        }
    }

    /// Reloads one mirrored key from Redis (on a pub/sub announcement).
    async fn reload_key(&self, key: &str) -> Result<(), String> {
        let tier = Tier::of(key);
        if !tier.is_mirrored() {
            return Ok(());
        }
        let entries = self.list_tier(tier, Some(key)).await?;
        match entries.first() {
            Some((k, v, ttl)) => {
                let _ = crate::ready(self.local.put(k, v, *ttl));
            }
            None => {
                self.local.remove_key(key);
            }
        }
        Ok(())
    }

    async fn list_tier(
        &self,
        tier: Tier,
        member: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>, Duration)>, String> {
        let (index, values) = keys::mirror_keys(&self.options.key_prefix, tier);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.mirror_list.get_hash())
            .arg(2)
            .arg(&index)
            .arg(&values)
            .arg(self.options.local.capacity_of(tier));
        if let Some(member) = member {
            cmd.arg(member);
        }
        let tag = keys::tag_of(&index).to_string();
        let timeout = self.options.timeout * BACKGROUND_TIMEOUT_FACTOR;
        let values = self.query(&[(tag, cmd)], timeout, Path::Background).await?;
        let Some(Value::Array(flat)) = values.into_iter().next() else {
            return Err("unexpected reply to a mirror listing".into());
        };
        Ok(flat
            .chunks_exact(3)
            .filter_map(|c| {
                let key = String::from_utf8(bytes(&c[0]).ok()??).ok()?;
                let value = bytes(&c[1]).ok()??;
                let ttl = Duration::from_millis(u64::try_from(int(&c[2]).ok()?).ok()?);
                Some((key, value, ttl))
            })
            .collect())
    }

    /// Replays writes made during an outage, then reloads the mirror.
    async fn resync(&self) -> Result<(), String> {
        let unsynced = std::mem::take(&mut *self.unsynced.lock());
        for op in &unsynced {
            if let Route::Remote(cmds, _) = self.remote(op, Tier::of(op_key(op))) {
                let timeout = self.options.timeout * BACKGROUND_TIMEOUT_FACTOR;
                self.query(&cmds, timeout, Path::Background).await?;
            }
        }
        for tier in [Tier::Bans, Tier::Revocations] {
            let entries = self.list_tier(tier, None).await?;
            self.local
                .replace_prefix(mirror_prefix(tier), &entries)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// After an outage Redis may have restarted empty: the bans and
    /// revocations this node still holds and Redis lacks are written back,
    /// so they keep applying on every node until they expire.
    async fn restore_lost(&self) -> Result<(), String> {
        for tier in [Tier::Bans, Tier::Revocations] {
            let known = self.list_tier(tier, None).await?;
            let local = crate::ready(
                self.local
                    .scan_prefix(mirror_prefix(tier), self.options.local.capacity_of(tier)),
            )
            .map_err(|e| e.to_string())?;
            let mut unsynced = self.unsynced.lock();
            for (key, value, ttl) in local {
                if !known.iter().any(|(k, _, _)| *k == key) && unsynced.len() < MAX_UNSYNCED {
                    unsynced.push(Op::Put { key, value, ttl });
                }
            }
        }
        Ok(())
    }

    /// Sends the aggregated risk features; keeps them for later on failure.
    async fn flush(&self) {
        if !self.breaker.allows() {
            return;
        }
        let mut flushes = self.features.take();
        while !flushes.is_empty() {
            let rest = flushes.split_off(flushes.len().min(FLUSH_CHUNK));
            if let Err(failed) = self.flush_chunk(flushes).await {
                self.features.restore(failed);
                self.features.restore(rest);
                return;
            }
            flushes = rest;
        }
    }

    /// Sends one pipeline of additions; gives them back when it fails.
    async fn flush_chunk(&self, flushes: Vec<Flush>) -> Result<(), Vec<Flush>> {
        let mut cmds = Vec::with_capacity(flushes.len());
        for flush in &flushes {
            match flush {
                Flush::Counter { key, delta, ttl } => {
                    let key = self.key(key);
                    let tag = keys::tag_of(&key).to_string();
                    cmds.push((tag, self.incr_cmd(&key, *delta, *ttl)));
                }
                Flush::Set { key, members, ttl } => {
                    let key = self.key(key);
                    let tag = keys::tag_of(&key).to_string();
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(self.scripts.set_add.get_hash())
                        .arg(1)
                        .arg(&key)
                        .arg(self.options.local.set_member_cap)
                        .arg(millis(*ttl));
                    for member in members {
                        cmd.arg(member.as_ref());
                    }
                    cmds.push((tag, cmd));
                }
            }
        }
        let timeout = self.options.timeout * BACKGROUND_TIMEOUT_FACTOR;
        match self.query(&cmds, timeout, Path::Background).await {
            Ok(values) => {
                self.breaker.success();
                let learnt = flushes
                    .iter()
                    .zip(&values)
                    .filter_map(|(flush, value)| {
                        let n = int(value).ok()?;
                        Some(match flush {
                            Flush::Counter { key, .. } => Learnt::Counter {
                                key: key.clone(),
                                value: n,
                            },
                            Flush::Set { key, .. } => Learnt::Set {
                                key: key.clone(),
                                len: u64::try_from(n).unwrap_or(0),
                            },
                        })
                    })
                    .collect();
                self.features.learn(learnt);
            }
            Err(error) => {
                self.record_failure(&error);
                return Err(flushes);
            }
        }
        Ok(())
    }

    /// While the circuit is open: reconnect, resync, close.
    async fn probe(&self) {
        let timeout = self.options.timeout;
        let background = timeout * BACKGROUND_TIMEOUT_FACTOR;
        let connected =
            tokio::time::timeout(background, self.options.endpoint.connect(timeout)).await;
        let conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return tracing::debug!(error = %e, "state backend still unreachable"),
            Err(_) => return tracing::debug!("state backend still unreachable (timeout)"),
        };
        let mut ping = redis::pipe();
        ping.cmd("PING");
        if tokio::time::timeout(background, conn.query(&ping))
            .await
            .map_or(true, |r| r.is_err())
        {
            return;
        }
        self.conn.store(Some(Arc::new(conn)));
        if let Err(e) = self.restore_lost().await {
            return tracing::warn!(error = %e, "state backend answered but resync failed");
        }
        match self.resync().await {
            Ok(()) => {
                self.breaker.close();
                tracing::info!("state backend is back: shared state in use again");
            }
            Err(e) => tracing::warn!(error = %e, "state backend answered but resync failed"),
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

/// Reads `maxmemory-policy` on every server that holds our keys; see
/// [`eviction`]. A server that will not tell (an ACL without `INFO`) is
/// logged and accepted: the operator knows its settings better.
async fn check_eviction(
    endpoint: &Endpoint,
    timeout: Duration,
    allow: bool,
) -> Result<(), EvictionError> {
    let servers = match endpoint.servers().await {
        Ok(servers) => servers,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check Redis' eviction policy");
            return Ok(());
        }
    };
    for client in servers {
        let server = client.get_connection_info().addr().to_string();
        let asked = tokio::time::timeout(timeout, async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("INFO")
                .arg("memory")
                .query_async::<Value>(&mut conn)
                .await
        })
        .await;
        let text = match asked {
            Ok(Ok(value)) => eviction::info_text(&value),
            Ok(Err(e)) => {
                tracing::warn!(%server, error = %e, "cannot check Redis' eviction policy");
                continue;
            }
            Err(_) => {
                tracing::warn!(%server, "cannot check Redis' eviction policy: timed out");
                continue;
            }
        };
        let Some(policy) = text.as_deref().and_then(eviction::policy_of) else {
            tracing::warn!(%server, "Redis did not report its maxmemory-policy");
            continue;
        };
        match eviction::check(&server, policy) {
            Ok(()) => {}
            Err(e) if allow => tracing::warn!(error = %e, "allowed by allow_eviction"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn probe_loop(store: Weak<RedisStore>) {
    loop {
        let Some(every) = store.upgrade().map(|s| s.options.probe_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else { return };
        if !store.breaker.allows() {
            store.probe().await;
        }
    }
}

async fn flush_loop(store: Weak<RedisStore>) {
    loop {
        let Some(every) = store.upgrade().map(|s| s.options.flush_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else { return };
        store.flush().await;
    }
}

/// Listens for changes to bans and revocations; on every (re)subscription
/// reloads the mirror whole, since announcements may have been missed.
async fn subscribe_loop(store: Weak<RedisStore>) {
    loop {
        let Some(strong) = store.upgrade() else {
            return;
        };
        let probe = strong.options.probe_every;
        if !strong.breaker.allows() {
            drop(strong);
            tokio::time::sleep(probe).await;
            continue;
        }
        let channel = keys::channel(&strong.options.key_prefix);
        let background = strong.options.timeout * BACKGROUND_TIMEOUT_FACTOR;
        let subscribed = tokio::time::timeout(background, async {
            let client = strong.options.endpoint.client().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot subscribe to state changes");
                drop(strong);
                tokio::time::sleep(probe).await;
                continue;
            }
            Err(_) => {
                drop(strong);
                tokio::time::sleep(probe).await;
                continue;
            }
        };
        if let Err(e) = strong.resync().await {
            tracing::debug!(error = %e, "mirror reload after subscribing failed");
        }
        drop(strong);
        let mut messages = pubsub.into_on_message();
        loop {
            let next = tokio::time::timeout(MIRROR_RELOAD, messages.next()).await;
            let Some(strong) = store.upgrade() else {
                return;
            };
            match next {
                Ok(Some(msg)) => {
                    let key = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                    if let Err(e) = strong.reload_key(&key).await {
                        tracing::debug!(error = %e, key, "cannot reload a changed key");
                    }
                }
                // The connection is gone: subscribe again.
                Ok(None) => break,
                Err(_) if strong.breaker.allows() => {
                    if let Err(e) = strong.resync().await {
                        tracing::debug!(error = %e, "periodic mirror reload failed");
                    }
                }
                Err(_) => {}
            }
        }
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StateResult<i64> {
        let op = Op::Incr {
            key: key.into(),
            delta,
            ttl,
        };
        match self.one(op).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn rate_limit(&self, key: &str, limit: Gcra, cost: u32) -> StateResult<RateDecision> {
        let op = Op::RateLimit {
            key: key.into(),
            limit,
            cost,
        };
        match self.one(op).await? {
            Reply::Rate(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> StateResult<u64> {
        let op = Op::SetAdd {
            key: key.into(),
            member: member.into(),
            ttl,
        };
        match self.one(op).await? {
            Reply::SetLen(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<()> {
        let op = Op::Put {
            key: key.into(),
            value: value.to_vec(),
            ttl,
        };
        self.one(op).await.map(|_| ())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> StateResult<bool> {
        let op = Op::PutIfAbsent {
            key: key.into(),
            value: value.to_vec(),
            ttl,
        };
        match self.one(op).await? {
            Reply::Flag(stored) => Ok(stored),
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, key: &str) -> StateResult<Option<Vec<u8>>> {
        match self.one(Op::Get { key: key.into() }).await? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(&self, key: &str) -> StateResult<bool> {
        match self.one(Op::Delete { key: key.into() }).await? {
            Reply::Flag(existed) => Ok(existed),
            other => Err(unexpected(&other)),
        }
    }

    /// Served from the local mirror (bans and revocations) and fallback.
    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> StateResult<Vec<(String, Vec<u8>, Duration)>> {
        self.local.scan_prefix(prefix, limit).await
    }

    async fn batch(&self, ops: &[Op]) -> StateResult<Vec<Reply>> {
        self.run(ops).await
    }

    async fn apply(&self, op: &Op) -> StateResult<Reply> {
        self.one(op.clone()).await
    }

    fn stats(&self) -> StoreStats {
        self.local.stats()
    }

    fn tier_stats(&self) -> Vec<TierStats> {
        self.local.tier_stats()
    }

    fn health(&self) -> Health {
        Health {
            backend: "redis",
            available: self.breaker.allows(),
            outages: self.breaker.outages(),
            failures: self.breaker.failures(),
            commands: self.commands.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            background_round_trips: self.background_round_trips.load(Ordering::Relaxed),
        }
    }
}

impl RedisStore {
    async fn one(&self, op: Op) -> StateResult<Reply> {
        let mut replies = self.run(std::slice::from_ref(&op)).await?;
        replies.pop().ok_or_else(|| self.unavailable())
    }
}

/// The key prefix of a mirrored tier in the local store.
fn mirror_prefix(tier: Tier) -> &'static str {
    match tier {
        Tier::Revocations => "pc:revoked:",
        _ => "ban:",
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Incr { key, .. }
        | Op::RateLimit { key, .. }
        | Op::SetAdd { key, .. }
        | Op::Put { key, .. }
        | Op::PutIfAbsent { key, .. }
        | Op::Get { key }
        | Op::Delete { key } => key,
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

fn server_error(key: &str, error: &redis::ServerError) -> StateError {
    match error.code() {
        "WRONGTYPE" => StateError::WrongType(key.to_string()),
        // Redis is out of memory and evicts nothing (`noeviction`): security
        // state is refused rather than lost, like a full local tier.
        "OOM" if Tier::of(key).is_security() => StateError::TierFull(Tier::of(key)),
        _ => StateError::Unavailable(format!("{error:?}")),
    }
}

fn unexpected(reply: &Reply) -> StateError {
    StateError::Unavailable(format!("unexpected reply {reply:?}"))
}

fn int(value: &Value) -> StateResult<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_reply(value)),
        _ => Err(bad_reply(value)),
    }
}

fn bytes(value: &Value) -> StateResult<Option<Vec<u8>>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b.clone())),
        Value::SimpleString(s) => Ok(Some(s.clone().into_bytes())),
        _ => Err(bad_reply(value)),
    }
}

fn rate(value: &Value) -> StateResult<RateDecision> {
    let Value::Array(items) = value else {
        return Err(bad_reply(value));
    };
    let [allowed, retry_us, remaining] = items.as_slice() else {
        return Err(bad_reply(value));
    };
    Ok(RateDecision {
        allowed: int(allowed)? == 1,
        retry_after: Duration::from_micros(u64::try_from(int(retry_us)?).unwrap_or(0)),
        remaining: u64::try_from(int(remaining)?).unwrap_or(0),
    })
}

fn bad_reply(value: &Value) -> StateError {
    StateError::Unavailable(format!("unexpected reply {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_by_kind() {
        let decision = rate(&Value::Array(vec![
            Value::Int(0),
            Value::Int(250_000),
            Value::Int(0),
        ]))
        .expect("rate");
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after, Duration::from_millis(250));
        assert_eq!(int(&Value::BulkString(b"42".to_vec())), Ok(42));
        assert_eq!(bytes(&Value::Nil), Ok(None));
        assert!(rate(&Value::Int(1)).is_err());
    }
}
