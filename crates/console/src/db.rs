//! The console's own database: users, sessions, API tokens, the audit log
//! and the versions of the policy overlay.
//!
//! Two backends behind one [`ConsoleDb`]: SQLite (embedded, one node) and
//! PostgreSQL (shared by every node of a cluster, where a saved overlay is
//! announced with NOTIFY and [`ConsoleDb::watch_overlays`] hears it).
//!
//! Every method is synchronous and short; async callers run them behind
//! `spawn_blocking`.

mod pg;
mod sqlite;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_config::Overlay;
use portcullis_store::PgPool;
use serde::Serialize;

/// Sessions kept per user; logging in again drops the oldest.
const MAX_SESSIONS_PER_USER: i64 = 20;
/// A token's `last_used_ms` is written at most this often.
const TOKEN_TOUCH_MS: i64 = 60_000;
/// Longest audit `before` / `after` text kept.
const MAX_AUDIT_TEXT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("console database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("console database: {0}")]
    Postgres(#[from] portcullis_store::StoreError),
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

/// What a backend stores; [`ConsoleDb`] documents each method.
trait Backend: Send + Sync {
    fn set_password(&self, user: &str, password_hash: &str) -> Result<(), DbError>;
    fn password_hash(&self, user: &str) -> Result<Option<String>, DbError>;
    fn user_count(&self) -> Result<i64, DbError>;
    fn create_session(
        &self,
        user: &str,
        id_hash: &[u8],
        csrf: &str,
        expires_ms: i64,
    ) -> Result<(), DbError>;
    fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, DbError>;
    fn delete_session(&self, id_hash: &[u8]) -> Result<(), DbError>;
    fn create_token(
        &self,
        name: &str,
        token_hash: &[u8],
        created_by: &str,
    ) -> Result<TokenInfo, DbError>;
    fn tokens(&self) -> Result<Vec<TokenInfo>, DbError>;
    fn use_token(&self, token_hash: &[u8]) -> Result<Option<TokenInfo>, DbError>;
    fn revoke_token(&self, id: i64) -> Result<Option<TokenInfo>, DbError>;
    fn audit(&self, entry: &NewAudit<'_>) -> Result<i64, DbError>;
    fn audit_log(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, DbError>;
    fn save_overlay(&self, new: &NewOverlay<'_>) -> Result<i64, DbError>;
    fn latest_overlay(&self) -> Result<Option<OverlayVersion>, DbError>;
    fn overlay(&self, version: i64) -> Result<Option<OverlayVersion>, DbError>;
    fn overlays(&self, limit: u32) -> Result<Vec<OverlayMeta>, DbError>;
    fn watch_overlays(&self) -> Option<OverlayWatch>;
}

pub struct ConsoleDb {
    backend: Box<dyn Backend>,
}

impl ConsoleDb {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ConsoleDb, DbError> {
        Ok(ConsoleDb {
            backend: Box::new(sqlite::SqliteDb::open(path)?),
        })
    }

    /// Opens the console's tables in PostgreSQL (creating them if needed),
    /// shared by every node that uses the same database. Blocking: call it
    /// off the async runtime.
    pub fn open_postgres(pool: PgPool) -> Result<ConsoleDb, DbError> {
        Ok(ConsoleDb {
            backend: Box::new(pg::PgDb::open(pool)?),
        })
    }

    /// Creates the user or replaces its password hash; its sessions end.
    pub fn set_password(&self, user: &str, password_hash: &str) -> Result<(), DbError> {
        self.backend.set_password(user, password_hash)
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
        self.backend.password_hash(user)
    }

    pub fn user_count(&self) -> Result<i64, DbError> {
        self.backend.user_count()
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
        self.backend.create_session(user, id_hash, csrf, expires_ms)
    }

    /// The live session with this id digest.
    pub fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, DbError> {
        self.backend.session(id_hash)
    }

    pub fn delete_session(&self, id_hash: &[u8]) -> Result<(), DbError> {
        self.backend.delete_session(id_hash)
    }

    pub fn create_token(
        &self,
        name: &str,
        token_hash: &[u8],
        created_by: &str,
    ) -> Result<TokenInfo, DbError> {
        self.backend.create_token(name, token_hash, created_by)
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, DbError> {
        self.backend.tokens()
    }

    /// The unrevoked token with this digest; records its use.
    pub fn use_token(&self, token_hash: &[u8]) -> Result<Option<TokenInfo>, DbError> {
        self.backend.use_token(token_hash)
    }

    /// Revokes a token; `None` when there is no such unrevoked token.
    pub fn revoke_token(&self, id: i64) -> Result<Option<TokenInfo>, DbError> {
        self.backend.revoke_token(id)
    }

    pub fn audit(&self, entry: &NewAudit<'_>) -> Result<i64, DbError> {
        self.backend.audit(entry)
    }

    /// Audit entries newest first, before the cursor `before_id`.
    pub fn audit_log(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, DbError> {
        self.backend.audit_log(before_id, limit)
    }

    /// Saves a new overlay version; returns its number. On PostgreSQL the
    /// version is announced to every node (see [`ConsoleDb::watch_overlays`]).
    pub fn save_overlay(&self, new: &NewOverlay<'_>) -> Result<i64, DbError> {
        self.backend.save_overlay(new)
    }

    pub fn latest_overlay(&self) -> Result<Option<OverlayVersion>, DbError> {
        self.backend.latest_overlay()
    }

    pub fn overlay(&self, version: i64) -> Result<Option<OverlayVersion>, DbError> {
        self.backend.overlay(version)
    }

    /// Versions newest first.
    pub fn overlays(&self, limit: u32) -> Result<Vec<OverlayMeta>, DbError> {
        self.backend.overlays(limit)
    }

    /// Follows the overlay versions saved by any node: `None` on SQLite,
    /// which no other node shares. The first version it yields is the
    /// latest at (re)connection, so a node that missed announcements while
    /// disconnected catches up. Callable from async code: the listener runs
    /// on the PostgreSQL runtime and stops when the watch is dropped.
    pub fn watch_overlays(&self) -> Option<OverlayWatch> {
        self.backend.watch_overlays()
    }
}

/// Announcements of saved overlay versions (see [`ConsoleDb::watch_overlays`]).
pub struct OverlayWatch {
    rx: tokio::sync::watch::Receiver<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl OverlayWatch {
    /// Waits for a version newer than the last one returned, and returns
    /// it; `None` once the listener has stopped.
    pub async fn changed(&mut self) -> Option<i64> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The newest version announced so far (0: none yet).
    pub fn latest(&self) -> i64 {
        *self.rx.borrow()
    }
}

impl Drop for OverlayWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OverlayMeta {
    fn with_document(self, text: &str) -> Result<OverlayVersion, DbError> {
        Ok(OverlayVersion {
            document: serde_json::from_str(text)?,
            version: self.version,
            ts_ms: self.ts_ms,
            actor: self.actor,
            comment: self.comment,
            summary: self.summary,
            rollback_of: self.rollback_of,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_store::pg::{TempPostgres, TempPostgresError};
    use portcullis_store::{PgConfig, PgPool};

    use super::*;

    fn sqlite() -> (ConsoleDb, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "portcullis-console-db-{}-{n}.db",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        (ConsoleDb::open(&path).unwrap(), path)
    }

    /// A temporary PostgreSQL server, or `None` (said) when not installed.
    fn server() -> Option<TempPostgres> {
        match TempPostgres::start() {
            Ok(pg) => Some(pg),
            Err(TempPostgresError::NotInstalled) => {
                eprintln!("SKIPPED: PostgreSQL server binaries are not installed");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn postgres(server: &TempPostgres) -> ConsoleDb {
        let pool = PgPool::new(&PgConfig::new(server.url())).unwrap();
        ConsoleDb::open_postgres(pool).unwrap()
    }

    fn sessions_end_with_a_new_password_and_are_capped(db: &ConsoleDb) {
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
        assert_eq!(db.user_count().unwrap(), 1);
    }

    fn tokens_revoke_and_overlays_version(db: &ConsoleDb) {
        let token = db.create_token("ci", b"digest", "admin").unwrap();
        assert_eq!(db.use_token(b"digest").unwrap().unwrap().id, token.id);
        assert_eq!(db.tokens().unwrap().len(), 1);
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
    }

    #[test]
    fn sqlite_sessions_and_tokens() {
        let (db, path) = sqlite();
        sessions_end_with_a_new_password_and_are_capped(&db);
        tokens_revoke_and_overlays_version(&db);
        assert!(db.watch_overlays().is_none(), "no other node shares it");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn postgres_sessions_and_tokens_are_shared() {
        let Some(server) = server() else { return };
        let db = postgres(&server);
        sessions_end_with_a_new_password_and_are_capped(&db);
        tokens_revoke_and_overlays_version(&db);
        // A second node sees the same users and versions.
        let other = postgres(&server);
        assert_eq!(other.password_hash("admin").unwrap().as_deref(), Some("h2"));
        assert_eq!(other.latest_overlay().unwrap().unwrap().version, 2);
    }

    #[test]
    fn opens_while_postgres_is_down_and_works_once_it_is_back() {
        let Some(mut server) = server() else { return };
        server.stop();
        let db = postgres(&server);
        assert!(db.user_count().is_err(), "down");
        server.restart().unwrap();
        db.set_password("admin", "h").unwrap();
        assert_eq!(db.user_count().unwrap(), 1);
    }

    #[test]
    fn an_overlay_saved_on_one_node_is_announced_to_the_others() {
        let Some(mut server) = server() else { return };
        let node1 = postgres(&server);
        let node2 = postgres(&server);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let next = |watch: &mut OverlayWatch| {
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), watch.changed()).await
            })
        };
        let mut watch = node2.watch_overlays().unwrap();
        let overlay = Overlay::default();
        let new = NewOverlay {
            document: &overlay,
            actor: "admin",
            comment: "",
            summary: "",
            rollback_of: None,
        };
        // Saved before the listener is surely up: the catch-up read finds it.
        let v1 = node1.save_overlay(&new).unwrap();
        assert_eq!(next(&mut watch), Ok(Some(v1)));
        let v2 = node1.save_overlay(&new).unwrap();
        assert_eq!(next(&mut watch), Ok(Some(v2)));

        // Saved while the listener's server is down: heard after it is back.
        server.stop();
        server.restart().unwrap();
        let v3 = node1.save_overlay(&new).unwrap();
        assert_eq!(next(&mut watch), Ok(Some(v3)));
        assert_eq!(watch.latest(), v3);
    }
}
