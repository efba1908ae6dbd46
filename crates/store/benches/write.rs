//! Store benchmarks: batched writes (events + key rows + rollup upserts in
//! one transaction) and the console's main queries, on a real SQLite file.
//!
//! cargo bench -p portcullis-store --bench write

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_store::{
    EventFilter, EventStore, RollupGroup, RollupQuery, SqliteStore, StoredEvent, minute_of,
};

const BATCH: usize = 1000;

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Event `n` at 20 events per millisecond: 15% intercepted, 60% with a
/// device, account and cid, a named route on 3 paths of 4.
fn event(n: u64, ts_ms: i64) -> StoredEvent {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let blocked = h % 100 < 15;
    let sdk = (h >> 8) % 10 < 6;
    let device = (h >> 16) % 20_000;
    StoredEvent {
        ts_ms,
        request_id: format!("{h:016x}"),
        client_ip: format!(
            "10.{}.{}.{}",
            (h >> 24) % 4,
            (h >> 32) % 256,
            (h >> 40) % 256
        ),
        method: "GET".into(),
        host: "api.shop.example".into(),
        path: "/api/coupon/claim".into(),
        action: if blocked { "block" } else { "pass" }.into(),
        layer: blocked.then(|| "clean".into()),
        status: if blocked { 403 } else { 200 },
        class: "normal".into(),
        cid: sdk.then(|| format!("c{device:08x}")),
        device_id: sdk.then(|| format!("dev-{device:06}")),
        account_id: sdk.then(|| format!("acct-{}", device / 3)),
        route: ((h >> 48) & 3 != 0).then(|| "coupon".into()),
        risk_rank: Some(if blocked { 3 } else { 0 }),
        signals: if blocked {
            r#"[{"name":"sqli","layer":"clean","weight":80,"evidence":"id=1' OR 1=1"}]"#.into()
        } else {
            "[]".into()
        },
        duration_us: 120,
        ..StoredEvent::default()
    }
}

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("events.db")
}

fn batches(c: &mut Criterion) {
    let db = temp_db("write");
    let store = SqliteStore::open(&db).expect("open");
    let start = now_ms();
    let mut n = 0u64;
    let mut group = c.benchmark_group("write_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    group.bench_function("1000_events", |b| {
        b.iter_batched(
            || {
                let events: Vec<_> = (0..BATCH as u64)
                    .map(|i| event(n + i, start + ((n + i) / 20) as i64))
                    .collect();
                n += BATCH as u64;
                events
            },
            |events| black_box(store.write_batch(&events).expect("write")),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(db.parent().unwrap_or(&db));
}

fn queries(c: &mut Criterion) {
    let db = temp_db("query");
    let store = SqliteStore::open(&db).expect("open");
    let start = now_ms() - 100_000 / 20;
    for chunk in 0..100u64 {
        let events: Vec<_> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|n| event(n, start + (n / 20) as i64))
            .collect();
        store.write_batch(&events).expect("write");
    }
    let cid = event(4242, 0).cid.unwrap_or_default();
    let mut group = c.benchmark_group("query_100k");
    group.bench_function("search_cid", |b| {
        let f = EventFilter {
            cid: Some(cid.clone()),
            ..Default::default()
        };
        b.iter(|| black_box(store.search(&f).expect("search")))
    });
    group.bench_function("search_intercepts_page", |b| {
        let f = EventFilter {
            kind: Some(portcullis_store::ActionKind::Intercept),
            ..Default::default()
        };
        b.iter(|| black_box(store.search(&f).expect("search")))
    });
    group.bench_function("rollups_last_hour_by_reason", |b| {
        let q = RollupQuery {
            from_minute: minute_of(now_ms()) - 60,
            to_minute: minute_of(now_ms()) + 1,
            group_by: RollupGroup::Reason,
            kind: None,
            route: None,
            exclude_class: None,
        };
        b.iter(|| black_box(store.rollups(&q).expect("rollups")))
    });
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(db.parent().unwrap_or(&db));
}

criterion_group!(benches, batches, queries);
criterion_main!(benches);
