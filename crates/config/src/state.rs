//! `[state]`: where counters, rate-limit cells, bans, nonces and revocations
//! are kept: in this node's memory, or in Redis / Valkey shared by every node.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::Checker;

/// The state backend. Changes need a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    /// Gateway nodes sharing the state. While Redis is unreachable each node
    /// enforces every rate limit at limit / nodes on its own.
    pub nodes: u32,
    /// Keys per tier in memory (with Redis: the local fallback and mirror).
    pub tiers: TierCapacities,
    /// The memory backend is saved here on shutdown and every
    /// `snapshot_every_s`, and loaded on start, so that a restart keeps
    /// bans, nonces, limits and the risk history. Empty: not saved. Only
    /// `portcullis run` saves it (not a gateway embedded in tests).
    pub snapshot: PathBuf,
    pub snapshot_every_s: u64,
    pub redis: RedisConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Memory,
            nodes: 1,
            tiers: TierCapacities::default(),
            snapshot: PathBuf::from("portcullis-state.bin"),
            snapshot_every_s: 60,
            redis: RedisConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    Memory,
    Redis,
}

/// Keys kept per tier. Rate-limit cells and risk features evict their least
/// recently used keys; the security tiers never evict: when one is full the
/// gateway refuses new work of that kind (new bans, signed requests,
/// challenge verifications) rather than forget older security state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TierCapacities {
    pub features: usize,
    pub limits: usize,
    pub bans: usize,
    pub revocations: usize,
    pub nonces: usize,
    pub challenges: usize,
}

impl Default for TierCapacities {
    fn default() -> Self {
        TierCapacities {
            features: 1_000_000,
            limits: 1_000_000,
            bans: 100_000,
            revocations: 100_000,
            nonces: 1_000_000,
            challenges: 250_000,
        }
    }
}

/// How the nodes reach Redis (>= 6) or Valkey.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub mode: RedisMode,
    /// `redis://host:port/db`, or `rediss://` for TLS. Standalone: one URL;
    /// cluster: seed nodes; sentinel: the sentinels.
    pub urls: Vec<String>,
    /// Sentinel mode: the monitored master's name.
    pub sentinel_master: String,
    /// ACL user and password (a URL may carry them instead).
    /// `PORTCULLIS_REDIS_PASSWORD` in the environment wins over `password`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Time allowed for one call (one pipeline) before it counts as failed.
    pub timeout_ms: u64,
    /// Consecutive failed calls that open the circuit: answers become local
    /// until a probe succeeds.
    pub failures_to_open: u32,
    /// How often an open circuit probes Redis.
    pub probe_ms: u64,
    /// How often locally aggregated risk-feature counters are flushed.
    pub flush_ms: u64,
    /// While Redis is unreachable: `refuse` signature nonces (the caller
    /// answers 503 on signed routes) or check them against this node only.
    pub nonces_when_down: NonceFallback,
    /// Prefix of every key, so several deployments can share one server.
    pub key_prefix: String,
    /// Start even when the server's `maxmemory-policy` is not `noeviction`
    /// (it may then evict bans, nonces and revocations under memory
    /// pressure); a warning is logged instead of refusing to start.
    pub allow_eviction: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            mode: RedisMode::Standalone,
            urls: vec!["redis://127.0.0.1:6379".into()],
            sentinel_master: "mymaster".into(),
            username: None,
            password: None,
            timeout_ms: 30,
            failures_to_open: 3,
            probe_ms: 500,
            flush_ms: 500,
            nonces_when_down: NonceFallback::Refuse,
            key_prefix: "pc".into(),
            allow_eviction: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    Standalone,
    Cluster,
    Sentinel,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NonceFallback {
    Refuse,
    Local,
}

pub(crate) fn check_state(state: &StateConfig, c: &mut Checker) {
    c.check(
        (1..=1024).contains(&state.nodes),
        "state.nodes",
        "must be between 1 and 1024",
    );
    c.check(
        state.snapshot_every_s >= 1,
        "state.snapshot_every_s",
        "must be at least 1",
    );
    let t = &state.tiers;
    for (name, size) in [
        ("features", t.features),
        ("limits", t.limits),
        ("bans", t.bans),
        ("revocations", t.revocations),
        ("nonces", t.nonces),
        ("challenges", t.challenges),
    ] {
        c.check(
            (1..=100_000_000).contains(&size),
            format!("state.tiers.{name}"),
            "must be between 1 and 100000000",
        );
    }
    if state.backend != StateBackend::Redis {
        return;
    }
    let r = &state.redis;
    c.check(
        !r.urls.is_empty(),
        "state.redis.urls",
        "must name at least one server",
    );
    for (i, url) in r.urls.iter().enumerate() {
        c.check(
            url.starts_with("redis://") || url.starts_with("rediss://"),
            format!("state.redis.urls[{i}]"),
            "must start with redis:// or rediss://",
        );
    }
    c.check(
        r.mode != RedisMode::Sentinel || !r.sentinel_master.is_empty(),
        "state.redis.sentinel_master",
        "must name the master in sentinel mode",
    );
    c.check(
        (1..=1_000).contains(&r.timeout_ms),
        "state.redis.timeout_ms",
        "must be between 1 and 1000",
    );
    c.check(
        r.failures_to_open >= 1,
        "state.redis.failures_to_open",
        "must be at least 1",
    );
    c.check(
        (10..=60_000).contains(&r.probe_ms),
        "state.redis.probe_ms",
        "must be between 10 and 60000",
    );
    c.check(
        (10..=1_000).contains(&r.flush_ms),
        "state.redis.flush_ms",
        "must be between 10 and 1000 (risk features are flushed at least once a second)",
    );
    c.check(
        !r.key_prefix.contains(['{', '}']),
        "state.redis.key_prefix",
        "must not contain braces (they delimit hash tags)",
    );
}

#[cfg(test)]
mod tests {
    use crate::{Config, StateBackend};

    #[test]
    fn redis_section_parses_and_is_checked() {
        let text = "[state]\nbackend = \"redis\"\nnodes = 3\n[state.redis]\nurls = [\"http://x\"]\nflush_ms = 5000\n";
        let errors = Config::parse(text).unwrap_err().field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["state.redis.urls[0]", "state.redis.flush_ms"]);
        let ok = Config::parse("[state]\nbackend = \"redis\"\nnodes = 3\n").expect("valid");
        assert_eq!(ok.state.backend, StateBackend::Redis);
        assert_eq!(ok.state.redis.timeout_ms, 30);
    }
}
