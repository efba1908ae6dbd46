//! Queries. Time ranges filter both `ts_ms` (so the planner prunes
//! partitions) and `id` (so the `id` indexes give newest first); text is
//! ordered `COLLATE "C"`, byte order, as in SQLite.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::pg_error;
use crate::event::reasons_of;
use crate::query::{
    ChallengeMinute, EventFilter, FARED, OUTCOME_RANK, RollupQuery, Series, SolveRateQuery,
    TopEntry, TopOrder, TopQuery, TrialCount, TrialQuery, with_check_minutes,
};
use crate::{ActionKind, StoreError, StoredEvent, id_floor, id_ts_ms, minute_of};

const COLUMNS: &str = "e.id, e.ts_ms, e.request_id, e.client_ip, e.method, e.host, e.path, \
     e.action, e.layer, e.status, e.class, e.cid, e.device_id, e.account_id, e.route, \
     e.risk_rank, e.rule, e.signals, e.duration_us, e.device_risk_rank, e.reasons, e.would";

type Param = Box<dyn ToSql + Sync + Send>;

/// Conditions with their numbered parameters.
#[derive(Default)]
struct Where {
    terms: Vec<String>,
    params: Vec<Param>,
}

impl Where {
    fn term(&mut self, sql: impl Into<String>) {
        self.terms.push(sql.into());
    }

    /// `lhs $n`, with `value` as parameter n.
    fn param(&mut self, lhs: &str, value: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(value));
        self.terms.push(format!("{lhs} ${}", self.params.len()));
    }

    fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.param(&format!("e.{column} ="), v.clone());
        }
    }

    fn not_class(&mut self, class: Option<&String>) {
        if let Some(c) = class {
            self.param("e.class <>", c.clone());
        }
    }

    /// Events in `[from_ms, to_ms)` and before the cursor.
    fn span(&mut self, from_ms: Option<i64>, to_ms: Option<i64>, before_id: Option<i64>) {
        if let Some(from) = from_ms {
            self.param("e.ts_ms >=", from);
            self.param("e.id >=", id_floor(from));
        }
        if let Some(to) = to_ms {
            self.param("e.ts_ms <", to);
            self.param("e.id <", id_floor(to));
        }
        if let Some(before) = before_id {
            self.param("e.ts_ms <=", id_ts_ms(before));
            self.param("e.id <", before);
        }
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.terms.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn filter_where(f: &EventFilter) -> Where {
    let mut w = Where::default();
    w.span(f.from_ms, f.to_ms, f.before_id);
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
        w.term(format!("e.{}", kind.sql()));
    }
    if f.trial {
        w.term("e.would IS NOT NULL");
    }
    w
}

pub(super) async fn search(
    client: &Client,
    f: &EventFilter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let w = filter_where(f);
    let sql = format!(
        "SELECT {COLUMNS} FROM events AS e {} ORDER BY e.id DESC LIMIT {}",
        w.sql(),
        f.limit()
    );
    let rows = client.query(&sql, &w.params()).await.map_err(pg_error)?;
    rows.iter().map(to_event).collect()
}

pub(super) async fn get(
    client: &Client,
    request_id: &str,
) -> Result<Option<StoredEvent>, StoreError> {
    // No ORDER BY id: with it the planner may walk the id index newest
    // first, filtering, instead of probing the request id's index. A
    // request id names one request; the newest of a few copies is kept.
    let sql = format!("SELECT {COLUMNS} FROM events AS e WHERE e.request_id = $1 LIMIT 64");
    let rows = client.query(&sql, &[&request_id]).await.map_err(pg_error)?;
    let events = rows.iter().map(to_event).collect::<Result<Vec<_>, _>>()?;
    Ok(events.into_iter().max_by_key(|e| e.id))
}

fn to_event(r: &tokio_postgres::Row) -> Result<StoredEvent, StoreError> {
    let small = |n: Option<i16>| n.and_then(|n| u8::try_from(n).ok());
    let status: i32 = r.try_get(9).map_err(corrupt)?;
    Ok(StoredEvent {
        id: Some(r.try_get(0).map_err(corrupt)?),
        ts_ms: r.try_get(1).map_err(corrupt)?,
        request_id: r.try_get(2).map_err(corrupt)?,
        client_ip: r.try_get(3).map_err(corrupt)?,
        method: r.try_get(4).map_err(corrupt)?,
        host: r.try_get(5).map_err(corrupt)?,
        path: r.try_get(6).map_err(corrupt)?,
        action: r.try_get(7).map_err(corrupt)?,
        layer: r.try_get(8).map_err(corrupt)?,
        status: u16::try_from(status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        class: r.try_get(10).map_err(corrupt)?,
        cid: r.try_get(11).map_err(corrupt)?,
        device_id: r.try_get(12).map_err(corrupt)?,
        account_id: r.try_get(13).map_err(corrupt)?,
        route: r.try_get(14).map_err(corrupt)?,
        risk_rank: small(r.try_get(15).map_err(corrupt)?),
        rule: r.try_get(16).map_err(corrupt)?,
        signals: r.try_get(17).map_err(corrupt)?,
        duration_us: r.try_get(18).map_err(corrupt)?,
        device_risk_rank: small(r.try_get(19).map_err(corrupt)?),
        reasons: reasons_of(r.try_get(20).map_err(corrupt)?),
        would: r.try_get(21).map_err(corrupt)?,
    })
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) async fn rollups(client: &Client, q: &RollupQuery) -> Result<Vec<Series>, StoreError> {
    let col = q.group_by.column();
    let mut w = Where::default();
    w.param("minute >=", q.from_minute);
    w.param("minute <", q.to_minute);
    if let Some(kind) = q.kind {
        w.term(kind.sql());
    }
    if let Some(route) = &q.route {
        w.param("route =", route.clone());
    }
    if let Some(class) = &q.exclude_class {
        w.param("class <>", class.clone());
    }
    let sql = format!(
        "SELECT {col}, minute, SUM(count)::bigint FROM rollups {} \
         GROUP BY {col}, minute ORDER BY {col} COLLATE \"C\", minute",
        w.sql()
    );
    let rows = client.query(&sql, &w.params()).await.map_err(pg_error)?;
    let mut series: Vec<Series> = Vec::new();
    for r in &rows {
        let key: String = r.try_get(0).map_err(corrupt)?;
        let point = (
            r.try_get(1).map_err(corrupt)?,
            count(r.try_get(2).map_err(corrupt)?),
        );
        match series.last_mut() {
            Some(last) if last.key == key => last.points.push(point),
            _ => series.push(Series {
                key,
                points: vec![point],
            }),
        }
    }
    Ok(series)
}

fn top_where(q: &TopQuery) -> Where {
    let mut w = Where::default();
    w.span(Some(q.from_ms), Some(q.to_ms), None);
    w.term(format!("e.{} IS NOT NULL", q.field.column()));
    w.not_class(q.exclude_class.as_ref());
    w
}

/// Adds the conditions on the counted passes of a top query's field in the
/// minutes its range touches to `w` (so their parameters follow its own),
/// and returns them as a clause of their own.
fn pass_keys_where(w: &mut Where, q: &TopQuery) -> String {
    let first = w.terms.len();
    let (from, to) = q.minutes();
    w.param("p.minute >=", from);
    w.param("p.minute <", to);
    w.param("p.field =", q.field.column().to_owned());
    if let Some(class) = &q.exclude_class {
        w.param("p.class <>", class.clone());
    }
    let terms = w.terms.split_off(first);
    format!("WHERE {}", terms.join(" AND "))
}

pub(super) async fn top(client: &Client, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
    let col = q.field.column();
    let limit = q.limit.min(crate::MAX_LIMIT);
    let intercept = ActionKind::Intercept.sql();
    let mut w = top_where(q);
    let passes = pass_keys_where(&mut w, q);
    let sql = match q.order {
        // One scan of the range, counting both, with the counted passes.
        TopOrder::Requests => format!(
            "SELECT key, sum(n)::bigint, sum(i)::bigint FROM ( \
             SELECT e.{col} AS key, count(*) AS n, count(*) FILTER (WHERE e.{intercept}) AS i \
             FROM events AS e {} GROUP BY 1 \
             UNION ALL SELECT p.key, sum(p.count)::bigint, 0::bigint FROM pass_keys AS p {passes} \
             GROUP BY 1) AS t GROUP BY key ORDER BY 2 DESC, key COLLATE \"C\" LIMIT {limit}",
            w.sql()
        ),
        // Ranks over the stopped requests (their partial index), then counts
        // each winner's requests through the key's index.
        TopOrder::Intercepts => format!(
            "WITH ranked AS (SELECT e.{col} AS key, count(*) AS intercepts FROM events AS e \
             {} AND e.action <> 'pass' AND e.{intercept} \
             GROUP BY 1 ORDER BY 2 DESC, e.{col} COLLATE \"C\" LIMIT {limit}) \
             SELECT r.key, (SELECT count(*) FROM events AS e {} AND e.{col} = r.key) \
             + (SELECT coalesce(sum(p.count), 0)::bigint FROM pass_keys AS p {passes} \
             AND p.key = r.key), \
             r.intercepts FROM ranked AS r ORDER BY 3 DESC, r.key COLLATE \"C\"",
            w.sql(),
            w.sql()
        ),
    };
    let rows = client.query(&sql, &w.params()).await.map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            Ok(TopEntry {
                key: r.try_get(0).map_err(corrupt)?,
                requests: count(r.try_get(1).map_err(corrupt)?),
                intercepts: count(r.try_get(2).map_err(corrupt)?),
            })
        })
        .collect()
}

pub(super) async fn trial(client: &Client, q: &TrialQuery) -> Result<Vec<TrialCount>, StoreError> {
    let mut w = Where::default();
    w.span(Some(q.from_ms), Some(q.to_ms), None);
    w.term("e.would IS NOT NULL");
    let sql = format!(
        "SELECT coalesce(e.route, ''), e.would, count(*) FROM events AS e {} \
         GROUP BY 1, 2 ORDER BY 3 DESC, coalesce(e.route, '') COLLATE \"C\", e.would COLLATE \"C\"",
        w.sql()
    );
    let rows = client.query(&sql, &w.params()).await.map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            Ok(TrialCount {
                route: r.try_get(0).map_err(corrupt)?,
                would: r.try_get(1).map_err(corrupt)?,
                events: count(r.try_get(2).map_err(corrupt)?),
            })
        })
        .collect()
}

/// The routes' challenges, each device followed to the check (see
/// [`ChallengeMinute`] and [`FARED`]), through the stopped requests' and
/// the rule indexes; the same SQL as SQLite's, with the `ts_ms` bounds that
/// prune partitions.
pub(super) async fn solve_rate(
    client: &Client,
    q: &SolveRateQuery,
) -> Result<Vec<ChallengeMinute>, StoreError> {
    let end = q.to_ms.saturating_add(q.window_ms);
    let class = q
        .exclude_class
        .as_ref()
        .map_or("", |_| " AND e.class <> $7");
    let fared = FARED.replace("{WINDOW}", &format!("{}::bigint", q.window_ms.max(0)));
    let sql = format!(
        "WITH moves AS (\
           SELECT e.device_id AS device, e.ts_ms AS ts, e.route AS route, 0 AS outcome \
           FROM events AS e \
           WHERE e.ts_ms >= $1 AND e.ts_ms < $2 AND e.id >= $3 AND e.id < $4 \
           AND e.action <> 'pass' AND e.action = 'challenge' \
           AND e.route IS NOT NULL AND e.device_id IS NOT NULL{class} \
           UNION ALL \
           SELECT e.device_id, e.ts_ms, NULL, {OUTCOME_RANK} FROM events AS e \
           WHERE e.rule IN ('portal_solved', 'portal_limited', 'portal_failed') \
           AND e.ts_ms >= $1 AND e.ts_ms < $5 AND e.id >= $3 AND e.id < $6 \
           AND e.device_id IS NOT NULL{class}), \
         {fared}"
    );
    let bounds = [
        q.from_ms,
        q.to_ms,
        id_floor(q.from_ms),
        id_floor(q.to_ms),
        end,
        id_floor(end),
    ];
    let mut params: Vec<&(dyn ToSql + Sync)> =
        bounds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    if let Some(class) = &q.exclude_class {
        params.push(class);
    }
    let rows = client.query(&sql, &params).await.map_err(pg_error)?;
    let routes = rows
        .iter()
        .map(|r| {
            let n = |i| r.try_get::<_, i64>(i).map(count).map_err(corrupt);
            Ok(ChallengeMinute {
                route: r.try_get(0).map_err(corrupt)?,
                minute: r.try_get(1).map_err(corrupt)?,
                challenged: n(2)?,
                solved: n(3)?,
                failed: n(4)?,
                limited: n(5)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(with_check_minutes(routes, check_minutes(client, q).await?))
}

/// The check's answers per minute and reason, from the rollups.
async fn check_minutes(
    client: &Client,
    q: &SolveRateQuery,
) -> Result<Vec<(i64, String, u64)>, StoreError> {
    let mut w = Where::default();
    w.param("minute >=", minute_of(q.from_ms));
    w.param("minute <", minute_of(q.to_ms - 1) + 1);
    w.term("reason IN ('portal_issued', 'portal_solved', 'portal_failed', 'portal_limited')");
    if let Some(class) = &q.exclude_class {
        w.param("class <>", class.clone());
    }
    let sql = format!(
        "SELECT minute, reason, SUM(count)::bigint FROM rollups {} GROUP BY 1, 2",
        w.sql()
    );
    let rows = client.query(&sql, &w.params()).await.map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(corrupt)?,
                r.try_get(1).map_err(corrupt)?,
                count(r.try_get(2).map_err(corrupt)?),
            ))
        })
        .collect()
}
