//! Retention: expired rows deleted in small chunks, one transaction each.

use rusqlite::{Connection, params};

use crate::query::{Pruned, Retention};
use crate::{StoreError, bucket_of, id_floor, id_ts_ms};

const DELETE_EVENTS: &str = "DELETE FROM events WHERE id IN \
     (SELECT id FROM events WHERE id < ?1 ORDER BY id LIMIT ?2)";

/// Rollups have no rowid: delete by primary key, oldest minutes first.
const DELETE_ROLLUPS: &str = "DELETE FROM rollups \
     WHERE (minute, layer, action, reason, route, class) IN \
     (SELECT minute, layer, action, reason, route, class FROM rollups \
      WHERE minute < ?1 ORDER BY minute LIMIT ?2)";

/// Counted passes stand in for events: they expire with them.
const DELETE_PASS_KEYS: &str = "DELETE FROM pass_keys \
     WHERE (minute, field, key, class) IN \
     (SELECT minute, field, key, class FROM pass_keys WHERE minute < ?1 ORDER BY minute LIMIT ?2)";

const DELETE_KEYS: &str = "DELETE FROM event_keys WHERE (bucket, key, id) IN \
     (SELECT bucket, key, id FROM event_keys WHERE bucket < ?1 ORDER BY bucket LIMIT ?2)";

/// Deletes up to `policy.chunk` expired events and rollup rows.
pub(super) fn step(
    conn: &Connection,
    policy: &Retention,
    now_ms: i64,
) -> Result<Pruned, StoreError> {
    let chunk = i64::from(policy.chunk.max(1));
    let events_cutoff = id_floor(policy.events_cutoff_ms(now_ms));
    let events = conn
        .prepare_cached(DELETE_EVENTS)?
        .execute(params![events_cutoff, chunk])?;
    let keys = conn
        .prepare_cached(DELETE_KEYS)?
        .execute(params![bucket_of(policy.events_cutoff_ms(now_ms)), chunk])?;
    let pass_keys = conn.prepare_cached(DELETE_PASS_KEYS)?.execute(params![
        crate::minute_of(policy.events_cutoff_ms(now_ms)),
        chunk
    ])?;
    let rollups = delete_rollups(conn, policy.rollups_cutoff_minute(now_ms), chunk)?;
    let full = |n: usize| i64::try_from(n).is_ok_and(|n| n >= chunk);
    let budget = match policy.max_bytes {
        Some(max) => budget_step(conn, max, chunk)?,
        None => Budget::default(),
    };
    Ok(Pruned {
        events: events as u64,
        rollups: rollups as u64,
        over_budget: budget.dropped,
        used_bytes: budget.used,
        more: full(events) || full(keys) || full(pass_keys) || full(rollups) || budget.over,
    })
}

#[derive(Default)]
struct Budget {
    dropped: u64,
    used: Option<u64>,
    over: bool,
}

/// Bytes in use: the pages of the database that are not free. Deleted rows
/// free whole pages (events are deleted oldest first, in id order), which
/// later writes reuse, so the file stops growing at the budget.
pub(super) fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        Ok(conn.pragma_query_value(None, name, |r| r.get(0))?)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok(u64::try_from(pages * pragma("page_size")?).unwrap_or(0))
}

/// Over the budget: deletes the oldest `chunk` events and their keys.
fn budget_step(conn: &Connection, max: u64, chunk: i64) -> Result<Budget, StoreError> {
    let used = used_bytes(conn)?;
    if used <= max {
        return Ok(Budget {
            used: Some(used),
            ..Budget::default()
        });
    }
    let edge: Option<i64> = conn
        .prepare_cached(CHUNK_EDGE)?
        .query_row(params![chunk], |r| r.get(0))?;
    let Some(edge) = edge else {
        tracing::warn!(
            used,
            max,
            "the event store is over its budget with no event left"
        );
        return Ok(Budget {
            used: Some(used),
            ..Budget::default()
        });
    };
    let tx = conn.unchecked_transaction()?;
    let dropped = tx
        .prepare_cached("DELETE FROM events WHERE id <= ?1")?
        .execute(params![edge])?;
    // Every key of an older bucket belongs to a deleted event.
    tx.prepare_cached("DELETE FROM event_keys WHERE bucket < ?1")?
        .execute(params![bucket_of(id_ts_ms(edge))])?;
    tx.commit()?;
    let after = used_bytes(conn)?;
    Ok(Budget {
        dropped: dropped as u64,
        used: Some(after),
        over: after > max,
    })
}

/// The newest id among the oldest `?1` events.
const CHUNK_EDGE: &str = "SELECT max(id) FROM (SELECT id FROM events ORDER BY id LIMIT ?1)";

fn delete_rollups(conn: &Connection, cutoff_minute: i64, chunk: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(DELETE_ROLLUPS)?
        .execute(params![cutoff_minute, chunk])?)
}
