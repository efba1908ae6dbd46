//! Versioned migrations (`PRAGMA user_version` counts the applied ones).

use rusqlite::Connection;

use crate::StoreError;

/// Version 1: events, the key index, minute rollups.
///
/// `events.id` is the time-ordered event id (see [`crate::event_id`]), so
/// time filters, newest-first order and retention use the table's own key
/// and no timestamp index is needed. Request id, client IP, cid, device and
/// account are found through `event_keys` (see [`crate::keys`]); the other
/// indexes are partial and grow at their right edge only (few distinct
/// values, or passed requests left out), so they stay cheap to write.
const V1: &str = "
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    request_id  TEXT    NOT NULL,
    client_ip   TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    layer       TEXT,
    status      INTEGER NOT NULL,
    class       TEXT    NOT NULL,
    cid         TEXT,
    device_id   TEXT,
    account_id  TEXT,
    route       TEXT,
    risk_rank   INTEGER,
    rule        TEXT,
    signals     TEXT    NOT NULL,
    duration_us INTEGER NOT NULL
);
CREATE INDEX events_route   ON events(route) WHERE route IS NOT NULL;
CREATE INDEX events_rule    ON events(rule)  WHERE rule IS NOT NULL;
CREATE INDEX events_stopped ON events(id)    WHERE action <> 'pass';

CREATE TABLE event_keys (
    bucket INTEGER NOT NULL,
    key    INTEGER NOT NULL,
    id     INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, id)
) WITHOUT ROWID;

CREATE TABLE rollups (
    minute INTEGER NOT NULL,
    layer  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    route  TEXT    NOT NULL,
    class  TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (minute, layer, action, reason, route, class)
) WITHOUT ROWID;
";

/// Version 2: the risk engine's device rank and reasons, and what a
/// log-only policy would have done (`would`), with a partial index so that
/// a policy's trial is counted without scanning the passed requests.
const V2: &str = "
ALTER TABLE events ADD COLUMN device_risk_rank INTEGER;
ALTER TABLE events ADD COLUMN reasons TEXT;
ALTER TABLE events ADD COLUMN would TEXT;
CREATE INDEX events_would ON events(id) WHERE would IS NOT NULL;
";

/// Version 3: the passes counted rather than stored one by one (see
/// [`crate::PassTally`]), per minute, top-list field (`client_ip`,
/// `device_id`, `account_id`), key and class; the minute comes first so
/// that a window and retention are range scans.
const V3: &str = "
CREATE TABLE pass_keys (
    minute INTEGER NOT NULL,
    field  TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    class  TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (minute, field, key, class)
) WITHOUT ROWID;
";

const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes.
pub(crate) fn latest() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Applies the migrations the database lacks, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip_while(|(v, _)| *v <= found) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(latest())
}
