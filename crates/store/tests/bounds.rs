//! Disk use: bounded fields, the disk budget, and the spool that keeps
//! events while the database is unreachable.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BeforeWrite, HookedStore, TempDir, now_ms, pass, sample_tally};
use portcullis_store::{
    EventFilter, EventStore, EventWriter, MARK, MAX_PATH, MAX_SIGNAL_TEXT, Retention, SqliteStore,
    StoreError, StoredEvent, TopField, TopOrder, TopQuery, WriterConfig,
};

const WAIT: Duration = Duration::from_secs(30);

/// Bytes of the database and its WAL.
fn disk_bytes(dir: &TempDir) -> u64 {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum()
}

/// A request refused for its 30 KB URI.
fn long_uri(ts_ms: i64, n: usize) -> StoredEvent {
    StoredEvent {
        path: format!("/{n}/{}", "a".repeat(30 * 1024)),
        action: "bad_request".into(),
        status: 414,
        signals: format!(
            r#"[{{"name":"uri_too_long","weight":100,"evidence":"{}"}}]"#,
            "b".repeat(30 * 1024)
        ),
        ..pass(ts_ms, n)
    }
}

#[test]
fn two_thousand_30kb_uris_add_a_bounded_amount() {
    let dir = TempDir::new("bounded");
    let store = Arc::new(SqliteStore::open(dir.db()).unwrap());
    store.checkpoint().unwrap();
    let before = disk_bytes(&dir);
    let writer = EventWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let t0 = now_ms();
    for n in 0..2000 {
        assert!(writer.sender().send(long_uri(t0 + n as i64, n)));
    }
    assert!(writer.flush(WAIT));
    assert_eq!(writer.stats().written, 2000);
    store.checkpoint().unwrap();
    let added = disk_bytes(&dir) - before;
    // Unbounded, these events took 120 MB (two 30 KB fields each). Bounded,
    // their text is one path and one evidence, stored at most twice over
    // (B-tree pages are not full).
    let bound = 2000 * 2 * (MAX_PATH + MAX_SIGNAL_TEXT) as u64;
    assert!(added < bound, "added {added} bytes, bound {bound}");
    let stored = store.search(&EventFilter::default()).unwrap();
    assert_eq!(stored[0].path.len(), MAX_PATH);
    assert!(stored[0].path.ends_with(MARK));
    assert_eq!(stored[0].reason(), "uri_too_long");
}

#[test]
fn the_budget_drops_the_oldest_events_first_and_counts_them() {
    let dir = TempDir::new("budget");
    let store = Arc::new(SqliteStore::open(dir.db()).unwrap());
    let budget = 2 << 20;
    let config = WriterConfig {
        batch_size: 500,
        retention: Some(Retention {
            chunk: 500,
            max_bytes: Some(budget),
            ..Retention::default()
        }),
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    let t0 = now_ms();
    let total = 20_000;
    for n in 0..total {
        assert!(writer.sender().send(long_uri(t0 + n as i64, n)));
    }
    assert!(writer.flush(WAIT));
    let started = Instant::now();
    let stats = loop {
        let stats = writer.stats();
        if stats.store_bytes > 0 && stats.store_bytes <= budget && stats.written == total as u64 {
            break stats;
        }
        assert!(started.elapsed() < WAIT, "{stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(writer);
    let kept = count(&store);
    assert!(stats.budget_dropped > 0, "{stats:?}");
    assert_eq!(
        kept as u64 + stats.budget_dropped,
        total as u64,
        "{stats:?}"
    );
    let newest = store.search(&EventFilter::default()).unwrap();
    assert_eq!(
        newest[0].request_id,
        format!("req-{}-{}", t0 + 19_999, 19_999)
    );
    let oldest = EventFilter {
        to_ms: Some(t0 + 1),
        ..EventFilter::default()
    };
    assert!(store.search(&oldest).unwrap().is_empty(), "oldest first");
    store.checkpoint().unwrap();
    // Freed pages are reused: the file stays near the budget, not at the
    // ~20 MB the events would take.
    assert!(disk_bytes(&dir) < 3 * budget, "{}", disk_bytes(&dir));
}

fn count(store: &SqliteStore) -> usize {
    let mut total = 0;
    let mut cursor = None;
    loop {
        let f = EventFilter {
            limit: 1000,
            before_id: cursor,
            ..Default::default()
        };
        let page = store.search(&f).unwrap();
        let Some(last) = page.last() else {
            return total;
        };
        cursor = last.id;
        total += page.len();
    }
}

/// An outage: writes fail as an unreachable database while `down` is set.
struct Outage {
    down: AtomicBool,
    attempts: Mutex<u32>,
}

impl BeforeWrite for Outage {
    fn before_write(&self) -> Result<(), StoreError> {
        *self.attempts.lock().unwrap() += 1;
        if self.down.load(Ordering::SeqCst) {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(StoreError::Unavailable(Box::new(refused)));
        }
        Ok(())
    }
}

#[test]
fn an_unreachable_store_spools_then_catches_up_in_order() {
    let dir = TempDir::new("spool");
    let store = Arc::new(HookedStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
        hook: Outage {
            down: AtomicBool::new(true),
            attempts: Mutex::new(0),
        },
    });
    let config = WriterConfig {
        batch_size: 100,
        max_delay: Duration::from_millis(5),
        spool: 1000,
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    let t0 = now_ms();
    for n in 0..1500 {
        assert!(writer.sender().send(pass(t0 + n as i64, n)));
    }
    assert!(writer.flush(WAIT));
    let stats = writer.stats();
    assert_eq!((stats.written, stats.spooled, stats.failed), (0, 1000, 500));
    // Backing off: far fewer attempts than batches.
    assert!(*store.hook.attempts.lock().unwrap() < 10, "{stats:?}");
    store.hook.down.store(false, Ordering::SeqCst);
    let started = Instant::now();
    while writer.stats().written < 1000 {
        assert!(started.elapsed() < WAIT, "{:?}", writer.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(writer.stats().spooled, 0);
    let stored = store.inner.search(&EventFilter::default()).unwrap();
    // The oldest 500 were dropped; the rest written in order.
    assert_eq!(stored[0].request_id, format!("req-{}-1499", t0 + 1499));
    assert_eq!(
        stored.last().unwrap().request_id,
        format!("req-{}-1400", t0 + 1400)
    );
    assert!(stored.windows(2).all(|w| w[0].id > w[1].id));
}

#[test]
fn counted_passes_wait_out_an_outage() {
    let dir = TempDir::new("tally-outage");
    let store = Arc::new(HookedStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
        hook: Outage {
            down: AtomicBool::new(true),
            attempts: Mutex::new(0),
        },
    });
    let writer = EventWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    assert!(writer.try_send_tally(sample_tally()));
    assert!(writer.try_send_tally(sample_tally()));
    assert!(writer.flush(WAIT));
    assert_eq!(writer.stats().counted, 0, "the database is away");
    store.hook.down.store(false, Ordering::SeqCst);
    let started = Instant::now();
    while writer.stats().counted < 90 {
        assert!(started.elapsed() < WAIT, "{:?}", writer.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = writer.stats();
    assert_eq!(
        (stats.counted, stats.failed, stats.uncounted_keys),
        (90, 0, 0)
    );
    let top = store
        .inner
        .top(&TopQuery {
            field: TopField::ClientIp,
            from_ms: common::T0,
            to_ms: common::T0 + 120_000,
            limit: 1,
            order: TopOrder::Requests,
            exclude_class: None,
        })
        .unwrap();
    assert_eq!((top[0].key.as_str(), top[0].requests), ("192.0.2.50", 60));
}
