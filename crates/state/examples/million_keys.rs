//! Memory cost of one million distinct rate-limit keys in the in-memory
//! store (target: < 200 MB), as resident set growth.
//!
//!   cargo run --release -p portcullis-state --example million_keys [KEYS]

use portcullis_state::{Gcra, MemoryStore, MemoryStoreOptions, StateStore};

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

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let store = MemoryStore::new(MemoryStoreOptions {
        capacity: keys,
        ..MemoryStoreOptions::default()
    });
    let limit = Gcra::per_second(10.0, 10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    runtime.block_on(async {
        for i in 0..keys {
            let key = format!("rl:api-per-device:dev-{i:016x}");
            store.rate_limit(&key, limit, 1).await.expect("rate limit");
        }
    });
    let elapsed = started.elapsed();
    let after = rss_kib();
    let stats = store.stats();
    println!(
        "{} keys held ({} evicted) in {:.2?}: RSS {} MiB -> {} MiB, {:.1} MiB for the keys ({:.0} bytes/key)",
        stats.entries,
        stats.evictions,
        elapsed,
        before / 1024,
        after / 1024,
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / stats.entries.max(1) as f64
    );
}
