//! `run_bench` against a tiny local origin that answers 403 when the request
//! target or body contains "BLOCKME", 400 when it contains "BADREQ", and 200
//! otherwise; its answers carry an `x-request-id` so the decision-event log
//! written by the test can name the signals.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portcullis_corpus::{BenchOptions, CorpusRow, run_bench};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = req.uri().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let has = |word: &str| {
        target.contains(word) || body.windows(word.len()).any(|w| w == word.as_bytes())
    };
    let status = if has("BLOCKME") {
        403
    } else if has("BADREQ") {
        400
    } else {
        200
    };
    let id = format!("r{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let resp = Response::builder()
        .status(status)
        .header("x-request-id", id)
        .body(Full::new(Bytes::from_static(b"ok")))
        .expect("response");
    Ok(resp)
}

async fn start_origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    addr
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn normal_line(id: &str, category: &str, target: &str) -> String {
    format!(
        "{{\"id\":\"{id}\",\"category\":\"{category}\",\"source\":\"t\",\"method\":\"GET\",\"target\":\"{target}\",\"headers\":[[\"Accept\",\"*/*\"]],\"body\":\"\"}}\n"
    )
}

/// A corpora directory with a few requests of each corpus.
fn corpora(dir: &Path) {
    let normal = [
        normal_line("a-0", "search", "/s?q=hello"),
        normal_line("a-1", "search", "/s?q=BLOCKME"),
        normal_line("b-0", "graphql", "/graphql?query=BADREQ"),
        // Raw UTF-8 in the target: sent over a raw socket.
        normal_line("c-0", "raw-utf8", "/s?q=\u{4f60}\u{597d}"),
    ]
    .concat();
    write(dir, "normal/requests.jsonl", normal.as_bytes());
    write(
        dir,
        "httpparams/payload_train.csv",
        b"\"payload\",\"length\",\"attack_type\",\"label\"\n\"plain words\",\"11\",\"norm\",\"norm\"\n\"1 BLOCKME--\",\"11\",\"sqli\",\"anom\"\n",
    );
    write(dir, "mgm/xss/true-positives.txt", b"<x BLOCKME>\n<y>\n");
    write(dir, "mgm/xss/false-positives.txt", b"h2<h1\n");
    write(
        dir,
        "gotestwaf/testcases/owasp/t.yml",
        b"payload:\n  - 'BLOCKME'\nencoder:\n  - Plain\nplaceholder:\n  - URLParam\n  - gRPC\ntype: T\n",
    );
}

fn options(dir: &Path, addr: SocketAddr) -> BenchOptions {
    let mut o = BenchOptions::new(dir, format!("http://{addr}"));
    o.mgm = Some(dir.join("mgm"));
    o.normal = Some(dir.join("normal/requests.jsonl"));
    o.no_progress = true;
    o.concurrency = 4;
    o.timeout = Duration::from_secs(5);
    o
}

fn corpus<'a>(rows: &'a [CorpusRow], name: &str) -> &'a CorpusRow {
    rows.iter().find(|c| c.corpus == name).expect(name)
}

#[tokio::test]
async fn every_corpus_is_replayed_and_scored() {
    let dir = std::env::temp_dir().join(format!("corpus-bench-all-{}", std::process::id()));
    corpora(&dir);
    let addr = start_origin().await;
    let report = run_bench(&options(&dir, addr)).await.expect("bench");
    std::fs::remove_dir_all(&dir).ok();

    let names: Vec<&str> = report.corpora.iter().map(|c| c.corpus.as_str()).collect();
    assert_eq!(names, ["normal", "httpparams", "mgm", "gotestwaf"]);

    let normal = corpus(&report.corpora, "normal");
    assert_eq!(normal.normal.answered(), 4);
    assert_eq!(normal.attacks.total, 0);
    // One 403 and one 400 among four: both count as flagged, only one as blocked.
    assert_eq!(normal.normal.blocked, 1);
    assert_eq!(normal.normal.refused.get(&400), Some(&1));
    assert_eq!(normal.normal.flagged_pct(), Some(50.0));
    assert_eq!(normal.false_positives_by_signal.get("status 403"), Some(&1));
    assert_eq!(normal.false_positives_by_signal.get("status 400"), Some(&1));

    // Each value twice: as a query parameter and as a form body.
    let hp = corpus(&report.corpora, "httpparams");
    assert_eq!((hp.attacks.blocked, hp.attacks.passed), (2, 0));
    assert_eq!((hp.normal.passed, hp.normal.flagged_pct()), (2, Some(0.0)));

    let mgm = corpus(&report.corpora, "mgm");
    assert_eq!(mgm.attacks.answered(), 4);
    assert_eq!(mgm.attacks.stopped_pct(), Some(50.0));
    assert_eq!(mgm.normal.passed, 2);

    let gtw = corpus(&report.corpora, "gotestwaf");
    assert_eq!((gtw.attacks.blocked, gtw.attacks.skipped), (1, 1));

    // Misclassified: the two flagged normal requests and mgm's missed `<y>`
    // twice.
    assert_eq!(report.misclassified.len(), 4);
    assert!(report.misclassified.iter().all(|m| m.error.is_none()));
}

#[tokio::test]
async fn limit_only_and_event_signals() {
    let dir = std::env::temp_dir().join(format!("corpus-bench-lim-{}", std::process::id()));
    corpora(&dir);
    let addr = start_origin().await;
    let mut o = options(&dir, addr);
    o.only = vec!["normal".into()];
    o.limit = Some(2);
    // An event log naming the signal of every request id this origin hands out.
    let events: String = (0..1000)
        .map(|i| {
            format!("{{\"request_id\":\"r{i}\",\"signals\":[{{\"name\":\"sqli\",\"demand\":{{\"kind\":\"block\"}}}}]}}\n")
        })
        .collect();
    write(&dir, "events.jsonl", events.as_bytes());
    o.events = Some(dir.join("events.jsonl"));
    let report = run_bench(&o).await.expect("bench");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(report.corpora.len(), 1);
    let normal = &report.corpora[0];
    assert_eq!(normal.normal.total, 2);
    let flagged = normal.normal.blocked + normal.normal.refused.values().sum::<u64>();
    assert_eq!(
        normal
            .false_positives_by_signal
            .get("sqli")
            .copied()
            .unwrap_or(0),
        flagged
    );
    assert!(report.signals_from_events);
}

#[tokio::test]
async fn transport_errors_are_counted_separately() {
    let dir = std::env::temp_dir().join(format!("corpus-bench-err-{}", std::process::id()));
    corpora(&dir);
    // A port nothing listens on: bind, read the port, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut o = options(&dir, addr);
    o.only = vec!["httpparams".into()];
    let report = run_bench(&o).await.expect("bench");
    std::fs::remove_dir_all(&dir).ok();
    let hp = &report.corpora[0];
    assert_eq!((hp.attacks.errors, hp.normal.errors), (2, 2));
    assert_eq!(hp.attacks.stopped_pct(), None);
    assert_eq!(report.misclassified.len(), 4);
}
