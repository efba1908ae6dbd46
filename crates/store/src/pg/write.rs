//! Batched writes: binary COPY of the events and one upsert of the minute
//! rollups, in one transaction.

use std::borrow::Cow;
use std::pin::pin;

use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::pg_error;
use crate::event::reasons_text;
use crate::rollup::{RollupKey, aggregate};
use crate::{PassTally, StoreError, StoredEvent, event_id};

const COPY_EVENTS: &str = "COPY events (id, ts_ms, request_id, client_ip, method, host, path, \
     action, layer, status, class, cid, device_id, account_id, route, risk_rank, rule, signals, \
     duration_us, device_risk_rank, reasons, would) FROM STDIN (FORMAT binary)";

const TYPES: [Type; 22] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
];

/// Rows ordered by key, so that nodes upserting the same minutes lock the
/// rows in the same order and never deadlock.
const UPSERT_ROLLUPS: &str = "INSERT INTO rollups (minute, layer, action, reason, route, class, \
     count) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::bigint[]) ORDER BY 1, 2, 3, 4, 5, 6 \
     ON CONFLICT (minute, layer, action, reason, route, class) \
     DO UPDATE SET count = rollups.count + excluded.count";

const UPSERT_PASS_KEYS: &str = "INSERT INTO pass_keys (minute, field, key, class, count) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
     ORDER BY 1, 2, 3, 4 \
     ON CONFLICT (minute, field, key, class) DO UPDATE SET count = pass_keys.count + excluded.count";

/// Bits of an id's sequence that count events; the bits above them hold
/// the writer's tag, so that nodes writing in the same millisecond do not
/// give the same id (ids are not unique-constrained: a clash would only
/// make a page boundary ambiguous, never fail a write).
const SEQ_BITS: u32 = 10;
/// Writer tags: 64 nodes write with distinct ids.
const TAGS: u64 = 64;

/// Ids for one writer: its tag, and a wrapping sequence.
pub(super) struct Ids {
    tag: u64,
    seq: u64,
}

impl Ids {
    /// `ticket` is this writer's number from the `event_writers` sequence.
    pub(super) fn new(ticket: i64) -> Self {
        Ids {
            tag: u64::try_from(ticket).unwrap_or(0) % TAGS,
            seq: 0,
        }
    }

    fn next(&mut self, ts_ms: i64) -> i64 {
        self.seq = self.seq.wrapping_add(1);
        let mask = (1 << SEQ_BITS) - 1;
        event_id(ts_ms, (self.tag << SEQ_BITS) | (self.seq & mask))
    }
}

/// Writes the (bounded) events and their rollups in one transaction.
pub(super) async fn write_batch(
    client: &mut Client,
    ids: &mut Ids,
    events: &[Cow<'_, StoredEvent>],
) -> Result<usize, StoreError> {
    let reasons: Vec<Cow<'_, str>> = events.iter().map(|e| e.reason()).collect();
    let tx = client.transaction().await.map_err(pg_error)?;
    let sink = tx.copy_in(COPY_EVENTS).await.map_err(pg_error)?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &TYPES));
    for (event, reason) in events.iter().zip(&reasons) {
        let row = Row::new(ids.next(event.ts_ms), event, reason);
        writer
            .as_mut()
            .write(&row.values())
            .await
            .map_err(pg_error)?;
    }
    writer.as_mut().finish().await.map_err(pg_error)?;
    upsert_rollups(&tx, events, &reasons).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(events.len())
}

/// Counted passes: their rollups and key counts, in one transaction.
pub(super) async fn write_tally(client: &mut Client, tally: &PassTally) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let mut rollups = RollupColumns::default();
    for ((minute, class), count) in &tally.passes {
        rollups.push(RollupKey::pass(*minute, class), *count);
    }
    upsert_rollup_columns(&tx, &rollups).await?;
    let mut minute = Vec::with_capacity(tally.keys.len());
    let mut field = Vec::with_capacity(tally.keys.len());
    let mut key = Vec::with_capacity(tally.keys.len());
    let mut class = Vec::with_capacity(tally.keys.len());
    let mut count = Vec::with_capacity(tally.keys.len());
    for ((m, f, k, c), n) in &tally.keys {
        minute.push(*m);
        field.push(f.column());
        key.push(k.as_str());
        class.push(c.as_str());
        count.push(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    tx.execute(UPSERT_PASS_KEYS, &[&minute, &field, &key, &class, &count])
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// One event's column values that are not plain fields.
struct Row<'a> {
    id: i64,
    event: &'a StoredEvent,
    status: i32,
    risk_rank: Option<i16>,
    device_risk_rank: Option<i16>,
    rule: Option<&'a str>,
    reasons: Option<String>,
}

impl<'a> Row<'a> {
    fn new(id: i64, event: &'a StoredEvent, reason: &'a str) -> Self {
        Row {
            id,
            status: i32::from(event.status),
            risk_rank: event.risk_rank.map(i16::from),
            device_risk_rank: event.device_risk_rank.map(i16::from),
            rule: (!reason.is_empty()).then_some(reason),
            reasons: reasons_text(&event.reasons),
            event,
        }
    }

    fn values(&self) -> [&(dyn ToSql + Sync); 22] {
        let e = self.event;
        [
            &self.id,
            &e.ts_ms,
            &e.request_id,
            &e.client_ip,
            &e.method,
            &e.host,
            &e.path,
            &e.action,
            &e.layer,
            &self.status,
            &e.class,
            &e.cid,
            &e.device_id,
            &e.account_id,
            &e.route,
            &self.risk_rank,
            &self.rule,
            &e.signals,
            &e.duration_us,
            &self.device_risk_rank,
            &self.reasons,
            &e.would,
        ]
    }
}

/// The batch's rollups, as columns for `unnest`.
#[derive(Default)]
struct RollupColumns<'a> {
    minute: Vec<i64>,
    layer: Vec<&'a str>,
    action: Vec<&'a str>,
    reason: Vec<String>,
    route: Vec<&'a str>,
    class: Vec<&'a str>,
    count: Vec<i64>,
}

impl<'a> RollupColumns<'a> {
    fn push(&mut self, key: RollupKey<'a>, count: u64) {
        self.minute.push(key.minute);
        self.layer.push(key.layer);
        self.action.push(key.action);
        self.reason.push(key.reason.into_owned());
        self.route.push(key.route);
        self.class.push(key.class);
        self.count.push(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

async fn upsert_rollups(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[Cow<'_, StoredEvent>],
    reasons: &[Cow<'_, str>],
) -> Result<(), StoreError> {
    let mut columns = RollupColumns::default();
    for (key, count) in aggregate(events, reasons) {
        columns.push(key, count);
    }
    upsert_rollup_columns(tx, &columns).await
}

async fn upsert_rollup_columns(
    tx: &tokio_postgres::Transaction<'_>,
    columns: &RollupColumns<'_>,
) -> Result<(), StoreError> {
    tx.execute(
        UPSERT_ROLLUPS,
        &[
            &columns.minute,
            &columns.layer,
            &columns.action,
            &columns.reason,
            &columns.route,
            &columns.class,
            &columns.count,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}
