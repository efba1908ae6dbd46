//! Cluster mode end to end: three `portcullis run` processes share one real
//! `redis-server` (state) and one real PostgreSQL (events, console users,
//! policies), with no load balancer in front: the test itself sends to each
//! node in turn.
//!
//! Node 3 reaches Redis through a TCP relay the test can cut, so that one
//! node loses Redis while the others keep it.
//!
//! Skipped, with a message, when `redis-server` or PostgreSQL is not
//! installed (`scripts/setup.sh` installs both).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_challenge::signature;
use portcullis_challenge::{ClientReport, Platform, SigningKey, pow};
use portcullis_store::pg::{TempPostgres, TempPostgresError};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "cluster-test-admin-token-0123456789";
/// Shared by the nodes, so that a clearance issued by one verifies on all.
const CHALLENGE_SECRET: &str = "5f1c0e9b7a2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";
/// The per-device limit: a burst of 20, refilled at one a minute, so that
/// the count in a run of a few seconds is the burst and nothing else.
const DEVICE_BURST: u32 = 20;

// ---------------------------------------------------------------- services

struct Redis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let binary = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| which("redis-server"));
        let Some(binary) = binary else {
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        let dir = TempDir::new("redis");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_ok(), "redis");
        Some(Redis {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A TCP relay to Redis for one node; [`Relay::cut`] closes every
/// connection and refuses new ones, as a network partition would, and
/// [`Relay::restore`] heals it.
struct Relay {
    port: u16,
    to: u16,
    /// Each accept loop serves while the generation is the one it started in.
    generation: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay");
        let relay = Relay {
            port: listener.local_addr().expect("addr").port(),
            to,
            generation: Arc::new(AtomicU64::new(0)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (to, generation, streams) = (
            self.to,
            Arc::clone(&self.generation),
            Arc::clone(&self.open),
        );
        let mine = generation.load(Ordering::SeqCst);
        std::thread::spawn(move || {
            while generation.load(Ordering::SeqCst) == mine {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let mut held = streams.lock().expect("relay lock");
                for (from, into) in [(&client, &server), (&server, &client)] {
                    let (Ok(mut from), Ok(mut into)) = (from.try_clone(), into.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
                held.extend([client, server]);
            }
            // The listener is dropped here: new connections are refused.
        });
    }

    fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for stream in self.open.lock().expect("relay lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (once the cut loop has let it go).
    fn restore(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => return self.serve(listener),
                Err(e) => assert!(Instant::now() < deadline, "relay port: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The origin behind the nodes: 200 `ok` to every request, keep-alive.
fn start_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("origin");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_origin(stream));
        }
    });
    port
}

fn serve_origin(mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if pending.len() < end + 4 + length {
                break;
            }
            pending.drain(..end + 4 + length);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).is_err() {
                return;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-cluster-{what}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------- nodes

struct Node {
    name: &'static str,
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn start(name: &'static str, config: &Path, dir: &Path, origin: u16) -> Node {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--listen", &listen.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--upstream", &format!("http://127.0.0.1:{origin}")])
            .current_dir(dir)
            .env("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PC_CLUSTER_SECRET", CHALLENGE_SECRET)
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start portcullis");
        Node {
            name,
            child,
            listen,
            admin,
            log,
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log_text());
            }
            let healthy = admin(self, "GET", "/healthz", None).is_ok_and(|a| a.status == 200);
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(redis_port: u16, pg_url: &str) -> String {
    format!(
        r#"
[client_ip]
trusted_proxies = ["127.0.0.1/32"]

[events]
log = false

[store]
backend = "postgres"
url = "{pg_url}"
batch_delay_ms = 20

[console]
enabled = true

[state]
backend = "redis"
nodes = 3

[state.redis]
urls = ["redis://127.0.0.1:{redis_port}"]
timeout_ms = 50
probe_ms = 200
nonces_when_down = "refuse"

[challenge]
secret_env = "PC_CLUSTER_SECRET"
difficulty = 4

[[rate_limits]]
name = "per-device"
path = "/limited/"
key = ["device"]
rate = 0.0167
burst = {DEVICE_BURST}
action = "reject"

[[policies]]
name = "signed"
path = "/signed/"
clearance = "required"
signature = true
"#
    )
}

// -------------------------------------------------------------------- HTTP

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 exchange on a new connection (`Connection: close`).
fn http(
    to: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| std::io::Error::other("malformed HTTP answer"))
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line]).ok()?.trim(), 16).ok()?;
        data = &data[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A request from client `ip` (named in `x-forwarded-for`) with `device`.
fn get(node: &Node, target: &str, ip: &str, device: &str) -> Answer {
    let headers = [
        ("x-forwarded-for", ip.to_owned()),
        ("x-pc-device", device.to_owned()),
        (
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) MicroMessenger/8.0.49"
                .to_owned(),
        ),
    ];
    http(node.listen, "GET", target, &headers, b"").expect("gateway answers")
}

fn admin(node: &Node, method: &str, target: &str, body: Option<Value>) -> std::io::Result<Answer> {
    let mut headers = vec![("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("content-type", "application/json".into()));
    }
    http(node.admin, method, target, &headers, body.as_bytes())
}

// ---------------------------------------------------------------- the SDK

/// A clearance and its signing key, obtained as the SDK does.
struct Clearance {
    cid: String,
    token: String,
    key: SigningKey,
}

fn clear(node: &Node, ip: &str, device: &str) -> Clearance {
    let challenge = get(node, "/.portcullis/challenge", ip, device);
    assert_eq!(challenge.status, 200, "challenge: {:?}", challenge);
    let challenge = challenge.json();
    let nonce = pow::decode_nonce(challenge["nonce"].as_str().expect("nonce")).expect("nonce");
    let difficulty =
        u8::try_from(challenge["difficulty"].as_u64().expect("difficulty")).expect("difficulty");
    let solution = pow::solve(&nonce, difficulty);
    let report = ClientReport {
        sdk: "miniprogram/0.1.0".into(),
        runtime: "miniprogram".into(),
        platform: Platform::Ios,
        user_agent: "iPhone15,2".into(),
        solve_ms: (solution / 2_000).max(5),
        since_start_ms: 1_500,
        languages: vec!["zh-CN".into()],
        timezone: "Asia/Shanghai".into(),
        tz_offset_min: 480,
        touch: true,
        max_touch_points: 5,
        cores: 6,
        ..ClientReport::default()
    };
    let body = json!({ "token": challenge["token"], "solution": solution, "report": report });
    let headers = [
        ("x-forwarded-for", ip.to_owned()),
        ("x-pc-device", device.to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    let verified = http(
        node.listen,
        "POST",
        "/.portcullis/verify",
        &headers,
        body.to_string().as_bytes(),
    )
    .expect("verify");
    assert_eq!(verified.status, 200, "verify: {verified:?}");
    let verified = verified.json();
    let mut key = [0u8; 32];
    let decoded = URL_SAFE_NO_PAD
        .decode_slice(verified["signing_key"].as_str().expect("key"), &mut key)
        .expect("key is base64url");
    assert_eq!(decoded, 32);
    Clearance {
        cid: verified["cid"].as_str().expect("cid").to_owned(),
        token: verified["clearance"]
            .as_str()
            .expect("clearance")
            .to_owned(),
        key: SigningKey::from_bytes(key),
    }
}

impl Clearance {
    /// The headers of a signed `GET target` with a fresh nonce.
    fn sign(&self, target: &str) -> Vec<(&'static str, String)> {
        static NONCES: AtomicU64 = AtomicU64::new(0);
        let nonce = format!(
            "n{}x{}",
            NONCES.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let call = signature::SdkCall {
            method: "GET",
            target,
            body: b"",
            created,
            nonce: &nonce,
        };
        signature::sdk_headers(&self.key, &self.cid, &self.token, &call)
            .expect("signs")
            .into()
    }
}

fn signed_get(
    node: &Node,
    target: &str,
    ip: &str,
    device: &str,
    signed: &[(&str, String)],
) -> Answer {
    let mut headers = vec![
        ("x-forwarded-for", ip.to_owned()),
        ("x-pc-device", device.to_owned()),
    ];
    headers.extend(signed.iter().cloned());
    http(node.listen, "GET", target, &headers, b"").expect("gateway answers")
}

// ------------------------------------------------------------------- tests

#[test]
fn three_nodes_share_state_events_and_policies() {
    let started = Instant::now();
    let Some(redis) = Redis::start() else { return };
    let postgres = match TempPostgres::start() {
        Ok(pg) => pg,
        Err(TempPostgresError::NotInstalled) => {
            eprintln!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let pg_url = postgres.create_database("cluster").expect("database");
    let origin = start_origin();
    let dir = TempDir::new("nodes");
    let shared = dir.0.join("shared.toml");
    std::fs::write(&shared, config(redis.port, &pg_url)).expect("config");
    // Node 3 reaches the same Redis through a relay the test can cut.
    let relay = Relay::start(redis.port);
    let relayed = dir.0.join("relayed.toml");
    std::fs::write(&relayed, config(relay.port, &pg_url)).expect("config");

    // The first node creates the schema; the others start beside it.
    let mut first = Node::start("node1", &shared, &dir.0, origin);
    first.wait_ready();
    let mut others = [
        Node::start("node2", &shared, &dir.0, origin),
        Node::start("node3", &relayed, &dir.0, origin),
    ];
    others.iter_mut().for_each(Node::wait_ready);
    let [second, third] = &others;
    let nodes = [&first, second, third];
    eprintln!("three nodes up in {:?}", started.elapsed());

    a_ban_on_node_1_refuses_on_nodes_2_and_3(&nodes);
    a_device_limit_counts_once_across_the_nodes(&nodes);
    let (cid, request_id) = a_nonce_used_on_one_node_is_refused_on_another(&nodes);
    an_event_from_node_2_is_found_from_node_1_by_cid(&nodes, &cid, &request_id);
    a_policy_saved_on_node_1_applies_on_nodes_2_and_3(&nodes);
    round_trips_per_request_are_counted(&nodes);
    node_3_without_redis_refuses_nonces_and_limits_locally(&nodes, &relay);
    eprintln!("cluster test done in {:?}", started.elapsed());
}

fn a_ban_on_node_1_refuses_on_nodes_2_and_3(nodes: &[&Node; 3]) {
    let ip = "198.51.100.66";
    for node in nodes {
        assert_eq!(
            get(node, "/hello", ip, "d-ban").status,
            200,
            "{}",
            node.name
        );
    }
    let ban = json!({ "ip": ip, "ttl_s": 600, "reason": "cluster test" });
    let made = admin(nodes[0], "POST", "/api/bans", Some(ban)).expect("ban");
    assert_eq!(made.status, 201, "{made:?}");
    let banned_at = Instant::now();
    for node in &nodes[1..] {
        while get(node, "/hello", ip, "d-ban").status != 403 {
            assert!(
                banned_at.elapsed() < Duration::from_millis(1_500),
                "the ban did not reach {}",
                node.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "ban on node 1 refused on nodes 2 and 3 after {:?}",
        banned_at.elapsed()
    );
    assert_eq!(
        get(nodes[2], "/hello", "198.51.100.67", "d-ban").status,
        200
    );
}

fn a_device_limit_counts_once_across_the_nodes(nodes: &[&Node; 3]) {
    let requests = 3 * DEVICE_BURST;
    let mut passed = [0u32; 3];
    for i in 0..requests {
        let n = i as usize % 3;
        // Every request from another address: only the device is the key.
        let ip = format!("203.0.113.{}", i % 250 + 1);
        match get(nodes[n], "/limited/item", &ip, "d-limited").status {
            200 => passed[n] += 1,
            429 => {}
            other => panic!("unexpected {other} from {}", nodes[n].name),
        }
    }
    let total: u32 = passed.iter().sum();
    eprintln!("{requests} requests round robin: {passed:?} passed, {total} in all");
    // One cell in Redis: the burst, plus at most one token refilled during
    // the run; three local cells would have let all of them through.
    assert!(
        (DEVICE_BURST..=DEVICE_BURST + 1).contains(&total),
        "{total} passed of a burst of {DEVICE_BURST}"
    );
}

/// Returns the cid and the request id of the replay refused on node 2.
fn a_nonce_used_on_one_node_is_refused_on_another(nodes: &[&Node; 3]) -> (String, String) {
    let (ip, device) = ("198.51.100.20", "d-signer");
    let clearance = clear(nodes[0], ip, device);
    let signed = clearance.sign("/signed/order");
    let first = signed_get(nodes[0], "/signed/order", ip, device, &signed);
    assert_eq!(first.status, 200, "first use: {first:?}");
    let replayed = signed_get(nodes[1], "/signed/order", ip, device, &signed);
    assert_eq!(replayed.status, 403, "replay on node 2: {replayed:?}");
    assert_eq!(replayed.header("x-pc-error"), Some("signature_replayed"));
    let request_id = replayed
        .header("x-request-id")
        .expect("a refusal carries its request id")
        .to_owned();
    let again = signed_get(nodes[2], "/signed/order", ip, device, &signed);
    assert_eq!(again.status, 403, "replay on node 3");
    let fresh = signed_get(
        nodes[2],
        "/signed/order",
        ip,
        device,
        &clearance.sign("/signed/order"),
    );
    assert_eq!(fresh.status, 200, "a fresh nonce on node 3: {fresh:?}");
    (clearance.cid, request_id)
}

fn an_event_from_node_2_is_found_from_node_1_by_cid(
    nodes: &[&Node; 3],
    cid: &str,
    request_id: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = admin(
            nodes[0],
            "GET",
            &format!("/api/events?cid={cid}&limit=50"),
            None,
        )
        .expect("events");
        assert_eq!(page.status, 200, "{page:?}");
        let events = page.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let from_node_2 = events
            .iter()
            .find(|e| e["request_id"] == request_id)
            .map(|e| e["signals"].to_string());
        if let Some(signals) = from_node_2 {
            assert!(signals.contains("signature_replayed"), "{signals}");
            eprintln!(
                "node 1's console finds {} events of cid {cid}",
                events.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 did not find request {request_id} among {} events of {cid}",
            events.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn a_policy_saved_on_node_1_applies_on_nodes_2_and_3(nodes: &[&Node; 3]) {
    let (ip, device) = ("198.51.100.30", "d-policy");
    for node in &nodes[1..] {
        assert_eq!(get(node, "/vip/page", ip, device).status, 200);
    }
    let current = admin(nodes[0], "GET", "/api/policies", None).expect("policies");
    let mut policies = current.json()["effective"]["policies"]
        .as_array()
        .cloned()
        .expect("policies");
    policies.push(json!({ "name": "vip", "path": "/vip/", "clearance": "required" }));
    let apply = json!({ "document": { "policies": policies }, "comment": "cluster test" });
    let applied = admin(nodes[0], "POST", "/api/policies/apply", Some(apply)).expect("apply");
    assert_eq!(applied.status, 200, "{applied:?}");
    let saved_at = Instant::now();
    for node in &nodes[1..] {
        while get(node, "/vip/page", ip, device).status != 401 {
            assert!(
                saved_at.elapsed() < Duration::from_secs(5),
                "the policy did not reach {}",
                node.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "policy saved on node 1 in force on nodes 2 and 3 after {:?}",
        saved_at.elapsed()
    );
}

/// The state round trips node 1 counted for requests (background flushes
/// and reloads are counted apart).
fn round_trips(node: &Node) -> u64 {
    let metrics = admin(node, "GET", "/metrics", None).expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("portcullis_state_backend{name=\"round_trips\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no round_trips in /metrics:\n{text}"))
}

/// Per kind of request, the round trips to Redis on the request path: a
/// route with no limit needs none, a rate-limited one one (every matching
/// rule in one pipeline), a signed core URL one for its nonce (its risk
/// features are aggregated and copied locally, see crates/state).
fn round_trips_per_request_are_counted(nodes: &[&Node; 3]) {
    const N: u64 = 10;
    let node = nodes[0];
    let per_request = |send: &mut dyn FnMut(u64) -> u16| {
        let before = round_trips(node);
        for i in 0..N {
            let status = send(i);
            assert!(status == 200 || status == 429, "status {status}");
        }
        (round_trips(node) - before) as f64 / N as f64
    };
    let plain = per_request(&mut |_| get(node, "/hello", "198.51.100.50", "d-rt").status);
    let limited =
        per_request(&mut |i| get(node, "/limited/x", "198.51.100.50", &format!("d-rt-{i}")).status);
    let (ip, device) = ("198.51.100.51", "d-rt-signed");
    let clearance = clear(node, ip, device);
    let warm = clearance.sign("/signed/order");
    assert_eq!(
        signed_get(node, "/signed/order", ip, device, &warm).status,
        200
    );
    let signed = per_request(&mut |_| {
        let headers = clearance.sign("/signed/order");
        signed_get(node, "/signed/order", ip, device, &headers).status
    });
    eprintln!(
        "Redis round trips per request: plain {plain:.2}, rate-limited {limited:.2}, \
         signed core URL {signed:.2}"
    );
    assert_eq!(plain, 0.0);
    assert_eq!(limited, 1.0);
    assert!(signed <= 1.5, "{signed:.2} round trips per signed request");
}

fn node_3_without_redis_refuses_nonces_and_limits_locally(nodes: &[&Node; 3], relay: &Relay) {
    let (ip, device) = ("198.51.100.40", "d-outage");
    let clearance = clear(nodes[2], ip, device);
    relay.cut();
    // The breaker opens after a few failed calls; none may wait long.
    let mut slowest = Duration::ZERO;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let sent = Instant::now();
        let signed = clearance.sign("/signed/order");
        statuses.push(signed_get(nodes[2], "/signed/order", ip, device, &signed).status);
        slowest = slowest.max(sent.elapsed());
    }
    eprintln!("node 3 without Redis: signed requests {statuses:?}, slowest {slowest:?}");
    assert!(
        statuses.iter().all(|&s| s == 503),
        "nonces must fail closed: {statuses:?}"
    );
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    // Rate limits go on locally at limit / nodes.
    let mut passed = 0;
    for i in 0..DEVICE_BURST {
        let ip = format!("203.0.113.{}", i + 1);
        match get(nodes[2], "/limited/item", &ip, "d-local").status {
            200 => passed += 1,
            429 => {}
            other => panic!("unexpected {other} on node 3 without Redis"),
        }
    }
    let share = DEVICE_BURST.div_ceil(3);
    eprintln!("node 3 without Redis: {passed} of {DEVICE_BURST} passed the device limit");
    assert!(
        (share - 1..=share + 1).contains(&passed),
        "{passed} passed; a third of the burst is {share}"
    );
    // Healed, node 3 goes back to the shared state by itself.
    relay.restore();
    let healed = Instant::now();
    loop {
        let signed = clearance.sign("/signed/order");
        if signed_get(nodes[2], "/signed/order", ip, device, &signed).status == 200 {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "node 3 did not come back to Redis"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "node 3 back on Redis {:?} after the relay healed",
        healed.elapsed()
    );
    // And shares nonces again with the others.
    let signed = clearance.sign("/signed/order");
    assert_eq!(
        signed_get(nodes[2], "/signed/order", ip, device, &signed).status,
        200
    );
    for node in &nodes[..2] {
        let replayed = signed_get(node, "/signed/order", ip, device, &signed);
        assert_eq!(replayed.status, 403, "replay on {}", node.name);
    }
}
