//! The request path's side: a bounded queue drained by one writer thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::query::{Pruned, Retention};
use crate::{EventStore, PassTally, StoreError, StoredEvent};

/// The longest an idle writer sleeps before looking at the stop flag.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// First and longest wait before writing the spool again.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Bytes an event costs beyond its text fields (ids, numbers, index rows).
const EVENT_OVERHEAD: u64 = 160;
/// With a disk budget, retention also runs whenever about this fraction of
/// the budget was written since it last ran, so a flood overshoots it by
/// little whatever `retention_every` is.
const BUDGET_SLICES: u64 = 16;
/// Client keys a tally waiting for the database may hold (see
/// [`PassTally::add_key`]); the passes themselves are always counted.
const MAX_TALLY_KEYS: usize = 200_000;

/// How the writer batches, and whether it runs retention itself.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Events the queue holds; a full queue drops new events. The queue is
    /// allocated up front, about 400 bytes per slot (32 768: ~13 MB).
    pub capacity: usize,
    /// Events per transaction at most.
    pub batch_size: usize,
    /// How long the first event of a batch waits for others.
    pub max_delay: Duration,
    /// Retention run between batches, one chunk at a time.
    pub retention: Option<Retention>,
    /// How often the writer looks for expired rows.
    pub retention_every: Duration,
    /// Events kept in memory while the database is unreachable, written when
    /// it is back; beyond it the oldest are dropped and counted (`failed`).
    pub spool: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            capacity: 32_768,
            batch_size: 5000,
            max_delay: Duration::from_millis(100),
            retention: None,
            retention_every: Duration::from_secs(60),
            spool: 50_000,
        }
    }
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Events committed to the store.
    pub written: u64,
    /// Events refused because the queue was full.
    pub dropped: u64,
    /// Events lost because their batch failed to write, or because the
    /// spool was full while the database was unreachable.
    pub failed: u64,
    /// Events waiting in the spool for the database to come back.
    pub spooled: u64,
    /// Failed attempts to reach the database.
    pub unavailable: u64,
    /// Clean passes counted into the rollups and key counts (a tally each
    /// second or so) rather than written one by one.
    pub counted: u64,
    /// Passes whose client key did not fit in a tally: they count in the
    /// totals, not in the top lists.
    pub uncounted_keys: u64,
    /// Batches committed.
    pub batches: u64,
    /// Duration of the last committed batch, in microseconds.
    pub last_batch_us: u64,
    /// Longest batch so far, in microseconds.
    pub max_batch_us: u64,
    /// Time spent writing batches, in microseconds: `written` over it is
    /// what the writer sustains, however busy it is.
    pub busy_us: u64,
    /// Size of the last committed batch.
    pub last_batch_len: u64,
    /// Rows deleted by retention (events, rollup rows).
    pub pruned_events: u64,
    pub pruned_rollups: u64,
    /// Events deleted, oldest first, to keep within the disk budget.
    pub budget_dropped: u64,
    /// Bytes the store used at the last retention step (with a budget).
    pub store_bytes: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    spooled: AtomicU64,
    unavailable: AtomicU64,
    counted: AtomicU64,
    uncounted_keys: AtomicU64,
    batches: AtomicU64,
    last_batch_us: AtomicU64,
    max_batch_us: AtomicU64,
    busy_us: AtomicU64,
    last_batch_len: AtomicU64,
    pruned_events: AtomicU64,
    pruned_rollups: AtomicU64,
    budget_dropped: AtomicU64,
    store_bytes: AtomicU64,
    stop: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            written: self.written.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            counted: self.counted.load(Relaxed),
            uncounted_keys: self.uncounted_keys.load(Relaxed),
            batches: self.batches.load(Relaxed),
            last_batch_us: self.last_batch_us.load(Relaxed),
            max_batch_us: self.max_batch_us.load(Relaxed),
            busy_us: self.busy_us.load(Relaxed),
            last_batch_len: self.last_batch_len.load(Relaxed),
            pruned_events: self.pruned_events.load(Relaxed),
            pruned_rollups: self.pruned_rollups.load(Relaxed),
            budget_dropped: self.budget_dropped.load(Relaxed),
            store_bytes: self.store_bytes.load(Relaxed),
        }
    }

    fn batch_done(&self, len: usize, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.written.fetch_add(len as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.last_batch_us.store(us, Relaxed);
        self.max_batch_us.fetch_max(us, Relaxed);
        self.busy_us.fetch_add(us, Relaxed);
        self.last_batch_len.store(len as u64, Relaxed);
    }
}

// Events are nearly every message: boxing them would cost an allocation per
// event to save space on the rare control messages.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(StoredEvent),
    /// Counted passes, written with the next batch.
    Tally(PassTally),
    /// Acknowledged once everything queued before it is written.
    Flush(mpsc::Sender<()>),
    /// Wakes the writer so it notices the stop flag.
    Wake,
}

/// A cloneable handle for the request path: `try_send` never blocks.
#[derive(Clone)]
pub struct EventSender {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
}

impl EventSender {
    /// Queues an event; false (and one more `dropped`) when the queue is
    /// full or the writer has stopped.
    pub fn try_send(&self, event: StoredEvent) -> bool {
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Queues counted passes; false (their passes counted in `failed`) when
    /// the queue is full or the writer has stopped.
    pub fn try_send_tally(&self, tally: PassTally) -> bool {
        let total = tally.total();
        match self.tx.try_send(Msg::Tally(tally)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.failed.fetch_add(total, Relaxed);
                false
            }
        }
    }

    /// Queues an event, waiting for room: for imports and replays, never
    /// for the request path. False when the writer has stopped.
    pub fn send(&self, event: StoredEvent) -> bool {
        self.tx.send(Msg::Event(event)).is_ok()
    }

    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }
}

/// Owns the writer thread. Dropping it flushes what is queued and joins.
pub struct EventWriter {
    sender: EventSender,
    thread: Option<JoinHandle<()>>,
}

impl EventWriter {
    /// Starts the writer thread over `store`.
    pub fn spawn(store: Arc<dyn EventStore>, config: WriterConfig) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::sync_channel(config.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let worker = Worker::new(store, config, rx, Arc::clone(&counters));
        let thread = std::thread::Builder::new()
            .name("portcullis-store-writer".into())
            .spawn(move || worker.run())?;
        Ok(EventWriter {
            sender: EventSender { tx, counters },
            thread: Some(thread),
        })
    }

    /// A handle for other threads (the gateway's workers).
    pub fn sender(&self) -> EventSender {
        self.sender.clone()
    }

    /// See [`EventSender::try_send`].
    pub fn try_send(&self, event: StoredEvent) -> bool {
        self.sender.try_send(event)
    }

    /// See [`EventSender::try_send_tally`].
    pub fn try_send_tally(&self, tally: PassTally) -> bool {
        self.sender.try_send_tally(tally)
    }

    pub fn stats(&self) -> WriterStats {
        self.sender.stats()
    }

    /// Waits until every event queued before this call is written (or
    /// failed, or spooled while the database is unreachable). False if the
    /// writer is gone or `timeout` passed.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::channel();
        if self.sender.tx.send(Msg::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Writes what is queued, stops the thread and returns the final stats.
    pub fn shutdown(mut self) -> WriterStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.sender.counters.stop.store(true, Relaxed);
        let _ = self.sender.tx.try_send(Msg::Wake);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("event writer thread panicked");
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread's state.
struct Worker {
    store: Arc<dyn EventStore>,
    config: WriterConfig,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    batch: Vec<StoredEvent>,
    /// Counted passes not written yet (kept while the database is away).
    tally: PassTally,
    acks: Vec<mpsc::Sender<()>>,
    next_retention: Instant,
    retention_pending: bool,
    /// Bytes written since retention last ran (see [`BUDGET_SLICES`]).
    written_bytes: u64,
    /// Events kept while the database is unreachable, oldest first.
    spool: VecDeque<StoredEvent>,
    /// When to try the database again; `None` while it answers.
    retry_at: Option<Instant>,
    retry_wait: Duration,
}

impl Worker {
    fn new(
        store: Arc<dyn EventStore>,
        config: WriterConfig,
        rx: Receiver<Msg>,
        counters: Arc<Counters>,
    ) -> Self {
        Worker {
            batch: Vec::with_capacity(config.batch_size.max(1)),
            tally: PassTally::default(),
            acks: Vec::new(),
            next_retention: Instant::now(),
            retention_pending: config.retention.is_some(),
            written_bytes: 0,
            spool: VecDeque::new(),
            retry_at: None,
            retry_wait: RETRY_FIRST,
            store,
            config,
            rx,
            counters,
        }
    }

    fn run(mut self) {
        while !self.stopping() {
            match self.rx.recv_timeout(self.idle_wait()) {
                Ok(msg) => {
                    self.take(msg);
                    self.fill();
                    self.commit();
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.retry_spool();
                    self.write_tally();
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.retention_tick();
        }
        self.drain();
    }

    fn stopping(&self) -> bool {
        self.counters.stop.load(Relaxed)
    }

    /// How long to sleep when idle: until retention or a retry of the spool
    /// is due, at most 1 s.
    fn idle_wait(&self) -> Duration {
        if self.retention_pending {
            return Duration::ZERO;
        }
        let retention = self.config.retention.map(|_| self.next_retention);
        let due = [retention, self.retry_at].into_iter().flatten().min();
        match due {
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), IDLE_WAIT),
            None => IDLE_WAIT,
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Event(event) => self.batch.push(event),
            Msg::Tally(tally) => {
                let lost = self.tally.merge(tally, MAX_TALLY_KEYS);
                self.counters.uncounted_keys.fetch_add(lost, Relaxed);
            }
            Msg::Flush(ack) => self.acks.push(ack),
            Msg::Wake => {}
        }
    }

    /// Collects a batch: until it is full, a flush is asked for, or the
    /// first event has waited `max_delay`.
    fn fill(&mut self) {
        let deadline = Instant::now() + self.config.max_delay;
        while self.batch.len() < self.config.batch_size && self.acks.is_empty() {
            let msg = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(_) => match self.wait_until(deadline) {
                    Some(msg) => msg,
                    None => return,
                },
            };
            self.take(msg);
        }
    }

    fn wait_until(&self, deadline: Instant) -> Option<Msg> {
        if self.stopping() {
            return None;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        self.rx.recv_timeout(left).ok()
    }

    /// Writes the batch, or spools it behind older spooled events (which
    /// must be written first, in order).
    fn commit(&mut self) {
        if !self.batch.is_empty() {
            if self.spool.is_empty() {
                let batch = std::mem::take(&mut self.batch);
                if let Err(batch) = self.write(batch) {
                    self.spool_batch(batch);
                }
            } else {
                let batch = std::mem::take(&mut self.batch);
                self.spool_batch(batch);
            }
            self.batch.reserve(self.config.batch_size.max(1));
        }
        self.retry_spool();
        self.write_tally();
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
    }

    /// Writes one batch. Gives it back when the database is unreachable;
    /// any other failure loses it (counted), since retrying the same rows
    /// would fail the same way.
    fn write(&mut self, batch: Vec<StoredEvent>) -> Result<(), Vec<StoredEvent>> {
        let started = Instant::now();
        match self.store.write_batch(&batch) {
            Ok(n) => {
                self.counters.batch_done(n, started.elapsed());
                self.written_bytes += batch.iter().map(approx_bytes).sum::<u64>();
                self.note_budget();
                self.retry_at = None;
                self.retry_wait = RETRY_FIRST;
                Ok(())
            }
            Err(error) if error.is_unavailable() => {
                self.counters.unavailable.fetch_add(1, Relaxed);
                tracing::warn!(%error, retry_in = ?self.retry_wait, "event store unreachable; spooling events");
                self.retry_at = Some(Instant::now() + self.retry_wait);
                self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
                Err(batch)
            }
            Err(error) => {
                let lost = batch.len() as u64;
                self.counters.failed.fetch_add(lost, Relaxed);
                tracing::warn!(%error, lost, "event batch not written");
                Ok(())
            }
        }
    }

    /// Writes the counted passes; while the database is unreachable they
    /// wait (and the next tallies merge into them), like spooled events.
    fn write_tally(&mut self) {
        let waiting = self.retry_at.is_some_and(|at| Instant::now() < at);
        if self.tally.is_empty() || !self.spool.is_empty() || waiting {
            return;
        }
        match self.store.write_tally(&self.tally) {
            Ok(()) => {
                self.counters.counted.fetch_add(self.tally.total(), Relaxed);
                self.tally = PassTally::default();
            }
            Err(error) if error.is_unavailable() => {
                self.counters.unavailable.fetch_add(1, Relaxed);
                if self.retry_at.is_none() {
                    self.retry_at = Some(Instant::now() + self.retry_wait);
                    self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
                }
            }
            Err(error) => {
                let lost = self.tally.total();
                self.counters.failed.fetch_add(lost, Relaxed);
                tracing::warn!(%error, lost, "counted passes not written");
                self.tally = PassTally::default();
            }
        }
    }

    /// Appends to the spool, dropping (and counting) the oldest beyond it.
    fn spool_batch(&mut self, batch: Vec<StoredEvent>) {
        self.spool.extend(batch);
        let over = self.spool.len().saturating_sub(self.config.spool);
        if over > 0 {
            self.spool.drain(..over);
            self.counters.failed.fetch_add(over as u64, Relaxed);
        }
        self.counters
            .spooled
            .store(self.spool.len() as u64, Relaxed);
    }

    /// When a retry is due, writes the spool oldest first, batch by batch,
    /// until it is empty or the database fails again.
    fn retry_spool(&mut self) {
        while !self.spool.is_empty() && self.retry_at.is_none_or(|at| Instant::now() >= at) {
            let n = self.spool.len().min(self.config.batch_size.max(1));
            let batch: Vec<StoredEvent> = self.spool.drain(..n).collect();
            if let Err(batch) = self.write(batch) {
                for event in batch.into_iter().rev() {
                    self.spool.push_front(event);
                }
                break;
            }
        }
        self.counters
            .spooled
            .store(self.spool.len() as u64, Relaxed);
    }

    /// Writes everything still queued, in batches, then acknowledges; what
    /// the database does not take now is lost and counted.
    fn drain(&mut self) {
        self.retry_at = None;
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
            if self.batch.len() >= self.config.batch_size {
                self.commit();
            }
        }
        self.commit();
        let lost = self.spool.len() as u64;
        if lost > 0 {
            self.counters.failed.fetch_add(lost, Relaxed);
            self.counters.spooled.store(0, Relaxed);
            tracing::warn!(
                lost,
                "event store unreachable at shutdown; spooled events lost"
            );
        }
    }

    /// With a disk budget, asks for retention once a slice of it was written.
    fn note_budget(&mut self) {
        let Some(max) = self.config.retention.and_then(|r| r.max_bytes) else {
            return;
        };
        if self.written_bytes >= max / BUDGET_SLICES {
            self.retention_pending = true;
        }
    }

    /// Deletes one chunk of expired rows when retention is due.
    fn retention_tick(&mut self) {
        let Some(policy) = self.config.retention else {
            return;
        };
        if !self.retention_pending && Instant::now() < self.next_retention {
            return;
        }
        self.written_bytes = 0;
        match self.store.retention_step(&policy, now_ms()) {
            Ok(pruned) => self.pruned(&pruned),
            Err(error) => {
                tracing::warn!(%error, "retention step failed");
                self.retention_pending = false;
            }
        }
        if !self.retention_pending {
            self.next_retention = Instant::now() + self.config.retention_every;
        }
    }

    fn pruned(&mut self, pruned: &Pruned) {
        let c = &self.counters;
        c.pruned_events.fetch_add(pruned.events, Relaxed);
        c.pruned_rollups.fetch_add(pruned.rollups, Relaxed);
        c.budget_dropped.fetch_add(pruned.over_budget, Relaxed);
        if let Some(used) = pruned.used_bytes {
            c.store_bytes.store(used, Relaxed);
        }
        if pruned.over_budget > 0 {
            tracing::warn!(
                dropped = pruned.over_budget,
                used = pruned.used_bytes,
                "event store over its disk budget: oldest events dropped"
            );
        }
        self.retention_pending = pruned.more;
    }
}

/// About what an event adds to the store, for the budget's pacing.
fn approx_bytes(e: &StoredEvent) -> u64 {
    let text = e.path.len() + e.host.len() + e.signals.len() + e.request_id.len();
    let text = text.min(crate::MAX_PATH + crate::MAX_HOST + crate::MAX_SIGNALS + 64);
    text as u64 + EVENT_OVERHEAD
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
