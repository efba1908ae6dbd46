//! The console's own database (SQLite, WAL): users, sessions, API tokens,
//! the audit log and the versions of the policy overlay.
//!
//! Every method is synchronous and short; async callers run them behind
//! `spawn_blocking`. One connection behind a mutex is plenty for the
//! admin traffic of a console.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_config::Overlay;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Sessions kept per user; logging in again drops the oldest.
const MAX_SESSIONS_PER_USER: i64 = 20;
/// A token's `last_used_ms` is written at most this often.
const TOKEN_TOUCH_MS: i64 = 60_000;
/// Longest audit `before` / `after` text kept.
const MAX_AUDIT_TEXT: usize = 16 * 1024;

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

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("console database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("console database holds an unreadable overlay: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("console database schema version {0} is newer than this build supports")]
    TooNew(i64),
}

pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    pub expires_ms: i64,
}

/// An API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_by: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub ts_ms: i64,
    /// Who: a user name, `token:NAME`, `admin-token` or `cli`.
    pub actor: String,
    /// From where (the client address of the admin request).
    pub ip: String,
    pub action: String,
    pub target: String,
    pub summary: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An audit entry to write.
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub ip: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub summary: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

/// One saved version of the overlay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverlayVersion {
    pub version: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub comment: String,
    pub summary: String,
    pub rollback_of: Option<i64>,
    pub document: Overlay,
}

/// A version without its document, for the history list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayMeta {
    pub version: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub comment: String,
    pub summary: String,
    pub rollback_of: Option<i64>,
}

/// An overlay version to save.
#[derive(Debug, Clone)]
pub struct NewOverlay<'a> {
    pub document: &'a Overlay,
    pub actor: &'a str,
    pub comment: &'a str,
    pub summary: &'a str,
    pub rollback_of: Option<i64>,
}

pub struct ConsoleDb {
    conn: Mutex<Connection>,
}

impl ConsoleDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ConsoleDb, DbError> {
        let mut conn = Connection::open(path)?;
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(ConsoleDb {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the user or replaces its password hash; its sessions end.
    pub fn set_password(&self, user: &str, password_hash: &str) -> Result<(), DbError> {
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

    /// Sets the password hash from the configuration, when it differs.
    /// Returns whether it changed.
    pub fn sync_password(&self, user: &str, password_hash: &str) -> Result<bool, DbError> {
        if self.password_hash(user)?.as_deref() == Some(password_hash) {
            return Ok(false);
        }
        self.set_password(user, password_hash)?;
        Ok(true)
    }

    pub fn password_hash(&self, user: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn user_count(&self) -> Result<i64, DbError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// Stores a new session (by the digest of its id); drops the user's
    /// expired sessions and the oldest beyond the per-user cap.
    pub fn create_session(
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

    /// The live session with this id digest.
    pub fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, DbError> {
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

    pub fn delete_session(&self, id_hash: &[u8]) -> Result<(), DbError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
        Ok(())
    }

    pub fn create_token(
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

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, created_by, created_ms, last_used_ms, revoked_ms \
             FROM api_tokens ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], token_info)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The unrevoked token with this digest; records its use.
    pub fn use_token(&self, token_hash: &[u8]) -> Result<Option<TokenInfo>, DbError> {
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

    /// Revokes a token; `None` when there is no such unrevoked token.
    pub fn revoke_token(&self, id: i64) -> Result<Option<TokenInfo>, DbError> {
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

    pub fn audit(&self, entry: &NewAudit<'_>) -> Result<i64, DbError> {
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

    /// Audit entries newest first, before the cursor `before_id`.
    pub fn audit_log(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, DbError> {
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

    /// Saves a new overlay version; returns its number.
    pub fn save_overlay(&self, new: &NewOverlay<'_>) -> Result<i64, DbError> {
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

    pub fn latest_overlay(&self) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("ORDER BY version DESC LIMIT 1", None)
    }

    pub fn overlay(&self, version: i64) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("WHERE version = ?1", Some(version))
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
        let Some((meta, text)) = row else {
            return Ok(None);
        };
        Ok(Some(OverlayVersion {
            document: serde_json::from_str(&text)?,
            version: meta.version,
            ts_ms: meta.ts_ms,
            actor: meta.actor,
            comment: meta.comment,
            summary: meta.summary,
            rollback_of: meta.rollback_of,
        }))
    }

    /// Versions newest first.
    pub fn overlays(&self, limit: u32) -> Result<Vec<OverlayMeta>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, ts_ms, actor, comment, summary, rollback_of FROM overlays \
             ORDER BY version DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], overlay_meta)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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

/// At most [`MAX_AUDIT_TEXT`] bytes, cut on a character boundary.
fn clip(text: &str) -> &str {
    if text.len() <= MAX_AUDIT_TEXT {
        return text;
    }
    let mut end = MAX_AUDIT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (ConsoleDb, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "portcullis-console-db-{}-{n}.db",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        (ConsoleDb::open(&path).unwrap(), path)
    }

    #[test]
    fn sessions_end_with_a_new_password_and_are_capped() {
        let (db, path) = db();
        db.set_password("admin", "h1").unwrap();
        let far = now_ms() + 60_000;
        for n in 0..25u8 {
            db.create_session("admin", &[n], "csrf", far).unwrap();
        }
        assert!(db.session(&[0]).unwrap().is_none(), "beyond the cap");
        let live = db.session(&[24]).unwrap().unwrap();
        assert_eq!(live.user, "admin");
        db.create_session("admin", &[99], "c", now_ms() - 1)
            .unwrap();
        assert!(db.session(&[99]).unwrap().is_none(), "expired");
        assert!(!db.sync_password("admin", "h1").unwrap());
        assert!(db.sync_password("admin", "h2").unwrap());
        assert!(db.session(&[24]).unwrap().is_none(), "password changed");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn tokens_revoke_and_overlays_version() {
        let (db, path) = db();
        let token = db.create_token("ci", b"digest", "admin").unwrap();
        assert_eq!(db.use_token(b"digest").unwrap().unwrap().id, token.id);
        assert!(db.revoke_token(token.id).unwrap().is_some());
        assert!(db.use_token(b"digest").unwrap().is_none());
        assert!(db.revoke_token(token.id).unwrap().is_none(), "already");
        let overlay = Overlay {
            policies: Some(Vec::new()),
            ..Overlay::default()
        };
        let new = NewOverlay {
            document: &overlay,
            actor: "admin",
            comment: "first",
            summary: "policies: none",
            rollback_of: None,
        };
        assert_eq!(db.save_overlay(&new).unwrap(), 1);
        assert_eq!(db.save_overlay(&new).unwrap(), 2);
        assert_eq!(db.latest_overlay().unwrap().unwrap().version, 2);
        assert_eq!(db.overlay(1).unwrap().unwrap().document, overlay);
        assert!(db.overlay(3).unwrap().is_none());
        assert_eq!(db.overlays(10).unwrap().len(), 2);
        let long = "x".repeat(MAX_AUDIT_TEXT + 10);
        let id = db
            .audit(&NewAudit {
                actor: "admin",
                action: "policy.apply",
                after: Some(&long),
                ..NewAudit::default()
            })
            .unwrap();
        let log = db.audit_log(None, 10).unwrap();
        assert_eq!(log[0].id, id);
        assert_eq!(log[0].after.as_ref().map(String::len), Some(MAX_AUDIT_TEXT));
        let _ = std::fs::remove_file(path);
    }
}
