//! Batched writes: events and rollup upserts in one transaction.

use std::borrow::Cow;

use rusqlite::{CachedStatement, Connection, ErrorCode, Transaction, params};

use crate::bound::bound;
use crate::event::reasons_text;
use crate::keys::{bucket_of, key_hash, keys_of};
use crate::rollup::{RollupKey, aggregate};
use crate::{PassTally, StoreError, StoredEvent, event_id};

const INSERT_EVENT: &str = "INSERT INTO events (id, ts_ms, request_id, client_ip, method, host, \
     path, action, layer, status, class, cid, device_id, account_id, route, risk_rank, rule, \
     signals, duration_us, device_risk_rank, reasons, would) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
     ?20, ?21, ?22)";

const UPSERT_ROLLUP: &str = "INSERT INTO rollups (minute, layer, action, reason, route, class, \
     count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (minute, layer, action, reason, route, class) \
     DO UPDATE SET count = count + excluded.count";

const UPSERT_PASS_KEY: &str = "INSERT INTO pass_keys (minute, field, key, class, count) \
     VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (minute, field, key, class) DO UPDATE SET count = count + excluded.count";

const INSERT_KEY: &str = "INSERT OR IGNORE INTO event_keys (bucket, key, id) VALUES (?1, ?2, ?3)";

/// Attempts at a fresh id when one is already taken (a clock stepping back).
const ID_ATTEMPTS: u32 = 16;

/// The single writer connection and its id sequence.
pub(super) struct Writer {
    pub(super) conn: Connection,
    seq: u64,
}

impl Writer {
    /// Continues the sequence after the newest stored id, so a restart
    /// within the same millisecond does not collide.
    pub(super) fn new(conn: Connection) -> Result<Self, StoreError> {
        let newest: Option<i64> = conn.query_row("SELECT max(id) FROM events", [], |r| r.get(0))?;
        let seq = newest.map_or(0, |id| u64::try_from(id).unwrap_or(0));
        Ok(Writer { conn, seq })
    }

    pub(super) fn write_batch(&mut self, events: &[StoredEvent]) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let events: Vec<Cow<'_, StoredEvent>> = events.iter().map(bound).collect();
        let reasons: Vec<Cow<'_, str>> = events.iter().map(|e| e.reason()).collect();
        let tx = self.conn.transaction()?;
        let mut keys = Vec::with_capacity(events.len() * 4);
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            for (event, reason) in events.iter().zip(&reasons) {
                let id = insert_event(&mut insert, &mut self.seq, event, reason)?;
                let bucket = bucket_of(event.ts_ms);
                keys.extend(keys_of(event).map(|(k, v)| (bucket, key_hash(k, v), id)));
            }
        }
        insert_keys(&tx, &mut keys)?;
        upsert_rollups(&tx, &events, &reasons)?;
        tx.commit()?;
        Ok(events.len())
    }
}

impl Writer {
    pub(super) fn write_tally(&mut self, tally: &PassTally) -> Result<(), StoreError> {
        if tally.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_ROLLUP)?;
            for ((minute, class), count) in &tally.passes {
                let key = RollupKey::pass(*minute, class);
                upsert_rollup(&mut upsert, &key, *count)?;
            }
            let mut upsert = tx.prepare_cached(UPSERT_PASS_KEY)?;
            for ((minute, field, key, class), count) in &tally.keys {
                let count = i64::try_from(*count).unwrap_or(i64::MAX);
                upsert.execute(params![minute, field.column(), key, class, count])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn insert_event(
    stmt: &mut CachedStatement<'_>,
    seq: &mut u64,
    event: &StoredEvent,
    reason: &str,
) -> Result<i64, StoreError> {
    let mut attempts = 0;
    loop {
        *seq = seq.wrapping_add(1);
        let id = event_id(event.ts_ms, *seq);
        match execute_insert(stmt, id, event, reason) {
            Ok(()) => return Ok(id),
            Err(e) if is_constraint(&e) && attempts < ID_ATTEMPTS => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Inserts key rows in key order, so neighbours share pages.
fn insert_keys(tx: &Transaction<'_>, keys: &mut [(i64, i64, i64)]) -> Result<(), StoreError> {
    keys.sort_unstable();
    let mut insert = tx.prepare_cached(INSERT_KEY)?;
    for (bucket, key, id) in keys.iter() {
        insert.execute(params![bucket, key, id])?;
    }
    Ok(())
}

fn execute_insert(
    stmt: &mut CachedStatement<'_>,
    id: i64,
    e: &StoredEvent,
    reason: &str,
) -> rusqlite::Result<()> {
    let rule = (!reason.is_empty()).then_some(reason);
    let reasons = reasons_text(&e.reasons);
    stmt.execute(params![
        id,
        e.ts_ms,
        e.request_id,
        e.client_ip,
        e.method,
        e.host,
        e.path,
        e.action,
        e.layer,
        e.status,
        e.class,
        e.cid,
        e.device_id,
        e.account_id,
        e.route,
        e.risk_rank,
        rule,
        e.signals,
        e.duration_us,
        e.device_risk_rank,
        reasons,
        e.would,
    ])?;
    Ok(())
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

fn upsert_rollups(
    tx: &Transaction<'_>,
    events: &[Cow<'_, StoredEvent>],
    reasons: &[Cow<'_, str>],
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(UPSERT_ROLLUP)?;
    for (key, count) in aggregate(events, reasons) {
        upsert_rollup(&mut upsert, &key, count)?;
    }
    Ok(())
}

fn upsert_rollup(
    stmt: &mut CachedStatement<'_>,
    key: &RollupKey<'_>,
    count: u64,
) -> Result<(), StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    stmt.execute(params![
        key.minute,
        key.layer,
        key.action,
        key.reason.as_ref(),
        key.route,
        key.class,
        count,
    ])?;
    Ok(())
}
