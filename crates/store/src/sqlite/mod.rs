//! The embedded backend: bundled SQLite in WAL mode.

mod read;
mod retention;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::query::{
    ChallengeMinute, EventFilter, Pruned, Retention, RollupQuery, Series, SolveRateQuery, TopEntry,
    TopQuery, TrialCount, TrialQuery,
};
use crate::{EventStore, PassTally, StoreError, StoredEvent};

/// How the SQLite database is opened.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// Page size of a new database (ignored for an existing one).
    pub page_size: u32,
    /// Page cache per connection, in KiB.
    pub cache_kib: u32,
    /// `synchronous=FULL` (fsync every commit) instead of `NORMAL`
    /// (fsync at checkpoints: a power cut may lose the last batches, never
    /// corrupt the database).
    pub synchronous_full: bool,
    /// WAL pages after which a commit checkpoints (SQLite's default is
    /// 1000; 10 000 lets pages rewritten by several batches be copied once).
    pub wal_autocheckpoint: u32,
    /// Memory-mapped I/O per connection, in MiB (0: off).
    pub mmap_mib: u32,
    /// Reader connections kept open between queries.
    pub max_idle_readers: usize,
    /// How long a connection waits for a lock before failing.
    pub busy_timeout: Duration,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            page_size: 4096,
            cache_kib: 32 * 1024,
            synchronous_full: false,
            wal_autocheckpoint: 10_000,
            mmap_mib: 0,
            max_idle_readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Events and rollups in one SQLite file: one writer connection, pooled
/// reader connections (WAL lets them read while the writer writes).
pub struct SqliteStore {
    config: SqliteConfig,
    writer: Mutex<write::Writer>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteConfig::new(path.as_ref()))
    }

    pub fn open_with(config: SqliteConfig) -> Result<Self, StoreError> {
        let mut conn = open_writer(&config)?;
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            writer: Mutex::new(write::Writer::new(conn)?),
            readers: Mutex::new(Vec::new()),
            config,
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with_reader(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
    }

    /// Checkpoints the WAL into the database file and truncates it.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let w = self.lock_writer();
        w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    /// The query plan SQLite picks for a search (for tests and tuning).
    pub fn explain_search(&self, filter: &EventFilter) -> Result<String, StoreError> {
        self.with_reader(|c| read::explain_search(c, filter))
    }

    fn lock_writer(&self) -> MutexGuard<'_, write::Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take_reader()?;
        let out = f(&conn);
        self.give_back(conn);
        out
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.config),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.config.max_idle_readers {
            idle.push(conn);
        }
    }
}

fn open_writer(config: &SqliteConfig) -> Result<Connection, StoreError> {
    let conn = Connection::open(&config.path)?;
    conn.pragma_update(None, "page_size", config.page_size)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL mode; writes will be slower");
    }
    let sync = if config.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", config.wal_autocheckpoint)?;
    tune(&conn, config)?;
    Ok(conn)
}

fn open_reader(config: &SqliteConfig) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&config.path, flags)?;
    conn.pragma_update(None, "query_only", true)?;
    tune(&conn, config)?;
    Ok(conn)
}

fn tune(conn: &Connection, config: &SqliteConfig) -> Result<(), StoreError> {
    conn.busy_timeout(config.busy_timeout)?;
    conn.pragma_update(None, "cache_size", -i64::from(config.cache_kib))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "mmap_size", i64::from(config.mmap_mib) << 20)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl EventStore for SqliteStore {
    fn write_batch(&self, events: &[StoredEvent]) -> Result<usize, StoreError> {
        self.lock_writer().write_batch(events)
    }

    fn write_tally(&self, tally: &PassTally) -> Result<(), StoreError> {
        self.lock_writer().write_tally(tally)
    }

    fn search(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        self.with_reader(|c| read::search(c, filter))
    }

    fn get(&self, request_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.with_reader(|c| read::get(c, request_id))
    }

    fn rollups(&self, query: &RollupQuery) -> Result<Vec<Series>, StoreError> {
        self.with_reader(|c| read::rollups(c, query))
    }

    fn top(&self, query: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        self.with_reader(|c| read::top(c, query))
    }

    fn trial(&self, query: &TrialQuery) -> Result<Vec<TrialCount>, StoreError> {
        self.with_reader(|c| read::trial(c, query))
    }

    fn solve_rate(&self, query: &SolveRateQuery) -> Result<Vec<ChallengeMinute>, StoreError> {
        self.with_reader(|c| read::solve_rate(c, query))
    }

    fn retention_step(&self, policy: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        retention::step(&self.lock_writer().conn, policy, now_ms)
    }
}
