//! The EventWriter: batching, flush, drops, shutdown, concurrent reads.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BeforeWrite, HookedStore, T0, TempDir, blocked, now_ms, pass};
use portcullis_store::{
    EventFilter, EventStore, EventWriter, Retention, SqliteStore, StoreError, WriterConfig,
};

const WAIT: Duration = Duration::from_secs(10);

fn open(dir: &TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir.db()).unwrap())
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
        if page.is_empty() {
            return total;
        }
        total += page.len();
        cursor = page.last().unwrap().id;
    }
}

#[test]
fn writes_in_batches_and_flushes() {
    let dir = TempDir::new("batches");
    let store = open(&dir);
    let config = WriterConfig {
        batch_size: 100,
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    for n in 0..1050 {
        assert!(writer.sender().send(pass(T0 + n as i64, n)));
    }
    assert!(writer.flush(WAIT));
    let stats = writer.stats();
    assert_eq!(stats.written, 1050);
    assert_eq!(stats.dropped, 0);
    assert!(stats.batches >= 11, "{stats:?}");
    assert!(stats.last_batch_len <= 100);
    assert!(stats.max_batch_us > 0);
    assert_eq!(count(&store), 1050);
}

#[test]
fn a_lone_event_is_written_within_max_delay() {
    let dir = TempDir::new("delay");
    let store = open(&dir);
    let config = WriterConfig {
        max_delay: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    assert!(writer.try_send(pass(T0, 1)));
    let started = Instant::now();
    while writer.stats().written == 0 {
        assert!(started.elapsed() < WAIT, "never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(count(&store), 1);
}

#[test]
fn shutdown_writes_what_is_queued() {
    let dir = TempDir::new("shutdown");
    {
        let writer = EventWriter::spawn(open(&dir), WriterConfig::default()).unwrap();
        for n in 0..5000 {
            assert!(writer.sender().send(pass(T0 + n as i64, n)));
        }
        let stats = writer.shutdown();
        assert_eq!(stats.written, 5000);
    }
    {
        let writer = EventWriter::spawn(open(&dir), WriterConfig::default()).unwrap();
        assert!(writer.try_send(blocked(T0 + 9000, 1, "sqli")));
        // Dropped without shutdown(): Drop flushes too.
    }
    assert_eq!(count(&open(&dir)), 5001);
}

/// Writes wait at a gate, to fill the queue.
struct Gate(Mutex<mpsc::Receiver<()>>);

impl BeforeWrite for Gate {
    fn before_write(&self) -> Result<(), StoreError> {
        let _ = self.0.lock().unwrap().recv();
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_without_blocking_and_counts() {
    let dir = TempDir::new("drops");
    let (open_gate, gate) = mpsc::channel();
    let store = Arc::new(HookedStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
        hook: Gate(Mutex::new(gate)),
    });
    let config = WriterConfig {
        capacity: 8,
        batch_size: 4,
        max_delay: Duration::from_millis(1),
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    let sender = writer.sender();
    let started = Instant::now();
    let accepted = (0..1000)
        .filter(|&n| sender.try_send(pass(T0 + n, n as usize)))
        .count();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "try_send blocked"
    );
    // The writer holds at most one batch (4) plus the queue (8).
    assert!((8..=12).contains(&accepted), "accepted {accepted}");
    assert_eq!(writer.stats().dropped, 1000 - accepted as u64);
    for _ in 0..1000 {
        let _ = open_gate.send(());
    }
    assert!(writer.flush(WAIT));
    let stats = writer.shutdown();
    assert_eq!(stats.written, accepted as u64);
    assert_eq!(count(&store.inner), accepted);
}

#[test]
fn readers_query_while_the_writer_writes() {
    let dir = TempDir::new("concurrent");
    let store = open(&dir);
    let config = WriterConfig {
        batch_size: 500,
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    let total = 20_000usize;
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0;
            while last < total {
                let f = EventFilter {
                    client_ip: Some("10.0.0.1".into()),
                    limit: 1000,
                    ..Default::default()
                };
                let page = store.search(&f).unwrap();
                assert!(page.iter().all(|e| e.client_ip == "10.0.0.1"));
                assert!(page.windows(2).all(|w| w[0].id > w[1].id));
                let seen = count(&store);
                assert!(seen >= last, "count went back from {last} to {seen}");
                last = seen;
                reads += 1;
            }
            reads
        })
    };
    let sender = writer.sender();
    let producer = std::thread::spawn(move || {
        for n in 0..total {
            assert!(sender.send(pass(T0 + n as i64, n)));
        }
    });
    producer.join().unwrap();
    assert!(writer.flush(WAIT));
    let reads = reader.join().unwrap();
    assert!(reads >= 1);
    assert_eq!(writer.stats().written, total as u64);
    assert_eq!(count(&store), total);
}

#[test]
fn the_writer_runs_retention_between_batches() {
    let dir = TempDir::new("writer-retention");
    let store = open(&dir);
    let old: Vec<_> = (0..30).map(|n| pass(n as i64 * 1000, n)).collect();
    store.write_batch(&old).unwrap();
    let config = WriterConfig {
        retention: Some(Retention {
            events_days: 1,
            rollups_days: 1,
            chunk: 7,
            max_bytes: None,
        }),
        ..WriterConfig::default()
    };
    let writer = EventWriter::spawn(store.clone(), config).unwrap();
    // The writer prunes against the wall clock, so the fresh event is dated now.
    assert!(writer.try_send(pass(now_ms(), 99)));
    let started = Instant::now();
    while writer.stats().pruned_events < 30 {
        assert!(started.elapsed() < WAIT, "{:?}", writer.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(writer.flush(WAIT));
    assert_eq!(writer.stats().pruned_rollups, 1);
    assert_eq!(count(&store), 1);
}
