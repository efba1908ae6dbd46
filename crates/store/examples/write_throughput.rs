//! Writes realistic decision events through the EventWriter into SQLite or
//! PostgreSQL and prints events/s, the writer's counters, and query latencies.
//!
//! cargo run --release -p portcullis-store --example write_throughput -- \
//!     [--events 200000] [--batch 1000] [--page-size 8192] [--checkpoint 1000]
//!     [--mmap-mib 0] [--cache-mib 32] [--rate EVENTS_PER_S] [--db PATH]
//!     [--backend sqlite|postgres] [--url postgres://...]
//!
//! With `--backend postgres` and no `--url`, a temporary server is started
//! (initdb + postgres, PostgreSQL's default durability: fsync and
//! synchronous commit on), so the figure holds for a real server.
//!
//! Without `--rate` the producer waits for room in the queue (the writer's
//! maximum); with it, events are offered with `try_send` at that pace, as the
//! gateway does, and refused ones are counted as dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_store::pg::{Durability, TempPostgres};
use portcullis_store::{
    EventFilter, EventStore, EventWriter, PgConfig, PgStore, Retention, RollupGroup, RollupQuery,
    SqliteConfig, SqliteStore, StoredEvent, TopField, TopOrder, TopQuery, WriterConfig, minute_of,
};

struct Args {
    events: usize,
    batch: usize,
    page_size: u32,
    checkpoint: u32,
    mmap_mib: u32,
    cache_mib: u32,
    /// Paced like the gateway: `try_send` at this many events/s.
    rate: Option<u64>,
    db: Option<PathBuf>,
    postgres: bool,
    url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let store_defaults = SqliteConfig::new("");
    let mut args = Args {
        events: 200_000,
        batch: WriterConfig::default().batch_size,
        page_size: store_defaults.page_size,
        checkpoint: store_defaults.wal_autocheckpoint,
        mmap_mib: store_defaults.mmap_mib,
        cache_mib: store_defaults.cache_kib / 1024,
        rate: None,
        db: None,
        postgres: false,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--events" => args.events = number()?,
            "--batch" => args.batch = number()?,
            "--page-size" => {
                args.page_size = u32::try_from(number()?).map_err(|e| e.to_string())?
            }
            "--checkpoint" => {
                args.checkpoint = u32::try_from(number()?).map_err(|e| e.to_string())?
            }
            "--mmap-mib" => args.mmap_mib = u32::try_from(number()?).map_err(|e| e.to_string())?,
            "--cache-mib" => {
                args.cache_mib = u32::try_from(number()?).map_err(|e| e.to_string())?
            }
            "--rate" => args.rate = Some(number()? as u64),
            "--db" => args.db = Some(PathBuf::from(&value)),
            "--backend" => args.postgres = value == "postgres",
            "--url" => args.url = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ROUTES: [&str; 6] = [
    "coupon",
    "login",
    "signup",
    "vote",
    "red-envelope",
    "flash-sale",
];
const PATHS: [&str; 8] = [
    "/api/coupon/claim",
    "/api/login",
    "/api/signup",
    "/api/vote",
    "/api/hongbao/open",
    "/api/flash/buy",
    "/static/app.js",
    "/api/items?page=2&sort=price",
];

/// Simulated arrival rate: timestamps advance as if 20 000 events/s arrived,
/// so every batch lands in the newest key bucket as in production.
const EVENTS_PER_MS: i64 = 20;

/// One event: 85% passes, blocks, throttles, bad
/// requests and challenges, with devices, accounts and cids for SDK clients.
fn event(rng: &mut Rng, now_ms: i64, i: usize, n: usize) -> StoredEvent {
    let ts_ms = now_ms - (n - i) as i64 / EVENTS_PER_MS;
    let roll = rng.below(100);
    let (action, layer, status, signal) = match roll {
        0..=84 => ("pass", None, 200, None),
        85..=91 => ("block", Some("clean"), 403, Some("sqli")),
        92..=94 => ("throttle", Some("clean"), 429, Some("rate_ip")),
        95..=96 => ("bad_request", Some("edge"), 400, Some("bad_utf8")),
        _ => ("challenge", Some("policy"), 200, Some("risk_rank")),
    };
    let scanner = rng.below(50) == 0;
    let sdk = rng.below(10) < 6;
    let device = rng.below(20_000);
    let path_i = rng.below(PATHS.len() as u64) as usize;
    StoredEvent {
        id: None,
        ts_ms,
        request_id: format!("{:016x}", rng.next()),
        client_ip: if scanner {
            format!("203.0.113.{}", rng.below(4))
        } else {
            format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(256))
        },
        method: if rng.below(4) == 0 { "POST" } else { "GET" }.into(),
        host: "api.shop.example".into(),
        path: PATHS[path_i].into(),
        action: action.into(),
        layer: layer.map(Into::into),
        status,
        class: if scanner { "scanner" } else { "normal" }.into(),
        cid: sdk.then(|| format!("c{device:08x}{:04x}", rng.below(4))),
        device_id: sdk.then(|| format!("dev-{device:06}")),
        account_id: (sdk && rng.below(3) > 0).then(|| format!("acct-{}", device / 3)),
        route: (path_i < ROUTES.len()).then(|| ROUTES[path_i].into()),
        risk_rank: Some(if signal.is_some() { 3 } else { 0 }),
        rule: None,
        signals: signal.map_or_else(|| "[]".into(), |name| signals_json(name, layer)),
        duration_us: 50 + rng.below(400) as i64,
        device_risk_rank: sdk.then_some(0),
        reasons: Vec::new(),
        would: None,
    }
}

fn signals_json(name: &str, layer: Option<&str>) -> String {
    format!(
        r#"[{{"name":"{name}","layer":"{}","weight":80,"evidence":"query: id=1' OR '1'='1","demand":{{"kind":"block"}}}}]"#,
        layer.unwrap_or("clean")
    )
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Offers events with `try_send`, `rate` per second, in 1 ms slices.
fn offer_paced(sender: &portcullis_store::EventSender, events: Vec<StoredEvent>, rate: u64) {
    let started = Instant::now();
    for (i, e) in events.into_iter().enumerate() {
        let due = Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed())
            && wait > Duration::from_millis(1)
        {
            std::thread::sleep(wait);
        }
        sender.try_send(e);
    }
}

/// CPU seconds (user, system) used by this process so far (Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

fn timed<T>(label: &str, runs: u32, mut f: impl FnMut(u32) -> T) -> T {
    let started = Instant::now();
    let mut last = None;
    for i in 0..runs {
        last = Some(f(i));
    }
    let per = started.elapsed() / runs.max(1);
    println!("  {label:<44} {:>9.3} ms", per.as_secs_f64() * 1000.0);
    last.expect("runs > 0")
}

/// The store under test, and the temporary server behind it (if any).
type Opened = (Arc<dyn EventStore>, Option<TempPostgres>);

fn open(args: &Args, db: &std::path::Path) -> Result<Opened, Box<dyn std::error::Error>> {
    if args.postgres {
        let server = match &args.url {
            Some(_) => None,
            None => Some(TempPostgres::start_with(Durability::Default)?),
        };
        let url = args
            .url
            .clone()
            .or_else(|| server.as_ref().map(TempPostgres::url))
            .unwrap_or_default();
        println!("backend: PostgreSQL");
        return Ok((Arc::new(PgStore::open(&PgConfig::new(url))?), server));
    }
    let mut config = SqliteConfig::new(db);
    config.page_size = args.page_size;
    config.wal_autocheckpoint = args.checkpoint;
    config.mmap_mib = args.mmap_mib;
    config.cache_kib = args.cache_mib * 1024;
    println!("backend: SQLite");
    Ok((Arc::new(SqliteStore::open_with(config)?), None))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let dir = std::env::temp_dir().join(format!("portcullis-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = args.db.clone().unwrap_or_else(|| dir.join("events.db"));
    let (store, _server) = open(&args, &db)?;

    let now = now_ms();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let events: Vec<StoredEvent> = (0..args.events)
        .map(|i| event(&mut rng, now, i, args.events))
        .collect();
    let cids: Vec<String> = events
        .iter()
        .filter_map(|e| e.cid.clone())
        .take(100)
        .collect();
    let request_ids: Vec<String> = events
        .iter()
        .step_by(997)
        .map(|e| e.request_id.clone())
        .take(100)
        .collect();

    // One event a week old, so key lookups span 7 days of buckets.
    let mut old = event(&mut rng, now - 7 * 86_400_000, 0, 1);
    old.cid = Some("week-old".into());
    store.write_batch(&[old])?;

    let writer_config = WriterConfig {
        batch_size: args.batch,
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), writer_config)?;
    let sender = writer.sender();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    match args.rate {
        None => events.into_iter().for_each(|e| {
            sender.send(e);
        }),
        Some(rate) => offer_paced(&sender, events, rate),
    }
    writer.flush(Duration::from_secs(600));
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds();
    let stats = writer.shutdown();
    let rate = stats.written as f64 / elapsed.as_secs_f64();
    println!(
        "wrote {} events in {:.2} s: {:.0} events/s (batch {}, page size {}, checkpoint {}, mmap {} MiB, cache {} MiB)",
        stats.written,
        elapsed.as_secs_f64(),
        rate,
        args.batch,
        args.page_size,
        args.checkpoint,
        args.mmap_mib,
        args.cache_mib
    );
    println!(
        "  batches {}, last batch {} events in {:.1} ms, max batch {:.1} ms, dropped {}, failed {}",
        stats.batches,
        stats.last_batch_len,
        stats.last_batch_us as f64 / 1000.0,
        stats.max_batch_us as f64 / 1000.0,
        stats.dropped,
        stats.failed
    );

    let (user, sys) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    println!(
        "  CPU while writing: user {user:.2} s + sys {sys:.2} s = {:.1} us/event",
        (user + sys) * 1e6 / stats.written.max(1) as f64
    );
    println!("queries (mean of runs):");
    let hits = timed("search by cid", 100, |i| {
        let f = EventFilter {
            cid: Some(cids[i as usize % cids.len()].clone()),
            ..Default::default()
        };
        store.search(&f).map(|v| v.len())
    })?;
    println!("    (last cid search: {hits} events)");
    let miss = timed("search unknown cid over 7 days (60k buckets)", 3, |_| {
        let f = EventFilter {
            cid: Some("no-such-cid".into()),
            ..Default::default()
        };
        store.search(&f).map(|v| v.len())
    })?;
    println!("    ({miss} events)");
    timed("search unknown cid, last hour", 20, |_| {
        let f = EventFilter {
            cid: Some("no-such-cid".into()),
            from_ms: Some(now - 3_600_000),
            ..Default::default()
        };
        store.search(&f).map(|v| v.len())
    })?;
    timed("get(request_id)", 100, |i| {
        store.get(&request_ids[i as usize % request_ids.len()])
    })?;
    let page = timed("search intercepts, newest 100", 20, |_| {
        let f = EventFilter {
            kind: Some(portcullis_store::ActionKind::Intercept),
            ..Default::default()
        };
        store.search(&f).map(|v| v.len())
    })?;
    println!("    ({page} events)");
    timed("search client_ip, last hour, 100", 20, |_| {
        let f = EventFilter {
            client_ip: Some("203.0.113.1".into()),
            from_ms: Some(now - 3_600_000),
            ..Default::default()
        };
        store.search(&f).map(|v| v.len())
    })?;
    let rollup = |group_by| RollupQuery {
        from_minute: minute_of(now) - 60,
        to_minute: minute_of(now) + 1,
        group_by,
        kind: None,
        route: None,
        exclude_class: None,
    };
    let series = timed("rollups last hour by reason", 20, |_| {
        store.rollups(&rollup(RollupGroup::Reason))
    })?;
    let total: u64 = series.iter().map(|s| s.total()).sum();
    println!("    ({} series, {} events counted)", series.len(), total);
    timed("rollups last hour by layer", 20, |_| {
        store.rollups(&rollup(RollupGroup::Layer))
    })?;
    let top = |order| TopQuery {
        field: TopField::ClientIp,
        from_ms: now - 3_600_000,
        to_ms: now + 1,
        limit: 10,
        order,
        exclude_class: Some("scanner".into()),
    };
    timed("top 10 IPs by intercepts, last hour", 5, |_| {
        store.top(&top(TopOrder::Intercepts))
    })?;
    timed("top 10 IPs by requests, last hour (scan)", 3, |_| {
        store.top(&top(TopOrder::Requests))
    })?;

    // A budget nothing exceeds: the step only measures.
    let measure = Retention {
        events_days: 3650,
        rollups_days: 3650,
        max_bytes: Some(u64::MAX),
        ..Retention::default()
    };
    let used = store.retention_step(&measure, now)?.used_bytes.unwrap_or(0);
    println!("store size: {:.1} MiB", used as f64 / (1024.0 * 1024.0));
    drop(store);
    if args.db.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
