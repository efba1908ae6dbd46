//! The SQLite backend of the console database (WAL): one connection
//! behind a mutex is plenty for the admin traffic of a console.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditEntry, Backend, DbError, MAX_SESSIONS_PER_USER, NewAudit, NewOverlay, OverlayMeta,
    OverlayVersion, OverlayWatch, Session, TOKEN_TOUCH_MS, TokenInfo, clip, now_ms,
};

const SCHEMA: &str = "
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE TABLE sessions (
    id_hash    BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id, created_ms);
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    token_hash   BLOB    NOT NULL UNIQUE,
    created_by   TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms   INTEGER
);
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    ip      TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    summary TEXT    NOT NULL,
    before  TEXT,
    after   TEXT
);
CREATE TABLE overlays (
    version     INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    comment     TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    rollback_of INTEGER,
    document    TEXT    NOT NULL
);
";

/// The SQLite backend: one connection behind a mutex.
pub(super) struct SqliteDb {
    conn: Mutex<Connection>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path`.
    pub(super) fn open(path: impl AsRef<Path>) -> Result<SqliteDb, DbError> {
        let mut conn = Connection::open(path)?;
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteDb {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn overlay_where(
        &self,
        clause: &str,
        version: Option<i64>,
    ) -> Result<Option<OverlayVersion>, DbError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT version, ts_ms, actor, comment, summary, rollback_of, document \
             FROM overlays {clause}"
        );
        let mut stmt = conn.prepare(&sql)?;
        let params: Vec<i64> = version.into_iter().collect();
        let row = stmt
            .query_row(rusqlite::params_from_iter(params), |r| {
                Ok((overlay_meta(r)?, r.get::<_, String>(6)?))
            })
            .optional()?;
        row.map(|(meta, text)| meta.with_document(&text))
            .transpose()
    }
}

impl Backend for SqliteDb {
    fn set_password(&self, user: &str, password_hash: &str) -> Result<(), DbError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO users (name, password_hash, updated_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, \
             updated_ms = excluded.updated_ms",
            params![user, password_hash, now_ms()],
        )?;
        conn.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            params![user],
        )?;
        Ok(())
    }

    fn password_hash(&self, user: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn user_count(&self) -> Result<i64, DbError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    fn create_session(
        &self,
        user: &str,
        id_hash: &[u8],
        csrf: &str,
        expires_ms: i64,
    ) -> Result<(), DbError> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let user_id: i64 =
            tx.query_row("SELECT id FROM users WHERE name = ?1", params![user], |r| {
                r.get(0)
            })?;
        tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now])?;
        tx.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_ms, expires_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id_hash, user_id, csrf, now, expires_ms],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND id_hash NOT IN \
             (SELECT id_hash FROM sessions WHERE user_id = ?1 \
              ORDER BY created_ms DESC LIMIT ?2)",
            params![user_id, MAX_SESSIONS_PER_USER],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT u.name, s.csrf, s.expires_ms FROM sessions s \
                 JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1 AND s.expires_ms > ?2",
                params![id_hash, now_ms()],
                |r| {
                    Ok(Session {
                        user: r.get(0)?,
                        csrf: r.get(1)?,
                        expires_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn delete_session(&self, id_hash: &[u8]) -> Result<(), DbError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
        Ok(())
    }

    fn create_token(
        &self,
        name: &str,
        token_hash: &[u8],
        created_by: &str,
    ) -> Result<TokenInfo, DbError> {
        let conn = self.conn();
        let now = now_ms();
        conn.execute(
            "INSERT INTO api_tokens (name, token_hash, created_by, created_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            params![name, token_hash, created_by, now],
        )?;
        Ok(TokenInfo {
            id: conn.last_insert_rowid(),
            name: name.to_owned(),
            created_by: created_by.to_owned(),
            created_ms: now,
            last_used_ms: None,
            revoked_ms: None,
        })
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, created_by, created_ms, last_used_ms, revoked_ms \
             FROM api_tokens ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], token_info)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn use_token(&self, token_hash: &[u8]) -> Result<Option<TokenInfo>, DbError> {
        let conn = self.conn();
        let found = conn
            .query_row(
                "SELECT id, name, created_by, created_ms, last_used_ms, revoked_ms \
                 FROM api_tokens WHERE token_hash = ?1 AND revoked_ms IS NULL",
                params![token_hash],
                token_info,
            )
            .optional()?;
        let now = now_ms();
        if let Some(token) = &found
            && token.last_used_ms.is_none_or(|t| now - t >= TOKEN_TOUCH_MS)
        {
            conn.execute(
                "UPDATE api_tokens SET last_used_ms = ?1 WHERE id = ?2",
                params![now, token.id],
            )?;
        }
        Ok(found)
    }

    fn revoke_token(&self, id: i64) -> Result<Option<TokenInfo>, DbError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE api_tokens SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL",
            params![now_ms(), id],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        Ok(Some(conn.query_row(
            "SELECT id, name, created_by, created_ms, last_used_ms, revoked_ms \
             FROM api_tokens WHERE id = ?1",
            params![id],
            token_info,
        )?))
    }

    fn audit(&self, entry: &NewAudit<'_>) -> Result<i64, DbError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (ts_ms, actor, ip, action, target, summary, before, after) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                now_ms(),
                entry.actor,
                entry.ip,
                entry.action,
                entry.target,
                entry.summary,
                entry.before.map(clip),
                entry.after.map(clip),
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_log(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, ts_ms, actor, ip, action, target, summary, before, after FROM audit \
             WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![before_id.unwrap_or(i64::MAX), limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                actor: r.get(2)?,
                ip: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                summary: r.get(6)?,
                before: r.get(7)?,
                after: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn save_overlay(&self, new: &NewOverlay<'_>) -> Result<i64, DbError> {
        let document = serde_json::to_string(new.document)?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO overlays (ts_ms, actor, comment, summary, rollback_of, document) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                now_ms(),
                new.actor,
                new.comment,
                new.summary,
                new.rollback_of,
                document
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn latest_overlay(&self) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("ORDER BY version DESC LIMIT 1", None)
    }

    fn overlay(&self, version: i64) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("WHERE version = ?1", Some(version))
    }

    fn overlays(&self, limit: u32) -> Result<Vec<OverlayMeta>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, ts_ms, actor, comment, summary, rollback_of FROM overlays \
             ORDER BY version DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], overlay_meta)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
    fn watch_overlays(&self) -> Option<OverlayWatch> {
        None
    }
}

fn token_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        created_by: r.get(2)?,
        created_ms: r.get(3)?,
        last_used_ms: r.get(4)?,
        revoked_ms: r.get(5)?,
    })
}

fn overlay_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<OverlayMeta> {
    Ok(OverlayMeta {
        version: r.get(0)?,
        ts_ms: r.get(1)?,
        actor: r.get(2)?,
        comment: r.get(3)?,
        summary: r.get(4)?,
        rollback_of: r.get(5)?,
    })
}

fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 => {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", 1)?;
            tx.commit()?;
            Ok(())
        }
        1 => Ok(()),
        newer => Err(DbError::TooNew(newer)),
    }
}
