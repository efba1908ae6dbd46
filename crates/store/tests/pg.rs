//! The PostgreSQL backend against a real server (a temporary one per test,
//! see `TempPostgres`). Skipped, saying so, when the server binaries are
//! not installed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{T0, TempDir, blocked, challenges, now_ms, pass, sample, sample_tally, solve_rate_of};
use portcullis_store::pg::{TempPostgres, TempPostgresError};
use portcullis_store::{
    ActionKind, EventFilter, EventStore, EventWriter, MARK, MAX_PATH, PgConfig, PgStore, Retention,
    RollupGroup, RollupQuery, SqliteStore, StoredEvent, TopField, TopOrder, TopQuery, TrialQuery,
    WriterConfig, minute_of,
};

const WAIT: Duration = Duration::from_secs(30);

/// A temporary server, or `None` (with a message) when PostgreSQL is not
/// installed.
fn server() -> Option<TempPostgres> {
    match TempPostgres::start() {
        Ok(pg) => Some(pg),
        Err(TempPostgresError::NotInstalled) => {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries are not installed (apt-get install postgresql)"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn open(pg: &TempPostgres) -> PgStore {
    PgStore::open(&PgConfig::new(pg.url())).unwrap()
}

fn strip_ids(mut events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    for e in &mut events {
        e.id = None;
    }
    events
}

/// Every query answers the same from both backends over the same events.
#[test]
fn answers_every_query_like_sqlite() {
    let Some(pg) = server() else { return };
    let store = open(&pg);
    let dir = TempDir::new("pg-compare");
    let sqlite = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.write_batch(&sample()).unwrap(), 60);
    sqlite.write_batch(&sample()).unwrap();
    store.write_tally(&sample_tally()).unwrap();
    sqlite.write_tally(&sample_tally()).unwrap();

    let filters = [
        EventFilter::default(),
        EventFilter {
            client_ip: Some("198.51.100.1".into()),
            ..EventFilter::default()
        },
        EventFilter {
            device: Some("dev-1".into()),
            kind: Some(ActionKind::Challenge),
            ..EventFilter::default()
        },
        EventFilter {
            kind: Some(ActionKind::Intercept),
            exclude_class: Some("scanner".into()),
            limit: 5,
            ..EventFilter::default()
        },
        EventFilter {
            route: Some("coupon".into()),
            from_ms: Some(T0 + 30_000),
            to_ms: Some(T0 + 120_000),
            ..EventFilter::default()
        },
        EventFilter {
            rule: Some("sqli".into()),
            ..EventFilter::default()
        },
    ];
    for f in &filters {
        let got = store.search(f).unwrap();
        assert!(got.windows(2).all(|w| w[0].id > w[1].id), "{f:?}");
        assert_eq!(
            strip_ids(got),
            strip_ids(sqlite.search(f).unwrap()),
            "{f:?}"
        );
    }

    // Paging by cursor visits every event once.
    let mut cursor = None;
    let mut seen = 0;
    loop {
        let page = store
            .search(&EventFilter {
                limit: 7,
                before_id: cursor,
                ..EventFilter::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.id;
        seen += page.len();
    }
    assert_eq!(seen, 60);

    let one = store.get(&format!("req-{}-2", T0 + 6_000)).unwrap();
    assert_eq!(
        one.as_ref().map(|e| e.account_id.as_deref()),
        Some(Some("acct-7"))
    );
    assert_eq!(one.map(|e| e.reasons.len()), Some(2));
    assert!(store.get("nope").unwrap().is_none());

    for group_by in [RollupGroup::Reason, RollupGroup::Class, RollupGroup::Route] {
        let q = RollupQuery {
            from_minute: minute_of(T0),
            to_minute: minute_of(T0) + 10,
            group_by,
            kind: None,
            route: None,
            exclude_class: None,
        };
        assert_eq!(store.rollups(&q).unwrap(), sqlite.rollups(&q).unwrap());
    }
    for (field, order) in [
        (TopField::ClientIp, TopOrder::Requests),
        (TopField::ClientIp, TopOrder::Intercepts),
        (TopField::Route, TopOrder::Intercepts),
        (TopField::Device, TopOrder::Requests),
        (TopField::Account, TopOrder::Requests),
    ] {
        let q = TopQuery {
            field,
            from_ms: T0,
            to_ms: T0 + 3_600_000,
            limit: 3,
            order,
            exclude_class: None,
        };
        assert_eq!(store.top(&q).unwrap(), sqlite.top(&q).unwrap(), "{q:?}");
    }
    let q = TrialQuery {
        from_ms: T0,
        to_ms: T0 + 3_600_000,
    };
    assert_eq!(store.trial(&q).unwrap(), sqlite.trial(&q).unwrap());
}

/// The solve rate follows challenged devices to the check like SQLite's.
#[test]
fn answers_the_solve_rate_like_sqlite() {
    let Some(pg) = server() else { return };
    let store = open(&pg);
    let dir = TempDir::new("pg-solve-rate");
    let sqlite = SqliteStore::open(dir.db()).unwrap();
    store.write_batch(&challenges()).unwrap();
    sqlite.write_batch(&challenges()).unwrap();
    for class in [Some("scanner"), None] {
        let got = solve_rate_of(&store, class);
        assert_eq!(got, solve_rate_of(&sqlite, class), "{class:?}");
        assert!(got.iter().any(|m| m.route == "coupon" && m.solved == 1));
    }
}

#[test]
fn rollups_add_up_across_batches_and_nodes() {
    let Some(pg) = server() else { return };
    let a = open(&pg);
    let b = open(&pg);
    let events: Vec<_> = (0..10)
        .map(|n| blocked(T0 + n, n as usize, "xss"))
        .collect();
    a.write_batch(&events).unwrap();
    b.write_batch(&events).unwrap();
    let q = RollupQuery {
        from_minute: minute_of(T0),
        to_minute: minute_of(T0) + 1,
        group_by: RollupGroup::Reason,
        kind: Some(ActionKind::Intercept),
        route: None,
        exclude_class: None,
    };
    let series = a.rollups(&q).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!((series[0].key.as_str(), series[0].total()), ("xss", 20));
    // Two writers, distinct ids even in the same milliseconds.
    let all = a.search(&EventFilter::default()).unwrap();
    let mut ids: Vec<_> = all.iter().filter_map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[test]
fn stores_bounded_fields() {
    let Some(pg) = server() else { return };
    let store = open(&pg);
    let e = StoredEvent {
        path: format!("/{}", "é".repeat(20_000)),
        ..pass(T0, 1)
    };
    store.write_batch(&[e]).unwrap();
    let back = store.get("req-1795425120000-1").unwrap().unwrap();
    assert!(back.path.len() <= MAX_PATH && back.path.ends_with(MARK));
}

#[test]
fn retention_and_the_budget_drop_whole_days_oldest_first() {
    let Some(pg) = server() else { return };
    let store = open(&pg);
    let day = 86_400_000;
    let now = now_ms();
    let at = |days_ago: i64, n: usize| pass(now - days_ago * day, n);
    store
        .write_batch(&(0..30).map(|n| at(10, n)).collect::<Vec<_>>())
        .unwrap();
    store
        .write_batch(&(0..20).map(|n| at(3, n)).collect::<Vec<_>>())
        .unwrap();
    store
        .write_batch(&(0..10).map(|n| at(2, n)).collect::<Vec<_>>())
        .unwrap();
    store
        .write_batch(&(0..5).map(|n| at(0, n)).collect::<Vec<_>>())
        .unwrap();
    let policy = Retention {
        events_days: 7,
        ..Retention::default()
    };
    let aged = store.retention(&policy, now).unwrap();
    assert_eq!((aged.events, aged.over_budget), (30, 0));

    // A budget below what is left: past days go, oldest first; today stays.
    let tight = Retention {
        max_bytes: Some(1),
        ..policy
    };
    let step = store.retention_step(&tight, now).unwrap();
    assert_eq!((step.over_budget, step.more), (20, true));
    let rest = store.retention(&tight, now).unwrap();
    assert_eq!(rest.over_budget, 10);
    assert!(rest.used_bytes.is_some_and(|b| b > 1));
    let left = store.search(&EventFilter::default()).unwrap();
    assert_eq!(left.len(), 5);
}

#[test]
fn an_outage_spools_without_blocking_and_catches_up() {
    let Some(mut pg) = server() else { return };
    let store = Arc::new(open(&pg));
    let config = WriterConfig {
        batch_size: 200,
        max_delay: Duration::from_millis(5),
        spool: 10_000,
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    let t0 = now_ms();
    for n in 0..100 {
        assert!(writer.try_send(pass(t0 + n, n as usize)));
    }
    assert!(writer.flush(WAIT));
    assert_eq!(writer.stats().written, 100);

    pg.stop();
    let sender = writer.sender();
    let started = Instant::now();
    for n in 100..3100 {
        sender.try_send(pass(t0 + n, n as usize));
        std::thread::sleep(Duration::from_micros(200));
    }
    // The request path never waited on the database.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let down = writer.stats();
    assert!(down.unavailable > 0, "{down:?}");
    assert!(down.spooled > 0, "{down:?}");

    pg.restart().unwrap();
    let started = Instant::now();
    loop {
        let s = writer.stats();
        if s.spooled == 0 && s.written + s.failed + s.dropped >= 3100 {
            break;
        }
        assert!(started.elapsed() < WAIT, "{s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = writer.stats();
    assert_eq!(s.written + s.failed + s.dropped, 3100, "{s:?}");
    assert_eq!(s.failed + s.dropped, 0, "every event kept: {s:?}");
    let newest = store.search(&EventFilter::default()).unwrap();
    assert_eq!(newest[0].request_id, format!("req-{}-3099", t0 + 3099));
}

/// The gateway opens its services from async startup code: the store must
/// not nest tokio's `block_on` there.
#[test]
fn opens_and_writes_from_async_code() {
    let Some(pg) = server() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(&pg);
        store.write_batch(&[pass(T0, 1)]).unwrap();
        assert_eq!(store.search(&EventFilter::default()).unwrap().len(), 1);
    });
}
