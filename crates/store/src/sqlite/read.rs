//! Queries on the reader connections.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use crate::event::reasons_of;
use crate::keys::{KeyKind, bucket_of, key_hash};
use crate::query::{
    ChallengeMinute, EventFilter, FARED, OUTCOME_RANK, RollupQuery, Series, SolveRateQuery,
    TopEntry, TopField, TopOrder, TopQuery, TrialCount, TrialQuery, with_check_minutes,
};
use crate::{ActionKind, StoreError, StoredEvent, id_floor, id_ts_ms, minute_of};

const COLUMNS: &str = "e.id, e.ts_ms, e.request_id, e.client_ip, e.method, e.host, e.path, \
     e.action, e.layer, e.status, e.class, e.cid, e.device_id, e.account_id, e.route, \
     e.risk_rank, e.rule, e.signals, e.duration_us, e.device_risk_rank, e.reasons, e.would";

/// Conditions on `events AS e`, with their positional parameters.
#[derive(Default, Clone)]
struct Where {
    terms: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn term(&mut self, sql: &str) {
        self.terms.push(sql.to_owned());
    }

    fn param(&mut self, sql: &str, value: Value) {
        self.terms.push(sql.to_owned());
        self.params.push(value);
    }

    fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.param(&format!("e.{column} = ?"), Value::Text(v.clone()));
        }
    }

    fn not_class(&mut self, class: Option<&String>) {
        if let Some(c) = class {
            self.param("e.class <> ?", Value::Text(c.clone()));
        }
    }

    fn id_range(&mut self, span: IdSpan) {
        if let Some(lo) = span.lo {
            self.param("e.id >= ?", Value::Integer(lo));
        }
        if let Some(hi) = span.hi {
            self.param("e.id < ?", Value::Integer(hi));
        }
    }

    /// `WHERE a AND b`, or nothing.
    fn sql(&self) -> String {
        self.joined("WHERE ")
    }

    /// ` AND a AND b`, or nothing: to follow other conditions.
    fn and_sql(&self) -> String {
        self.joined(" AND ")
    }

    fn joined(&self, lead: &str) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!("{lead}{}", self.terms.join(" AND "))
        }
    }
}

/// An id range `[lo, hi)`: a time range and a cursor.
#[derive(Debug, Clone, Copy, Default)]
struct IdSpan {
    lo: Option<i64>,
    hi: Option<i64>,
}

impl IdSpan {
    fn new(from_ms: Option<i64>, to_ms: Option<i64>, before_id: Option<i64>) -> Self {
        IdSpan {
            lo: from_ms.map(id_floor),
            hi: [to_ms.map(id_floor), before_id].into_iter().flatten().min(),
        }
    }
}

/// Whether the filter only wants requests that did not pass.
fn wants_stopped(f: &EventFilter) -> bool {
    let kind = matches!(f.kind, Some(ActionKind::Challenge | ActionKind::Intercept));
    kind || f.action.as_deref().is_some_and(|a| a != "pass")
}

/// The key to look the events up by, most selective first.
fn key_of(f: &EventFilter) -> Option<(KeyKind, &str)> {
    [
        (KeyKind::Cid, f.cid.as_deref()),
        (KeyKind::Device, f.device.as_deref()),
        (KeyKind::Account, f.account.as_deref()),
        (KeyKind::ClientIp, f.client_ip.as_deref()),
    ]
    .into_iter()
    .find_map(|(kind, value)| value.map(|v| (kind, v)))
}

/// Without a key: the index serving a filter, or `None` to walk the table
/// by id (time), which is right for time-only and class filters.
fn pick_index(f: &EventFilter) -> Option<&'static str> {
    let candidates = [
        (f.trial, "events_would"),
        (f.rule.is_some(), "events_rule"),
        (f.route.is_some(), "events_route"),
        (wants_stopped(f), "events_stopped"),
    ];
    candidates
        .into_iter()
        .find(|(on, _)| *on)
        .map(|(_, name)| name)
}

fn filter_where(f: &EventFilter) -> Where {
    let mut w = Where::default();
    w.id_range(IdSpan::new(f.from_ms, f.to_ms, f.before_id));
    w.eq("cid", f.cid.as_ref());
    w.eq("device_id", f.device.as_ref());
    w.eq("account_id", f.account.as_ref());
    w.eq("client_ip", f.client_ip.as_ref());
    w.eq("rule", f.rule.as_ref());
    w.eq("route", f.route.as_ref());
    w.eq("action", f.action.as_ref());
    w.eq("class", f.class.as_ref());
    w.not_class(f.exclude_class.as_ref());
    if let Some(kind) = f.kind {
        w.term(&format!("e.{}", kind.sql()));
    }
    if f.trial {
        // Literally the partial index's condition, so SQLite may use it.
        w.term("e.would IS NOT NULL");
    }
    if wants_stopped(f) {
        // Literally the partial index's condition, so SQLite may use it.
        w.term("e.action <> 'pass'");
    }
    w
}

pub(super) fn search(conn: &Connection, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
    let w = filter_where(f);
    let limit = usize::try_from(f.limit()).unwrap_or(usize::MAX);
    match key_of(f) {
        Some((kind, value)) => {
            let span = IdSpan::new(f.from_ms, f.to_ms, f.before_id);
            keyed_search(conn, kind, value, span, &w, limit)
        }
        None => indexed_search(conn, f, &w),
    }
}

fn indexed_sql(f: &EventFilter, w: &Where) -> String {
    let indexed = pick_index(f).map_or(String::new(), |i| format!("INDEXED BY {i}"));
    format!(
        "SELECT {COLUMNS} FROM events AS e {indexed} {} ORDER BY e.id DESC LIMIT {}",
        w.sql(),
        f.limit()
    )
}

fn indexed_search(
    conn: &Connection,
    f: &EventFilter,
    w: &Where,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&indexed_sql(f, w))?;
    let rows = stmt.query_map(params_from_iter(&w.params), to_event)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Buckets probed by one statement (one B-tree seek each).
const PROBE: usize = 64;

/// [`PROBE`] buckets of the key index joined to the events: `PROBE` bucket
/// parameters, the key, then `w`'s parameters, then what `tail` needs.
fn keyed_sql(what: &str, w: &Where, tail: &str) -> String {
    let buckets = vec!["?"; PROBE].join(", ");
    format!(
        "SELECT {what} FROM event_keys AS k CROSS JOIN events AS e ON e.id = k.id \
         WHERE k.bucket IN ({buckets}) AND k.key = ?{} {tail}",
        w.and_sql()
    )
}

/// Probes the key's buckets newest first until `limit` events are found.
fn keyed_search(
    conn: &Connection,
    kind: KeyKind,
    value: &str,
    span: IdSpan,
    w: &Where,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = keyed_sql(COLUMNS, w, "ORDER BY k.id DESC LIMIT ?");
    let mut stmt = conn.prepare_cached(&sql)?;
    let key = Value::Integer(key_hash(kind, value));
    let mut found = Vec::new();
    let Some((lo, hi)) = bucket_span(conn, span)? else {
        return Ok(found);
    };
    for chunk in bucket_chunks(lo, hi) {
        let left = i64::try_from(limit - found.len()).unwrap_or(i64::MAX);
        let params = probe_params(chunk, &key, w, Some(left));
        let rows = stmt.query_map(params_from_iter(params), to_event)?;
        for row in rows {
            found.push(row?);
        }
        if found.len() >= limit {
            break;
        }
    }
    Ok(found)
}

/// `[lo, hi]` in chunks of [`PROBE`] buckets, newest first; a short last
/// chunk repeats its oldest bucket (a repeat in `IN` matches nothing twice).
fn bucket_chunks(lo: i64, hi: i64) -> impl Iterator<Item = [i64; PROBE]> {
    let step = i64::try_from(PROBE).unwrap_or(1);
    let starts = std::iter::successors(Some(hi), move |top| top.checked_sub(step));
    starts
        .take_while(move |top| *top >= lo)
        .map(move |top| std::array::from_fn(|i| (top - i64::try_from(i).unwrap_or(0)).max(lo)))
}

fn probe_params(buckets: [i64; PROBE], key: &Value, w: &Where, limit: Option<i64>) -> Vec<Value> {
    let mut params = Vec::with_capacity(PROBE + w.params.len() + 2);
    params.extend(buckets.map(Value::Integer));
    params.push(key.clone());
    params.extend(w.params.iter().cloned());
    params.extend(limit.map(Value::Integer));
    params
}

/// The buckets a span covers, bounded by the buckets that exist.
fn bucket_span(conn: &Connection, span: IdSpan) -> Result<Option<(i64, i64)>, StoreError> {
    // Two queries: SQLite answers a lone min() or max() from the key's
    // B-tree edge, but scans the table for both in one query.
    let edge = |sql: &str| -> Result<Option<i64>, StoreError> {
        Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
    };
    let first = edge("SELECT min(bucket) FROM event_keys")?;
    let last = edge("SELECT max(bucket) FROM event_keys")?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let lo = span
        .lo
        .map_or(first, |id| bucket_of(id_ts_ms(id)).max(first));
    let hi = span.hi.map_or(last, |id| {
        bucket_of(id_ts_ms(id.saturating_sub(1))).min(last)
    });
    Ok((lo <= hi).then_some((lo, hi)))
}

/// Counts a key's events in a span, bucket by bucket.
fn keyed_count(
    conn: &Connection,
    kind: KeyKind,
    value: &str,
    span: IdSpan,
    w: &Where,
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(&keyed_sql("COUNT(*)", w, ""))?;
    let key = Value::Integer(key_hash(kind, value));
    let Some((lo, hi)) = bucket_span(conn, span)? else {
        return Ok(0);
    };
    let mut total = 0;
    for chunk in bucket_chunks(lo, hi) {
        let params = probe_params(chunk, &key, w, None);
        let n: i64 = stmt.query_row(params_from_iter(params), |r| r.get(0))?;
        total += u64::try_from(n).unwrap_or(0);
    }
    Ok(total)
}

pub(super) fn explain_search(conn: &Connection, f: &EventFilter) -> Result<String, StoreError> {
    let w = filter_where(f);
    let (sql, params) = match key_of(f) {
        Some((kind, value)) => {
            let key = Value::Integer(key_hash(kind, value));
            let sql = keyed_sql(COLUMNS, &w, "ORDER BY k.id DESC LIMIT ?");
            (sql, probe_params([0; PROBE], &key, &w, Some(1)))
        }
        None => (indexed_sql(f, &w), w.params.clone()),
    };
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = stmt.query_map(params_from_iter(params), |r| r.get::<_, String>(3))?;
    let lines = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}

pub(super) fn get(conn: &Connection, request_id: &str) -> Result<Option<StoredEvent>, StoreError> {
    let mut w = Where::default();
    w.eq("request_id", Some(&request_id.to_owned()));
    let found = keyed_search(
        conn,
        KeyKind::RequestId,
        request_id,
        IdSpan::default(),
        &w,
        1,
    )?;
    Ok(found.into_iter().next())
}

fn to_event(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: Some(r.get(0)?),
        ts_ms: r.get(1)?,
        request_id: r.get(2)?,
        client_ip: r.get(3)?,
        method: r.get(4)?,
        host: r.get(5)?,
        path: r.get(6)?,
        action: r.get(7)?,
        layer: r.get(8)?,
        status: r.get(9)?,
        class: r.get(10)?,
        cid: r.get(11)?,
        device_id: r.get(12)?,
        account_id: r.get(13)?,
        route: r.get(14)?,
        risk_rank: r.get(15)?,
        rule: r.get(16)?,
        signals: r.get(17)?,
        duration_us: r.get(18)?,
        device_risk_rank: r.get(19)?,
        reasons: reasons_of(r.get(20)?),
        would: r.get(21)?,
    })
}

/// Counts the events log-only policies would have stopped, per route and
/// outcome, through the partial index on `would`.
pub(super) fn trial(conn: &Connection, q: &TrialQuery) -> Result<Vec<TrialCount>, StoreError> {
    let mut w = Where::default();
    w.id_range(IdSpan::new(Some(q.from_ms), Some(q.to_ms), None));
    w.term("e.would IS NOT NULL");
    let sql = format!(
        "SELECT coalesce(e.route, ''), e.would, COUNT(*) FROM events AS e INDEXED BY events_would \
         {} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        w.sql()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), |r| {
        Ok(TrialCount {
            route: r.get(0)?,
            would: r.get(1)?,
            events: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The routes' challenges, each device followed to the check (see
/// [`ChallengeMinute`] and [`FARED`]): the challenges come from the stopped
/// requests' index, the check's answers from the rule index, so the passed
/// requests of the range are never scanned.
pub(super) fn solve_rate(
    conn: &Connection,
    q: &SolveRateQuery,
) -> Result<Vec<ChallengeMinute>, StoreError> {
    let class = q
        .exclude_class
        .as_ref()
        .map_or("", |_| " AND e.class <> ?4");
    let fared = FARED.replace("{WINDOW}", &q.window_ms.max(0).to_string());
    let sql = format!(
        "WITH moves AS (\
           SELECT e.device_id AS device, e.ts_ms AS ts, e.route AS route, 0 AS outcome \
           FROM events AS e INDEXED BY events_stopped \
           WHERE e.id >= ?1 AND e.id < ?2 AND e.action <> 'pass' AND e.action = 'challenge' \
           AND e.route IS NOT NULL AND e.device_id IS NOT NULL{class} \
           UNION ALL \
           SELECT e.device_id, e.ts_ms, NULL, {OUTCOME_RANK} \
           FROM events AS e INDEXED BY events_rule \
           WHERE e.rule IN ('portal_solved', 'portal_limited', 'portal_failed') \
           AND e.id >= ?1 AND e.id < ?3 AND e.device_id IS NOT NULL{class}), \
         {fared}"
    );
    let mut params = vec![
        Value::Integer(id_floor(q.from_ms)),
        Value::Integer(id_floor(q.to_ms)),
        Value::Integer(id_floor(q.to_ms.saturating_add(q.window_ms))),
    ];
    if let Some(c) = &q.exclude_class {
        params.push(Value::Text(c.clone()));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        let n = |i| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
        Ok(ChallengeMinute {
            route: r.get(0)?,
            minute: r.get(1)?,
            challenged: n(2)?,
            solved: n(3)?,
            failed: n(4)?,
            limited: n(5)?,
        })
    })?;
    let routes = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(with_check_minutes(routes, check_minutes(conn, q)?))
}

/// The check's answers per minute and reason, from the rollups.
fn check_minutes(
    conn: &Connection,
    q: &SolveRateQuery,
) -> Result<Vec<(i64, String, u64)>, StoreError> {
    let mut w = Where::default();
    w.param("minute >= ?", Value::Integer(minute_of(q.from_ms)));
    w.param("minute < ?", Value::Integer(minute_of(q.to_ms - 1) + 1));
    w.term("reason IN ('portal_issued', 'portal_solved', 'portal_failed', 'portal_limited')");
    if let Some(class) = &q.exclude_class {
        w.param("class <> ?", Value::Text(class.clone()));
    }
    let sql = format!(
        "SELECT minute, reason, SUM(count) FROM rollups {} GROUP BY 1, 2",
        w.sql()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn rollups(conn: &Connection, q: &RollupQuery) -> Result<Vec<Series>, StoreError> {
    let col = q.group_by.column();
    let mut w = Where::default();
    w.param("minute >= ?", Value::Integer(q.from_minute));
    w.param("minute < ?", Value::Integer(q.to_minute));
    if let Some(kind) = q.kind {
        w.term(kind.sql());
    }
    if let Some(route) = &q.route {
        w.param("route = ?", Value::Text(route.clone()));
    }
    if let Some(class) = &q.exclude_class {
        w.param("class <> ?", Value::Text(class.clone()));
    }
    let sql = format!(
        "SELECT {col}, minute, SUM(count) FROM rollups {} \
         GROUP BY {col}, minute ORDER BY {col}, minute",
        w.sql()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut series: Vec<Series> = Vec::new();
    for row in rows {
        let (key, minute, count) = row?;
        push_point(&mut series, key, minute, count);
    }
    Ok(series)
}

fn push_point(series: &mut Vec<Series>, key: String, minute: i64, count: i64) {
    let point = (minute, u64::try_from(count).unwrap_or(0));
    match series.last_mut() {
        Some(last) if last.key == key => last.points.push(point),
        _ => series.push(Series {
            key,
            points: vec![point],
        }),
    }
}

pub(super) fn top(conn: &Connection, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
    match q.order {
        TopOrder::Requests => top_by_requests(conn, q),
        TopOrder::Intercepts => top_by_intercepts(conn, q),
    }
}

fn top_where(q: &TopQuery) -> Where {
    let mut w = Where::default();
    w.id_range(IdSpan::new(Some(q.from_ms), Some(q.to_ms), None));
    w.term(&format!("e.{} IS NOT NULL", q.field.column()));
    w.not_class(q.exclude_class.as_ref());
    w
}

/// Scans the time range once (cost grows with the events in the range),
/// with the counted passes of its minutes.
fn top_by_requests(conn: &Connection, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
    let col = q.field.column();
    let w = top_where(q);
    let passes = pass_keys_where(q);
    let sql = format!(
        "SELECT key, SUM(n), SUM(i) FROM ( \
         SELECT e.{col} AS key, COUNT(*) AS n, SUM(e.{}) AS i FROM events AS e {} GROUP BY e.{col} \
         UNION ALL SELECT key, SUM(count), 0 FROM pass_keys {} GROUP BY key \
         ) GROUP BY key ORDER BY 2 DESC, 1 LIMIT {}",
        ActionKind::Intercept.sql(),
        w.sql(),
        passes.sql(),
        q.limit.min(crate::MAX_LIMIT)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let params = w.params.into_iter().chain(passes.params);
    let rows = stmt.query_map(params_from_iter(params), to_top_entry)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The counted passes of a top query's field in the minutes its range
/// touches (a minute is the tally's grain).
fn pass_keys_where(q: &TopQuery) -> Where {
    let (from, to) = q.minutes();
    let mut w = Where::default();
    w.param("minute >= ?", Value::Integer(from));
    w.param("minute < ?", Value::Integer(to));
    w.param("field = ?", Value::Text(q.field.column().to_owned()));
    if let Some(class) = &q.exclude_class {
        w.param("class <> ?", Value::Text(class.clone()));
    }
    w
}

/// Counted passes of one key.
fn counted_passes(conn: &Connection, q: &TopQuery, value: &str) -> Result<u64, StoreError> {
    let mut w = pass_keys_where(q);
    w.param("key = ?", Value::Text(value.to_owned()));
    let sql = format!("SELECT coalesce(SUM(count), 0) FROM pass_keys {}", w.sql());
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(&w.params), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Ranks over the stopped requests only (through their partial index),
/// then counts each winner's requests through the key index.
fn top_by_intercepts(conn: &Connection, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
    let col = q.field.column();
    let mut w = top_where(q);
    w.term("e.action <> 'pass'");
    w.term(&format!("e.{}", ActionKind::Intercept.sql()));
    let sql = format!(
        "SELECT e.{col}, COUNT(*) FROM events AS e INDEXED BY events_stopped {} \
         GROUP BY e.{col} ORDER BY 2 DESC, 1 LIMIT {}",
        w.sql(),
        q.limit.min(crate::MAX_LIMIT)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let ranked = rows.collect::<Result<Vec<_>, _>>()?;
    ranked
        .into_iter()
        .map(|(key, intercepts)| {
            Ok(TopEntry {
                requests: count_requests(conn, q, &key)?,
                intercepts: u64::try_from(intercepts).unwrap_or(0),
                key,
            })
        })
        .collect()
}

fn count_requests(conn: &Connection, q: &TopQuery, value: &str) -> Result<u64, StoreError> {
    let mut w = top_where(q);
    w.param(
        &format!("e.{} = ?", q.field.column()),
        Value::Text(value.to_owned()),
    );
    let span = IdSpan::new(Some(q.from_ms), Some(q.to_ms), None);
    let kind = match q.field {
        TopField::ClientIp => KeyKind::ClientIp,
        TopField::Device => KeyKind::Device,
        TopField::Account => KeyKind::Account,
        TopField::Route => return count_route(conn, &w),
    };
    Ok(keyed_count(conn, kind, value, span, &w)? + counted_passes(conn, q, value)?)
}

fn count_route(conn: &Connection, w: &Where) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT COUNT(*) FROM events AS e INDEXED BY events_route {}",
        w.sql()
    );
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(&w.params), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn to_top_entry(r: &Row<'_>) -> rusqlite::Result<TopEntry> {
    let requests: i64 = r.get(1)?;
    let intercepts: i64 = r.get(2)?;
    Ok(TopEntry {
        key: r.get(0)?,
        requests: u64::try_from(requests).unwrap_or(0),
        intercepts: u64::try_from(intercepts).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_span_newest_first() {
        let chunks: Vec<[i64; PROBE]> = bucket_chunks(10, 140).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0][0], chunks[0][PROBE - 1]), (140, 77));
        assert_eq!((chunks[1][0], chunks[1][PROBE - 1]), (76, 13));
        assert_eq!((chunks[2][0], chunks[2][2], chunks[2][3]), (12, 10, 10));
        assert_eq!(bucket_chunks(5, 5).count(), 1);
    }
}
