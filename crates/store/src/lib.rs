//! Decision events and minute rollups.
//!
//! Owns the storage of what the gateway decided: one [`StoredEvent`] per
//! decision, and minute rollups (count per minute, layer, action, reason,
//! route and traffic class) that the console charts and the alerts read.
//!
//! - [`EventStore`] is the backend contract. It is synchronous: the
//!   [`EventWriter`] calls it from its own thread, and an async caller runs
//!   queries behind `tokio::task::spawn_blocking`. A PostgreSQL backend
//!   implements the same trait; everything that is not SQL (event ids,
//!   rollup aggregation, query shapes) lives outside the SQLite module.
//! - [`SqliteStore`] is the embedded default: bundled SQLite in WAL mode,
//!   one writer connection and a small pool of reader connections, schema
//!   migrations versioned with `PRAGMA user_version`.
//! - Event ids sort by time ([`event_id`]), so time ranges, cursors and
//!   retention use the table's own key; lookups by request id, IP, cid,
//!   device or account go through a time-bucketed key index ([`keys_of`])
//!   instead of one random-key B-tree per column, which kept writes fast as
//!   the database grows.
//! - Clean passes (no signal, no core URL) need not be stored one by one:
//!   a [`PassTally`] counts them per minute and class, and per minute and
//!   client key, into the rollups and the `pass_keys` table, so totals,
//!   series and top lists still count every request.
//! - [`EventWriter`] is the request path's side: a bounded queue that never
//!   blocks the sender (a full queue drops the event and counts it), drained
//!   by a dedicated thread that writes batches, one transaction per batch,
//!   with the rollups upserted in the same transaction, and that can run
//!   retention in small chunks between batches.

mod bound;
mod error;
mod event;
mod id;
mod keys;
pub mod pg;
mod query;
mod rollup;
mod sqlite;
mod tally;
mod writer;

pub use bound::{
    MARK, MAX_HOST, MAX_ID, MAX_PATH, MAX_REASON, MAX_REASONS, MAX_SHORT, MAX_SIGNAL_TEXT,
    MAX_SIGNALS, bound, truncate,
};
pub use error::StoreError;
pub use event::{ActionKind, StoredEvent};
pub use id::{event_id, id_floor, id_ts_ms};
pub use keys::{KEY_BUCKET_MS, KeyKind, bucket_of, key_hash, keys_of};
pub use pg::{PgConfig, PgPool, PgStore};
pub use query::{
    CHECK_FAILED, CHECK_ISSUED, CHECK_LIMITED, CHECK_SOLVED, ChallengeMinute, EventFilter,
    MAX_LIMIT, Pruned, Retention, RollupGroup, RollupQuery, Series, SolveRateQuery, TopEntry,
    TopField, TopOrder, TopQuery, TrialCount, TrialQuery, is_check_answer,
};
pub use rollup::{RollupKey, aggregate, minute_of};
pub use sqlite::{SqliteConfig, SqliteStore};
pub use tally::PassTally;
pub use writer::{EventSender, EventWriter, WriterConfig, WriterStats};

/// A backend for decision events and their minute rollups.
///
/// Every method is synchronous and may block on I/O: call it from the
/// writer thread or behind `spawn_blocking`. Implementations are shared
/// between the writer thread and readers (`Send + Sync`).
pub trait EventStore: Send + Sync {
    /// Writes `events` and adds them to the minute rollups, all in one
    /// transaction. Ids are assigned by the store; returns how many events
    /// were written.
    fn write_batch(&self, events: &[StoredEvent]) -> Result<usize, StoreError>;

    /// Adds counted passes (see [`PassTally`]) to the minute rollups and the
    /// per-minute key counts that the top lists read, in one transaction.
    fn write_tally(&self, tally: &PassTally) -> Result<(), StoreError>;

    /// Events matching `filter`, newest first, at most `filter.limit()`.
    fn search(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest event with this request id.
    fn get(&self, request_id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Minute series, one per value of the grouping column.
    fn rollups(&self, query: &RollupQuery) -> Result<Vec<Series>, StoreError>;

    /// The keys with the most requests (or intercepts) in a time range.
    fn top(&self, query: &TopQuery) -> Result<Vec<TopEntry>, StoreError>;

    /// What log-only policies would have stopped: counts per route and
    /// outcome (`intercept`, `challenge`) in a time range.
    fn trial(&self, query: &TrialQuery) -> Result<Vec<TrialCount>, StoreError>;

    /// The challenge solve rate: per minute, for every route the devices
    /// it challenged and how they fared at the check, and the check's own
    /// answers (see [`ChallengeMinute`]); by route, then minute.
    fn solve_rate(&self, query: &SolveRateQuery) -> Result<Vec<ChallengeMinute>, StoreError>;

    /// Deletes at most `policy.chunk` expired events and `policy.chunk`
    /// expired rollup rows, in short transactions, then (with a disk budget)
    /// the oldest events while the store is over it. Call it again while
    /// [`Pruned::more`] is true.
    fn retention_step(&self, policy: &Retention, now_ms: i64) -> Result<Pruned, StoreError>;

    /// Runs [`EventStore::retention_step`] until nothing expired is left.
    fn retention(&self, policy: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        loop {
            let step = self.retention_step(policy, now_ms)?;
            total.events += step.events;
            total.rollups += step.rollups;
            total.over_budget += step.over_budget;
            total.used_bytes = step.used_bytes;
            if !step.more {
                return Ok(total);
            }
        }
    }
}
