//! The Redis backend against a real `redis-server` (Debian package
//! `redis-server`), started by each test on a free loopback port in a
//! temporary directory. Skipped, with a message, only when the binary is
//! absent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_state::{
    Endpoint, Gcra, NonceFallback, Op, RedisMode, RedisOptions, RedisStore, Reply, StateError,
    StateStore,
};

struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    /// Server settings on top of the defaults (`--name value`).
    settings: Vec<String>,
    child: Option<Child>,
}

fn redis_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    fn start_with(settings: &[&str]) -> Option<RedisServer> {
        let Some(binary) = redis_binary() else {
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer {
            binary,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_port(self.port, self.dir.path());
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_port(port: u16, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "redis-server did not listen on {port} (dir {})",
        dir.display()
    );
}

fn options(server: &RedisServer, nodes: u32) -> RedisOptions {
    let mut options = RedisOptions::new(Endpoint {
        mode: RedisMode::Standalone,
        urls: vec![server.url()],
        username: None,
        password: None,
    });
    options.nodes = nodes;
    options.probe_every = Duration::from_millis(100);
    options.flush_every = Duration::from_millis(100);
    options
}

async fn nodes(server: &RedisServer, n: u32) -> Vec<Arc<RedisStore>> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(RedisStore::start(options(server, n)).await.expect("start"));
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_device_limit_holds_across_three_nodes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 3).await;
    let limit = Gcra::per_second(10.0, 1);
    let start = Instant::now();
    let run = Duration::from_secs(3);
    let mut allowed = 0u32;
    let mut i = 0;
    while start.elapsed() < run {
        let decision = stores[i % 3]
            .rate_limit("rl:vote:device-1", limit, 1)
            .await
            .expect("decision");
        allowed += u32::from(decision.allowed);
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // One at once (the burst), then ten a second. Three nodes never let
    // more through than one would; a loaded machine that asks less often
    // gets fewer (burst 1 cannot save up), so the floor is looser.
    let expected = 1.0 + 10.0 * elapsed;
    let allowed = f64::from(allowed);
    assert!(
        allowed <= expected * 1.1 && allowed >= expected * 0.7,
        "{allowed} allowed of {i} in {elapsed:.2}s, expected {expected:.1}"
    );
    assert!(stores.iter().all(|s| s.health().available));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_made_on_one_node_reaches_another_within_a_second() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 3).await;
    let made = Instant::now();
    stores[0]
        .put("ban:ip:203.0.113.9", b"flood", Duration::from_secs(600))
        .await
        .expect("ban");
    loop {
        let bans = stores[2].scan_prefix("ban:", 100).await.expect("scan");
        if bans
            .iter()
            .any(|(k, v, _)| k == "ban:ip:203.0.113.9" && v == b"flood")
        {
            break;
        }
        assert!(
            made.elapsed() < Duration::from_secs(1),
            "ban not seen in 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let revoked = Instant::now();
    stores[1]
        .put("pc:revoked:cid-7", b"1", Duration::from_secs(600))
        .await
        .expect("revoke");
    while stores[2]
        .get("pc:revoked:cid-7")
        .await
        .expect("get")
        .is_none()
    {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "revocation not seen in 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stores[2].delete("ban:ip:203.0.113.9").await.expect("lift"));
    let lifted = Instant::now();
    while !stores[0]
        .scan_prefix("ban:", 100)
        .await
        .expect("scan")
        .is_empty()
    {
        assert!(
            lifted.elapsed() < Duration::from_secs(1),
            "lift not seen in 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_used_on_one_node_is_refused_on_another() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 2).await;
    let ttl = Duration::from_secs(60);
    assert_eq!(
        stores[0].put_if_absent("pc:n:kid:n1", b"", ttl).await,
        Ok(true)
    );
    assert_eq!(
        stores[1].put_if_absent("pc:n:kid:n1", b"", ttl).await,
        Ok(false)
    );
    assert_eq!(
        stores[1].put_if_absent("pc:n:kid:n2", b"", ttl).await,
        Ok(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_feature_counters_are_aggregated_and_flushed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 2).await;
    let ttl = Duration::from_secs(120);
    for _ in 0..5 {
        stores[0]
            .incr("rk:v:ip:1:10.0.0.1", 1, ttl)
            .await
            .expect("incr");
        stores[1]
            .incr("rk:v:ip:1:10.0.0.1", 1, ttl)
            .await
            .expect("incr");
    }
    stores[0]
        .set_add("rk:apd:1:2:dev", "a", ttl)
        .await
        .expect("add");
    stores[1]
        .set_add("rk:apd:1:2:dev", "b", ttl)
        .await
        .expect("add");
    // Answers are local at once; a flush after a key's use brings back what
    // the other nodes added.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stores[0]
        .incr("rk:v:ip:1:10.0.0.1", 0, ttl)
        .await
        .expect("incr");
    stores[0]
        .set_add("rk:apd:1:2:dev", "a", ttl)
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stores[0].incr("rk:v:ip:1:10.0.0.1", 0, ttl).await, Ok(10));
    assert_eq!(stores[0].set_add("rk:apd:1:2:dev", "a", ttl).await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_never_blocks_and_the_nodes_resync_after_it() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 3).await;
    let ttl = Duration::from_secs(600);
    stores[0]
        .put("ban:ip:198.51.100.1", b"before", ttl)
        .await
        .expect("ban");
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.kill();
    let limit = Gcra::per_second(30.0, 3);
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let started = Instant::now();
        let _ = stores[i % 3].rate_limit("rl:api:10.1.1.1", limit, 1).await;
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(100),
        "a call took {slowest:?}"
    );
    assert!(stores.iter().all(|s| !s.health().available));
    assert!(stores.iter().all(|s| s.health().outages >= 1));

    // Local answers: this node's share of the limit (30/s, burst 3 over 3
    // nodes: burst 1), known bans, nonces refused.
    let started = Instant::now();
    let first = stores[0]
        .rate_limit("rl:api:10.9.9.9", limit, 1)
        .await
        .expect("local");
    let second = stores[0]
        .rate_limit("rl:api:10.9.9.9", limit, 1)
        .await
        .expect("local");
    assert!(first.allowed && !second.allowed);
    assert!(started.elapsed() < Duration::from_millis(10));
    let bans = stores[2].scan_prefix("ban:", 10).await.expect("scan");
    assert_eq!(bans.len(), 1, "the known ban keeps applying");
    assert!(matches!(
        stores[1].put_if_absent("pc:n:kid:x", b"", ttl).await,
        Err(StateError::Unavailable(_))
    ));
    stores[1]
        .put("ban:ip:198.51.100.2", b"during", ttl)
        .await
        .expect("a ban during the outage applies locally");

    // Restarted empty: the nodes reconnect, write back what Redis lost, and
    // each sees every ban again.
    server.spawn();
    let back = Instant::now();
    loop {
        let all_back = stores.iter().all(|s| s.health().available);
        let mut seen = true;
        for store in &stores {
            seen &= store.scan_prefix("ban:", 10).await.expect("scan").len() == 2;
        }
        if all_back && seen {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "no resync in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stores[0].put_if_absent("pc:n:kid:y", b"", ttl).await,
        Ok(true)
    );
    assert_eq!(
        stores[2].put_if_absent("pc:n:kid:y", b"", ttl).await,
        Ok(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_redis_is_down_and_joins_when_it_is_up() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.kill();
    let mut options = options(&server, 2);
    options.nonces_when_down = NonceFallback::Local;
    let started = Instant::now();
    let store = RedisStore::start(options).await.expect("start");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!store.health().available);
    let ttl = Duration::from_secs(60);
    assert_eq!(store.put_if_absent("pc:n:kid:z", b"", ttl).await, Ok(true));
    assert_eq!(store.put_if_absent("pc:n:kid:z", b"", ttl).await, Ok(false));
    server.spawn();
    let back = Instant::now();
    while !store.health().available {
        assert!(back.elapsed() < Duration::from_secs(5), "did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.put_if_absent("pc:n:kid:w", b"", ttl).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_may_evict_security_state_is_refused_at_start() {
    let Some(server) =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"])
    else {
        return;
    };
    let refused = RedisStore::start(options(&server, 1)).await;
    let error = refused.err().expect("refused").to_string();
    assert!(
        error.contains("volatile-lru") && error.contains("noeviction"),
        "{error}"
    );
    let mut allowed = options(&server, 1);
    allowed.allow_eviction = true;
    let store = RedisStore::start(allowed)
        .await
        .expect("allowed by the flag");
    assert!(store.health().available);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noeviction_server_is_accepted() {
    let Some(server) =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    let store = RedisStore::start(options(&server, 1)).await.expect("start");
    assert!(store.health().available);
}

/// What the risk stage sends for a returning device: counters and sets,
/// which are aggregated locally, and values read on every request.
fn risk_batch(device: &str, now_ms: u64) -> Vec<Op> {
    let ttl = Duration::from_secs(120);
    vec![
        Op::Get {
            key: "rk:epoch".into(),
        },
        Op::PutIfAbsent {
            key: "rk:epoch".into(),
            value: now_ms.to_be_bytes().to_vec(),
            ttl: Duration::from_secs(3600),
        },
        Op::Incr {
            key: format!("rk:v:dv:1:{device}"),
            delta: 1,
            ttl,
        },
        Op::Get {
            key: format!("rk:fs:dv:{device}"),
        },
        Op::PutIfAbsent {
            key: format!("rk:fs:dv:{device}"),
            value: now_ms.to_be_bytes().to_vec(),
            ttl: Duration::from_secs(3600),
        },
        Op::SetAdd {
            key: format!("rk:dpi:{device}"),
            member: "10.0.0.1".into(),
            ttl,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request_are_counted_and_feature_reads_stay_local() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = nodes(&server, 2).await;
    let (a, b) = (&stores[0], &stores[1]);
    let trips = |s: &RedisStore| s.health().round_trips;

    // A returning device's risk batch: the first costs one round trip, the
    // next ones none until the copies are older than flush_every.
    let before = trips(a);
    let first = a.batch(&risk_batch("d1", 1_000)).await.expect("batch");
    assert_eq!(trips(a) - before, 1);
    assert_eq!(first[1], Reply::Flag(true), "the epoch was set");
    let before = trips(a);
    for n in 0..20 {
        let replies = a.batch(&risk_batch("d1", 2_000 + n)).await.expect("batch");
        assert_eq!(
            replies[0],
            Reply::Value(Some(1_000u64.to_be_bytes().to_vec()))
        );
        assert_eq!(replies[4], Reply::Flag(false), "first seen is kept");
    }
    assert_eq!(trips(a) - before, 0, "20 risk batches, no round trip");

    // Another node's first request for the same device finds what this one
    // wrote.
    let on_b = b.batch(&risk_batch("d1", 9_000)).await.expect("batch");
    assert_eq!(on_b[3], Reply::Value(Some(1_000u64.to_be_bytes().to_vec())));

    // Copies are asked again once older than flush_every.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = trips(a);
    a.batch(&risk_batch("d1", 3_000)).await.expect("batch");
    assert_eq!(trips(a) - before, 1);

    // A rate limit and a nonce: one round trip for both, in one batch.
    let limit = Gcra::per_second(10.0, 10);
    let request = [
        Op::RateLimit {
            key: "rl:api:dv:d1".into(),
            limit,
            cost: 1,
        },
        Op::PutIfAbsent {
            key: "pc:n:kid1:nonce-1".into(),
            value: Vec::new(),
            ttl: Duration::from_secs(300),
        },
    ];
    let before = trips(a);
    let replies = a.batch(&request).await.expect("batch");
    assert_eq!(trips(a) - before, 1);
    assert_eq!(replies[1], Reply::Flag(true));
    assert_eq!(
        b.put_if_absent("pc:n:kid1:nonce-1", b"", Duration::from_secs(300))
            .await,
        Ok(false),
        "nonces are never answered from a copy"
    );
}
