//! What the Redis backend adds per decision, on loopback: latency p50/p99 of
//! a request's state batch (two rate limits, a signature nonce and eight
//! risk-feature counters) against the memory backend, round trips and Redis
//! commands per request, and Redis memory per million keys per tier.
//!
//!   cargo run --release -p portcullis-state --example redis_bench [REQUESTS]
//!
//! Starts its own `redis-server` on a free loopback port (Debian package
//! `redis-server`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_state::{
    Endpoint, Gcra, MemoryStore, MemoryStoreOptions, Op, RedisMode, RedisOptions, RedisStore,
    StateStore,
};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &std::path::Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

fn request(i: usize) -> Vec<Op> {
    let ttl = Duration::from_secs(120);
    let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
    let device = format!("dev-{}", i % 5_000);
    let mut ops = vec![
        Op::RateLimit {
            key: format!("rl:api:{ip}"),
            limit: Gcra::per_second(100.0, 100),
            cost: 1,
        },
        Op::RateLimit {
            key: format!("rl:per-device:{device}"),
            limit: Gcra::per_second(100.0, 100),
            cost: 1,
        },
        Op::PutIfAbsent {
            key: format!("pc:n:kid:{i:032x}"),
            value: Vec::new(),
            ttl,
        },
    ];
    for kind in ["ip", "dv", "ac", "rt"] {
        for minute in [1, 0] {
            ops.push(Op::Incr {
                key: format!("rk:v:{kind}:{minute}:{device}"),
                delta: minute,
                ttl,
            });
        }
    }
    ops
}

async fn latencies(store: &dyn StateStore, requests: usize, offset: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(requests);
    for i in 0..requests {
        let ops = request(offset + i);
        let started = Instant::now();
        store.batch(&ops).await.expect("batch");
        out.push(started.elapsed());
    }
    out.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

async fn info(port: u16, field: &str) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let text: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .expect("info");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Redis memory for `n` keys of one kind, per million keys.
async fn memory_per_million(
    store: &RedisStore,
    port: u16,
    n: usize,
    make: impl Fn(usize) -> Op,
) -> f64 {
    let before = info(port, "used_memory").await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let ops: Vec<Op> = chunk.iter().map(|&i| make(i)).collect();
        store.batch(&ops).await.expect("load");
    }
    let after = info(port, "used_memory").await;
    after.saturating_sub(before) as f64 / n as f64 * 1e6 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, port) = start_server(dir.path());
    let mut options = RedisOptions::new(Endpoint {
        mode: RedisMode::Standalone,
        urls: vec![format!("redis://127.0.0.1:{port}")],
        username: None,
        password: None,
    });
    // Loading a million keys pipelines 500 scripts at once.
    options.timeout = Duration::from_millis(500);
    options.local.bans_capacity = 1_000_000;
    let redis = RedisStore::start(options).await.expect("start");
    let memory = MemoryStore::new(MemoryStoreOptions::default());

    latencies(&*redis, 1_000, 0).await;
    let base = latencies(&memory, requests, 0).await;
    let before = redis.health();
    let started = Instant::now();
    let shared = latencies(&*redis, requests, 1_000).await;
    let elapsed = started.elapsed();
    let critical = redis.health();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = redis.health();
    let per_request = |n: u64| n as f64 / requests as f64;
    println!("{requests} requests, each one batch: 2 rate limits, 1 nonce, 8 feature counters");
    println!(
        "memory backend: p50 {:?} p99 {:?}",
        pct(&base, 0.5),
        pct(&base, 0.99)
    );
    println!(
        "redis backend:  p50 {:?} p99 {:?} ({:.0} requests/s on one task)",
        pct(&shared, 0.5),
        pct(&shared, 0.99),
        requests as f64 / elapsed.as_secs_f64()
    );
    println!(
        "per request: {:.2} round trips and {:.2} commands sent, of which background flushes of \
         feature counters {:.2} commands (one per counter used in a flush interval)",
        per_request(after.round_trips - before.round_trips),
        per_request(after.commands - before.commands),
        per_request(after.commands - before.commands) - 3.0
    );
    println!(
        "  (during the run, flushes included: {:.2} commands/request)",
        per_request(critical.commands - before.commands)
    );
    let ttl = Duration::from_secs(600);
    let n = 200_000;
    let limits = memory_per_million(&redis, port, n, |i| Op::RateLimit {
        key: format!("rl:api-per-device:dev-{i:016x}"),
        // A cell lives until it is full again: one an hour keeps it.
        limit: Gcra::per_second(1.0 / 3600.0, 10),
        cost: 1,
    })
    .await;
    let nonces = memory_per_million(&redis, port, n, |i| Op::PutIfAbsent {
        key: format!("pc:n:{:016x}:{i:032x}", i / 64),
        value: Vec::new(),
        ttl,
    })
    .await;
    let bans = memory_per_million(&redis, port, n, |i| Op::Put {
        key: format!("ban:ip:10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
        value: b"rate_limit".to_vec(),
        ttl,
    })
    .await;
    let features = memory_per_million(&redis, port, n, |i| Op::Put {
        key: format!("rk:fs:dv:dev-{i:016x}"),
        value: vec![0; 16],
        ttl,
    })
    .await;
    println!(
        "redis memory per million keys (from {n}): limits {limits:.0} MiB, nonces {nonces:.0} MiB, \
         bans {bans:.0} MiB, features (first-seen markers) {features:.0} MiB"
    );
}
