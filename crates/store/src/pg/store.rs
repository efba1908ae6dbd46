//! [`PgStore`]: the [`EventStore`] over PostgreSQL.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::days::day_of;
use super::write::Ids;
use super::{PgConfig, PgPool, pg_error, read, retention, schema, write};
use crate::query::{
    ChallengeMinute, EventFilter, Pruned, Retention, RollupQuery, Series, SolveRateQuery, TopEntry,
    TopQuery, TrialCount, TrialQuery,
};
use crate::{EventStore, PassTally, StoreError, StoredEvent, bound};

/// Partitions remembered as existing; beyond it the memory starts over.
const KNOWN_DAYS: usize = 64;

/// Events and rollups in PostgreSQL, shared by every node.
pub struct PgStore {
    pool: PgPool,
    writer: Mutex<WriterState>,
}

/// What the writer learns once: the schema is in place, its id tag, and
/// which daily partitions exist.
#[derive(Default)]
struct WriterState {
    ids: Option<Ids>,
    days: HashSet<i64>,
}

impl PgStore {
    /// Connects, migrates the schema and creates today's partition. A
    /// database that cannot be reached now is not an error: the store gets
    /// ready on the first write that reaches it (until then the writer
    /// spools), so a node starts while PostgreSQL restarts.
    pub fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        let store = PgStore {
            pool: PgPool::new(config)?,
            writer: Mutex::new(WriterState::default()),
        };
        let mut guard = store.lock_writer();
        let state = &mut *guard;
        match store.pool.block_on(|| store.prepare(state)) {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "PostgreSQL unreachable; events are spooled until it answers");
            }
            Err(e) => return Err(e),
        }
        drop(guard);
        Ok(store)
    }

    /// The pool, to share with the console's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn prepare(&self, state: &mut WriterState) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        ready(&mut client, state).await
    }

    async fn write(
        &self,
        state: &mut WriterState,
        events: &[Cow<'_, StoredEvent>],
    ) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        ready(&mut client, state).await?;
        for day in events.iter().map(|e| day_of(e.ts_ms)) {
            if !state.days.contains(&day) {
                retention::ensure_partition(&mut client, day).await?;
                if state.days.len() >= KNOWN_DAYS {
                    state.days.clear();
                }
                state.days.insert(day);
            }
        }
        let Some(ids) = state.ids.as_mut() else {
            return Err(StoreError::Corrupt("the writer has no id tag".into()));
        };
        let written = write::write_batch(&mut client, ids, events).await;
        if let Err(StoreError::Database(e)) = &written
            && is_missing_partition(e.as_ref())
        {
            // Another node's retention dropped a partition this one knew.
            state.days.clear();
        }
        written
    }

    fn read<T: Send>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.pool.block_on(|| async {
            let client = self.pool.get().await?;
            f(&client).await
        })
    }
}

/// Migrates and takes an id tag, once per store.
async fn ready(client: &mut Client, state: &mut WriterState) -> Result<(), StoreError> {
    if state.ids.is_some() {
        return Ok(());
    }
    schema::migrate(client).await?;
    let ticket: i64 = client
        .query_one("SELECT nextval('event_writers')", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    state.ids = Some(Ids::new(ticket));
    Ok(())
}

fn is_missing_partition(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| *c == SqlState::CHECK_VIOLATION)
}

impl EventStore for PgStore {
    fn write_batch(&self, events: &[StoredEvent]) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let events: Vec<Cow<'_, StoredEvent>> = events.iter().map(bound).collect();
        let mut guard = self.lock_writer();
        let state = &mut *guard;
        self.pool.block_on(|| self.write(state, &events))
    }

    fn write_tally(&self, tally: &PassTally) -> Result<(), StoreError> {
        if tally.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock_writer();
        let state = &mut *guard;
        self.pool.block_on(|| async {
            let mut client = self.pool.get().await?;
            ready(&mut client, state).await?;
            write::write_tally(&mut client, tally).await
        })
    }

    fn search(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(async |c| read::search(c, filter).await)
    }

    fn get(&self, request_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.read(async |c| read::get(c, request_id).await)
    }

    fn rollups(&self, query: &RollupQuery) -> Result<Vec<Series>, StoreError> {
        self.read(async |c| read::rollups(c, query).await)
    }

    fn top(&self, query: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        self.read(async |c| read::top(c, query).await)
    }

    fn trial(&self, query: &TrialQuery) -> Result<Vec<TrialCount>, StoreError> {
        self.read(async |c| read::trial(c, query).await)
    }

    fn solve_rate(&self, query: &SolveRateQuery) -> Result<Vec<ChallengeMinute>, StoreError> {
        self.read(async |c| read::solve_rate(c, query).await)
    }

    fn retention_step(&self, policy: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        self.pool.block_on(|| async {
            let mut client = self.pool.get().await?;
            retention::step(&mut client, policy, now_ms).await
        })
    }
}
