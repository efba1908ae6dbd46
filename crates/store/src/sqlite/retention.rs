//! Retention: expired rows deleted in small chunks, one transaction each.

use rusqlite::{Connection, params};

use crate::query::{Pruned, Retention};
use crate::{StoreError, bucket_of, id_floor};

const DELETE_EVENTS: &str = "DELETE FROM events WHERE id IN \
     (SELECT id FROM events WHERE id < ?1 ORDER BY id LIMIT ?2)";

/// Rollups have no rowid: delete by primary key, oldest minutes first.
const DELETE_ROLLUPS: &str = "DELETE FROM rollups \
     WHERE (minute, layer, action, reason, route, class) IN \
     (SELECT minute, layer, action, reason, route, class FROM rollups \
      WHERE minute < ?1 ORDER BY minute LIMIT ?2)";

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
    let rollups = delete_rollups(conn, policy.rollups_cutoff_minute(now_ms), chunk)?;
    let full = |n: usize| i64::try_from(n).is_ok_and(|n| n >= chunk);
    Ok(Pruned {
        events: events as u64,
        rollups: rollups as u64,
        more: full(events) || full(keys) || full(rollups),
    })
}

fn delete_rollups(conn: &Connection, cutoff_minute: i64, chunk: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(DELETE_ROLLUPS)?
        .execute(params![cutoff_minute, chunk])?)
}
