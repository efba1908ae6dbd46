//! Versioned migrations, applied under an advisory lock so that nodes
//! starting together do not race.

use tokio_postgres::Client;

use super::pg_error;
use crate::StoreError;

/// Version 1: events partitioned by day on `ts_ms` (the partitions are
/// created as days come, see `retention::ensure_partitions`), minute
/// rollups, and the sequence that gives each writer a distinct id tag.
///
/// Indexes are declared on the parent, so every partition gets them: `id`
/// (newest first, the cursor), the lookup keys (with `id`, so a key's
/// events come newest first without a sort), and partial indexes that stay
/// small (stopped requests, trials, named routes and rules).
const V1: &str = "
CREATE TABLE events (
    id               bigint   NOT NULL,
    ts_ms            bigint   NOT NULL,
    request_id       text     NOT NULL,
    client_ip        text     NOT NULL,
    method           text     NOT NULL,
    host             text     NOT NULL,
    path             text     NOT NULL,
    action           text     NOT NULL,
    layer            text,
    status           integer  NOT NULL,
    class            text     NOT NULL,
    cid              text,
    device_id        text,
    account_id       text,
    route            text,
    risk_rank        smallint,
    rule             text,
    signals          text     NOT NULL,
    duration_us      bigint   NOT NULL,
    device_risk_rank smallint,
    reasons          text,
    would            text
) PARTITION BY RANGE (ts_ms);
CREATE INDEX events_id      ON events (id);
CREATE INDEX events_request ON events (request_id);
CREATE INDEX events_ip      ON events (client_ip, id);
CREATE INDEX events_cid     ON events (cid, id)        WHERE cid IS NOT NULL;
CREATE INDEX events_device  ON events (device_id, id)  WHERE device_id IS NOT NULL;
CREATE INDEX events_account ON events (account_id, id) WHERE account_id IS NOT NULL;
CREATE INDEX events_route   ON events (route, id)      WHERE route IS NOT NULL;
CREATE INDEX events_rule    ON events (rule, id)       WHERE rule IS NOT NULL;
CREATE INDEX events_stopped ON events (id)             WHERE action <> 'pass';
CREATE INDEX events_would   ON events (id)             WHERE would IS NOT NULL;

CREATE TABLE rollups (
    minute bigint NOT NULL,
    layer  text   NOT NULL,
    action text   NOT NULL,
    reason text   NOT NULL,
    route  text   NOT NULL,
    class  text   NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (minute, layer, action, reason, route, class)
);

CREATE SEQUENCE event_writers;
";

/// Version 2: the passes counted rather than stored one by one (see
/// [`crate::PassTally`]), per minute, top-list field, key and class.
const V2: &str = "
CREATE TABLE pass_keys (
    minute bigint NOT NULL,
    field  text   NOT NULL,
    key    text   NOT NULL,
    class  text   NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (minute, field, key, class)
);
";

const MIGRATIONS: &[&str] = &[V1, V2];

/// Key of the advisory lock held while migrating or creating partitions.
pub(super) const DDL_LOCK: i64 = 0x706f_7274_6375_6c01;

/// Applies the migrations the database lacks.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS store_schema (version integer NOT NULL);
         INSERT INTO store_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM store_schema);",
    )
    .await
    .map_err(pg_error)?;
    let found: i32 = tx
        .query_one("SELECT version FROM store_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let latest = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if found > latest {
        return Err(StoreError::SchemaTooNew {
            found: i64::from(found),
            supported: i64::from(latest),
        });
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
    }
    tx.execute("UPDATE store_schema SET version = $1", &[&latest])
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}
