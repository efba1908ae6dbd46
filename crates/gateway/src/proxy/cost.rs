//! The stage cost bench: CPU µs per request for each step of the request
//! path with the default configuration (detection, the JSON event log and
//! the SQLite event store on), without sockets, on the request of
//! `bench/proxy.sh` and on a 4 KB JSON POST. Run it with
//!
//! ```sh
//! cargo test --release -p portcullis-gateway --lib stage_costs -- --ignored --nocapture
//! ```
//!
//! The stages are timed by the pipeline runner itself (the histograms of
//! `portcullis_stage_duration_seconds`); setup, the origin request's head
//! and the decision event are timed around their functions. "repeated"
//! sends the same request every time (what `wrk` does: detection's cache of
//! clean values answers); "varied" changes a value in every request. Each
//! cell is the least mean of 9 batches of 4,000 requests (on a busy machine
//! the time a thread waits for a core only ever adds); the event and store
//! threads' share is their CPU time over all the batches.
//! Reading the body from the socket and the HTTP parsing are not included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http::request::Parts;
use portcullis_config::Config;
use portcullis_store::{EventStore, EventWriter, SqliteStore, WriterConfig};

use super::{begin, outgoing, record, upstream_head};
use crate::edge::protocol::check_body;
use crate::events::EventOutputs;
use crate::http::respond::empty_body;
use crate::origin::RequestFraming;
use crate::pipeline::tests::shared_without_sockets;
use crate::stages::{InspectedBody, RequestBody};

const WARM_UP: u64 = 2_000;
/// Requests per timed batch, and batches per cell.
const BATCH: u64 = 4_000;
const BATCHES: u64 = 9;

/// The headers of `bench/proxy.sh`: a phone's.
const PHONE: [(&str, &str); 4] = [
    ("host", "127.0.0.1:18583"),
    (
        "user-agent",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50",
    ),
    ("accept", "application/json"),
    ("accept-language", "zh-CN,zh;q=0.9"),
];

struct Shape {
    name: &'static str,
    /// The request with `{}` where the varied form puts its counter.
    target: &'static str,
    body: Option<String>,
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "proxy.sh GET",
            target: "/api/v1/items?page=2&sort=price&q=red+shoes{}",
            body: None,
        },
        Shape {
            name: "4 KB JSON POST",
            target: "/api/v1/orders?src=app{}",
            body: Some(order_json()),
        },
    ]
}

/// An order of about 4 KB as a shop's app would send it.
fn order_json() -> String {
    let items: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:05}","name":"Cotton T-shirt, size M, colour {i}","qty":{},"price":"{}.90","note":"leave at the door if nobody answers"}}"#,
                i % 3 + 1,
                19 + i
            )
        })
        .collect();
    let json = format!(
        r#"{{"order_id":"A20261206-0042","customer":{{"name":"Li Wei","phone":"+86 138 0013 8000","address":"88 Nanjing Road, Huangpu District, Shanghai"}},"items":[{}],"coupon":"SPRING-10","pay":"wechat"}}"#,
        items.join(",")
    );
    assert!((3_800..=4_400).contains(&json.len()), "{}", json.len());
    json
}

fn request(shape: &Shape, vary: Option<u64>) -> (Parts, Bytes) {
    let suffix = vary.map_or(String::new(), |i| format!("&n={i}"));
    let target = shape.target.replace("{}", &suffix);
    let method = if shape.body.is_some() { "POST" } else { "GET" };
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in PHONE {
        builder = builder.header(name, value);
    }
    let body = match &shape.body {
        Some(json) => {
            let json = json.replace("Li Wei", &format!("Li Wei {}", vary.unwrap_or(0)));
            builder = builder
                .header("content-type", "application/json")
                .header("content-length", json.len());
            Bytes::from(json)
        }
        None => Bytes::new(),
    };
    let (parts, ()) = builder.body(()).expect("request").into_parts();
    (parts, body)
}

/// CPU time of this process's threads whose name starts with one of
/// `names`, from the scheduler's own accounting.
fn threads_cpu(names: &[&str]) -> Duration {
    let mut ns = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !names.iter().any(|n| comm.starts_with(n)) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// One request through the steps timed here: setup, the body checks, the
/// origin request's head and the decision event (the stages time
/// themselves).
async fn one_request(
    shared: &crate::shared::Shared,
    rt: &Arc<crate::runtime::Runtime>,
    peer: SocketAddr,
    shape: &Shape,
    vary: Option<u64>,
) -> [Duration; 4] {
    let (parts, bytes) = request(shape, vary);
    let body = RequestBody::Read(InspectedBody::whole(bytes));
    let started = Instant::now();
    let mut ex = begin(shared, rt, peer, parts, body, false, false);
    let setup = started.elapsed();
    crate::pipeline::run(&mut ex).await;
    let t = Instant::now();
    let (inspected, complete) = ex.body.inspected();
    let checked = check_body(&ex.parts.headers, inspected, complete, &rt.config.protocol);
    let body_check = t.elapsed();
    let (action, layer) = ex.ctx.decide();
    assert!(
        checked.is_none() && action == crate::context::Action::Pass,
        "{} must pass: {:?}",
        shape.name,
        ex.ctx.signals
    );
    let t = Instant::now();
    let head = outgoing(&mut ex).map(|o| upstream_head(&ex, &o, RequestFraming::None).len());
    let origin_head = t.elapsed();
    assert!(head.is_ok(), "an origin for {}", shape.name);
    let t = Instant::now();
    record(ex, action, layer, &Response::new(empty_body()), started);
    [setup, body_check, origin_head, t.elapsed()]
}

fn add(a: [Duration; 4], b: [Duration; 4]) -> [Duration; 4] {
    std::array::from_fn(|i| a[i] + b[i])
}

/// Micro-seconds per request of one step, by shape and variant.
type Row = (String, Vec<f64>);

async fn measure(shape: &Shape, vary: bool) -> Vec<(String, f64)> {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-stage-costs-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Config::parse("[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n").expect("config");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(dir.join("events.db")).expect("store"));
    let writer = Arc::new(EventWriter::spawn(store, WriterConfig::default()).expect("writer"));
    let outputs = EventOutputs {
        json: Some(Box::new(std::io::sink())),
        store: Some(Arc::clone(&writer)),
        record_passed: config.store.record_passed,
    };
    let (shared, rt) = shared_without_sockets(&config, outputs);
    let peer: SocketAddr = "198.51.100.7:40000".parse().expect("peer");
    let mut sent = 0..;
    let mut send = async |batch: u64| {
        let mut steps = [Duration::ZERO; 4];
        for _ in 0..batch {
            let i = sent.next().unwrap_or_default();
            steps = add(
                steps,
                one_request(&shared, &rt, peer, shape, vary.then_some(i)).await,
            );
        }
        steps
    };
    send(WARM_UP).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.flush(Duration::from_secs(10));
    let off_path_before = threads_cpu(&["portcullis-even", "portcullis-stor"]);
    // Each row's least mean over the batches: time the thread spent
    // descheduled (a loaded machine) only ever adds.
    let mut rows: Vec<(String, f64)> = Vec::new();
    for batch in 0..BATCHES {
        let before = shared.metrics.hot.stage_totals();
        let [setup, body_check, origin_head, event] = send(BATCH).await;
        let after = shared.metrics.hot.stage_totals();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / BATCH as f64;
        let mut means = vec![("setup (context, client ip, targets)".to_owned(), per(setup))];
        for ((name, runs, ns), (_, runs_before, ns_before)) in after.iter().zip(&before) {
            // A stage that never ran (the core-URL stages here) shows as "-".
            let mut us = match runs == runs_before {
                true => f64::NAN,
                false => (ns - ns_before) as f64 / 1e3 / BATCH as f64,
            };
            if *name == "body" {
                us += per(body_check);
            }
            means.push(((*name).to_owned(), us));
        }
        means.push(("origin request head".to_owned(), per(origin_head)));
        means.push(("decision event (request path)".to_owned(), per(event)));
        if batch == 0 {
            rows = means;
        } else {
            for (row, (_, us)) in rows.iter_mut().zip(means) {
                row.1 = row.1.min(us);
            }
        }
    }
    // Let the event thread and the store writer finish these events.
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.flush(Duration::from_secs(30));
    let off_path = threads_cpu(&["portcullis-even", "portcullis-stor"]) - off_path_before;
    rows.push((
        "events + store threads (off path, CPU)".to_owned(),
        off_path.as_secs_f64() * 1e6 / (BATCH * BATCHES) as f64,
    ));
    drop(shared);
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a benchmark: run it in release with --ignored --nocapture"]
async fn stage_costs() {
    let mut columns = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for shape in shapes() {
        for vary in [false, true] {
            columns.push(format!(
                "{} {}",
                shape.name,
                if vary { "varied" } else { "repeated" }
            ));
            for (i, (name, us)) in measure(&shape, vary).await.into_iter().enumerate() {
                match rows.get_mut(i) {
                    Some(row) => row.1.push(us),
                    None => rows.push((name, vec![us])),
                }
            }
        }
    }
    let mut table = format!("| step (µs / request) | {} |\n|---|", columns.join(" | "));
    table.push_str(&"---:|".repeat(columns.len()));
    table.push('\n');
    let mut totals = vec![0.0; columns.len()];
    for (name, values) in &rows {
        let cells: Vec<String> = values
            .iter()
            .map(|v| match v.is_nan() {
                true => "-".to_owned(),
                false => format!("{v:.2}"),
            })
            .collect();
        table.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
        for (total, v) in totals.iter_mut().zip(values) {
            if !v.is_nan() {
                *total += v;
            }
        }
    }
    let cells: Vec<String> = totals.iter().map(|v| format!("**{v:.2}**")).collect();
    table.push_str(&format!("| **total** | {} |\n", cells.join(" | ")));
    println!("\n{table}");
}
