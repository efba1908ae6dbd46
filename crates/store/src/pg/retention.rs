//! Daily partitions: created as days come, dropped whole by retention and
//! by the disk budget (oldest first, never the current day).

use tokio_postgres::Client;

use super::days::{DAY_MS, day_of, day_of_partition, partition_name};
use super::pg_error;
use super::schema::DDL_LOCK;
use crate::StoreError;
use crate::query::{Pruned, Retention};

const PARTITIONS: &str = "SELECT c.relname::text, pg_total_relation_size(c.oid) \
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
     WHERE i.inhparent = 'events'::regclass";

/// Counted passes stand in for events: they expire with them.
const DELETE_PASS_KEYS: &str = "DELETE FROM pass_keys WHERE ctid IN \
     (SELECT ctid FROM pass_keys WHERE minute < $1 LIMIT $2)";

const DELETE_ROLLUPS: &str = "DELETE FROM rollups WHERE ctid IN \
     (SELECT ctid FROM rollups WHERE minute < $1 LIMIT $2)";

/// Creates the partition of `day` unless it exists. DDL waits at most 5 s
/// for the locks it needs, so a busy table fails the batch (counted)
/// rather than stalling the writer.
pub(super) async fn ensure_partition(client: &mut Client, day: i64) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
        .await
        .map_err(pg_error)?;
    let sql = format!(
        "SET LOCAL lock_timeout = '5s'; \
         CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
        partition_name(day),
        day * DAY_MS,
        (day + 1) * DAY_MS
    );
    tx.batch_execute(&sql).await.map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// One partition: its day and its size on disk (indexes included).
#[derive(Debug, Clone, Copy)]
struct Partition {
    day: i64,
    bytes: u64,
}

async fn partitions(client: &Client) -> Result<Vec<Partition>, StoreError> {
    let rows = client.query(PARTITIONS, &[]).await.map_err(pg_error)?;
    let mut found: Vec<Partition> = rows
        .iter()
        .filter_map(|r| {
            let day = day_of_partition(r.get::<_, &str>(0))?;
            let bytes = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
            Some(Partition { day, bytes })
        })
        .collect();
    found.sort_by_key(|p| p.day);
    Ok(found)
}

/// Counts a partition's rows, then drops it.
async fn drop_partition(client: &mut Client, day: i64) -> Result<u64, StoreError> {
    let name = partition_name(day);
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.batch_execute("SET LOCAL lock_timeout = '5s'")
        .await
        .map_err(pg_error)?;
    let rows: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .map_err(pg_error)?
        .get(0);
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// One retention step: at most one partition dropped for its age, one
/// chunk of old rollups, and at most one partition dropped for the budget.
pub(super) async fn step(
    client: &mut Client,
    policy: &Retention,
    now_ms: i64,
) -> Result<Pruned, StoreError> {
    let today = day_of(now_ms);
    // Tomorrow's partition, ahead of midnight.
    ensure_partition(client, today + 1).await?;
    let mut parts = partitions(client).await?;
    let mut pruned = Pruned::default();

    let cutoff_ms = policy.events_cutoff_ms(now_ms);
    let expired = parts
        .iter()
        .filter(|p| (p.day + 1) * DAY_MS <= cutoff_ms)
        .count();
    if expired > 0 {
        pruned.events = drop_partition(client, parts[0].day).await?;
        parts.remove(0);
        pruned.more = expired > 1;
    }

    let chunk = i64::from(policy.chunk.max(1));
    let cutoff_minute = policy.rollups_cutoff_minute(now_ms);
    let rollups = client
        .execute(DELETE_ROLLUPS, &[&cutoff_minute, &chunk])
        .await
        .map_err(pg_error)?;
    pruned.rollups = rollups;
    pruned.more |= i64::try_from(rollups).is_ok_and(|n| n >= chunk);
    let pass_keys = client
        .execute(
            DELETE_PASS_KEYS,
            &[&crate::minute_of(policy.events_cutoff_ms(now_ms)), &chunk],
        )
        .await
        .map_err(pg_error)?;
    pruned.more |= i64::try_from(pass_keys).is_ok_and(|n| n >= chunk);

    if let Some(max) = policy.max_bytes {
        budget_step(client, &mut parts, today, max, &mut pruned).await?;
    }
    Ok(pruned)
}

/// Over the budget, drops the oldest partition of a past day.
async fn budget_step(
    client: &mut Client,
    parts: &mut Vec<Partition>,
    today: i64,
    max: u64,
    pruned: &mut Pruned,
) -> Result<(), StoreError> {
    let rollups: i64 = client
        .query_one("SELECT pg_total_relation_size('rollups')", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let used = |parts: &[Partition]| {
        parts.iter().map(|p| p.bytes).sum::<u64>() + u64::try_from(rollups).unwrap_or(0)
    };
    let mut total = used(parts);
    let past = parts.iter().filter(|p| p.day < today).count();
    if total > max && past > 0 {
        pruned.over_budget = drop_partition(client, parts[0].day).await?;
        parts.remove(0);
        total = used(parts);
        pruned.more |= total > max && past > 1;
    } else if total > max {
        tracing::warn!(
            used = total,
            max,
            "the event store is over its budget with today's events alone"
        );
    }
    pruned.used_bytes = Some(total);
    Ok(())
}
