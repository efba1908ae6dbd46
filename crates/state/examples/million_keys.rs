//! Memory cost of one million keys in each tier of the in-memory store, as
//! resident set growth. Give one tier per run: freed memory is reused by the
//! allocator, so a second tier in the same process would look cheaper.
//!
//!   cargo run --release -p portcullis-state --example million_keys KEYS TIER

use std::time::Duration;

use portcullis_state::{Gcra, MemoryStore, MemoryStoreOptions, StateStore, Tier};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Adds key `i` of a tier the way its caller does.
async fn add(store: &MemoryStore, tier: Tier, i: usize) {
    let ttl = Duration::from_secs(600);
    let result = match tier {
        Tier::Limits => store
            .rate_limit(
                &format!("rl:api-per-device:dev-{i:016x}"),
                Gcra::per_second(10.0, 10),
                1,
            )
            .await
            .map(|_| ()),
        Tier::Features => store
            .incr(&format!("rk:v:dv:29000000:dev-{i:016x}"), 1, ttl)
            .await
            .map(|_| ()),
        Tier::Bans => {
            store
                .put(
                    &format!("ban:ip:10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                    b"rate_limit",
                    ttl,
                )
                .await
        }
        Tier::Revocations => store.put(&format!("pc:revoked:{i:032x}"), b"1", ttl).await,
        Tier::Nonces => store
            .put_if_absent(&format!("pc:n:{:016x}:{i:032x}", i / 64), b"", ttl)
            .await
            .map(|_| ()),
        Tier::Challenges => store
            .put_if_absent(&format!("pc:c:{i:022x}"), b"", ttl)
            .await
            .map(|_| ()),
    };
    result.expect("add");
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let only = std::env::args().nth(2);
    for tier in Tier::ALL
        .into_iter()
        .filter(|t| only.as_deref().is_none_or(|name| name == t.name()))
    {
        let before = rss_kib();
        let store = MemoryStore::new(MemoryStoreOptions {
            capacity: keys,
            limits_capacity: keys,
            bans_capacity: keys,
            revocations_capacity: keys,
            nonces_capacity: keys,
            challenges_capacity: keys,
            ..MemoryStoreOptions::default()
        });
        let started = std::time::Instant::now();
        runtime.block_on(async {
            for i in 0..keys {
                add(&store, tier, i).await;
            }
        });
        let elapsed = started.elapsed();
        let after = rss_kib();
        let held = store
            .tier_stats()
            .into_iter()
            .find(|s| s.tier == tier)
            .map_or(0, |s| s.entries);
        println!(
            "{tier:>12}: {held} keys in {elapsed:.2?}, {:.1} MiB ({:.0} bytes/key)",
            after.saturating_sub(before) as f64 / 1024.0,
            after.saturating_sub(before) as f64 * 1024.0 / held.max(1) as f64
        );
        drop(store);
    }
}
