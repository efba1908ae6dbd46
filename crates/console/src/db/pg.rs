//! The PostgreSQL backend of the console database: every node shares the
//! users, sessions, tokens, audit log and overlay versions, and a saved
//! overlay is announced on [`OVERLAY_CHANNEL`].

use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_store::PgPool;
use portcullis_store::pg::Notice;
use tokio_postgres::{Client, Row};

use super::{
    AuditEntry, Backend, DbError, MAX_SESSIONS_PER_USER, NewAudit, NewOverlay, OverlayMeta,
    OverlayVersion, OverlayWatch, Session, TOKEN_TOUCH_MS, TokenInfo, clip, now_ms,
};

/// The NOTIFY channel of saved overlay versions (payload: the version).
pub(super) const OVERLAY_CHANNEL: &str = "portcullis_overlay";

/// Held while migrating, so that nodes starting together do not race.
const MIGRATE_LOCK: i64 = 0x706f_7274_6375_6c02;

const SCHEMA: &str = "
CREATE TABLE console_users (
    id            bigserial PRIMARY KEY,
    name          text      NOT NULL UNIQUE,
    password_hash text      NOT NULL,
    updated_ms    bigint    NOT NULL
);
CREATE TABLE console_sessions (
    id_hash    bytea  PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES console_users(id) ON DELETE CASCADE,
    csrf       text   NOT NULL,
    created_ms bigint NOT NULL,
    expires_ms bigint NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id, created_ms);
CREATE TABLE console_api_tokens (
    id           bigserial PRIMARY KEY,
    name         text      NOT NULL,
    token_hash   bytea     NOT NULL UNIQUE,
    created_by   text      NOT NULL,
    created_ms   bigint    NOT NULL,
    last_used_ms bigint,
    revoked_ms   bigint
);
CREATE TABLE console_audit (
    id      bigserial PRIMARY KEY,
    ts_ms   bigint    NOT NULL,
    actor   text      NOT NULL,
    ip      text      NOT NULL,
    action  text      NOT NULL,
    target  text      NOT NULL,
    summary text      NOT NULL,
    before  text,
    after   text
);
CREATE TABLE console_overlays (
    version     bigserial PRIMARY KEY,
    ts_ms       bigint    NOT NULL,
    actor       text      NOT NULL,
    comment     text      NOT NULL,
    summary     text      NOT NULL,
    rollback_of bigint,
    document    text      NOT NULL
);
";

const TOKEN_COLUMNS: &str = "id, name, created_by, created_ms, last_used_ms, revoked_ms";
const OVERLAY_COLUMNS: &str = "version, ts_ms, actor, comment, summary, rollback_of";

pub(super) struct PgDb {
    pool: PgPool,
    /// The tables are known to be in place.
    migrated: AtomicBool,
}

impl PgDb {
    /// Creates the tables. A database that cannot be reached now is not an
    /// error: the gateway starts (its traffic does not need the console)
    /// and the tables are created on the first call that reaches it.
    pub(super) fn open(pool: PgPool) -> Result<PgDb, DbError> {
        let db = PgDb {
            pool,
            migrated: AtomicBool::new(false),
        };
        match db.run(async |_| Ok(())) {
            Err(DbError::Postgres(e)) if e.is_unavailable() => {
                tracing::warn!(error = %e, "PostgreSQL unreachable; the console waits for it");
                Ok(db)
            }
            other => other.map(|()| db),
        }
    }

    /// Runs `f` on a pooled connection (the tables created first if need
    /// be), waiting for it.
    fn run<T: Send>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error> + Send,
    ) -> Result<T, DbError> {
        self.pool.block_on(|| async {
            let mut client = self.pool.get().await?;
            if !self.migrated.load(Ordering::Acquire) {
                migrate(&mut client)
                    .await
                    .map_err(portcullis_store::StoreError::from)??;
                self.migrated.store(true, Ordering::Release);
            }
            Ok(f(&mut client)
                .await
                .map_err(portcullis_store::StoreError::from)?)
        })
    }

    fn overlay_where(
        &self,
        clause: &str,
        version: Option<i64>,
    ) -> Result<Option<OverlayVersion>, DbError> {
        let sql = format!("SELECT {OVERLAY_COLUMNS}, document FROM console_overlays {clause}");
        let row = self.run(async |c| match version {
            Some(v) => c.query_opt(&sql, &[&v]).await,
            None => c.query_opt(&sql, &[]).await,
        })?;
        row.map(|r| overlay_meta(&r).with_document(r.get::<_, &str>(6)))
            .transpose()
    }
}

async fn migrate(client: &mut Client) -> Result<Result<(), DbError>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS console_schema (version integer NOT NULL);
         INSERT INTO console_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM console_schema);",
    )
    .await?;
    let version: i32 = tx
        .query_one("SELECT version FROM console_schema", &[])
        .await?
        .get(0);
    match version {
        0 => {
            tx.batch_execute(SCHEMA).await?;
            tx.execute("UPDATE console_schema SET version = 1", &[])
                .await?;
        }
        1 => {}
        newer => return Ok(Err(DbError::TooNew(i64::from(newer)))),
    }
    tx.commit().await?;
    Ok(Ok(()))
}

fn token_info(r: &Row) -> TokenInfo {
    TokenInfo {
        id: r.get(0),
        name: r.get(1),
        created_by: r.get(2),
        created_ms: r.get(3),
        last_used_ms: r.get(4),
        revoked_ms: r.get(5),
    }
}

fn overlay_meta(r: &Row) -> OverlayMeta {
    OverlayMeta {
        version: r.get(0),
        ts_ms: r.get(1),
        actor: r.get(2),
        comment: r.get(3),
        summary: r.get(4),
        rollback_of: r.get(5),
    }
}

impl Backend for PgDb {
    fn set_password(&self, user: &str, password_hash: &str) -> Result<(), DbError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO console_users (name, password_hash, updated_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, \
                 updated_ms = excluded.updated_ms",
                &[&user, &password_hash, &now_ms()],
            )
            .await?;
            tx.execute(
                "DELETE FROM console_sessions WHERE user_id = \
                 (SELECT id FROM console_users WHERE name = $1)",
                &[&user],
            )
            .await?;
            tx.commit().await
        })
    }

    fn password_hash(&self, user: &str) -> Result<Option<String>, DbError> {
        let row = self.run(async |c| {
            c.query_opt(
                "SELECT password_hash FROM console_users WHERE name = $1",
                &[&user],
            )
            .await
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn user_count(&self) -> Result<i64, DbError> {
        self.run(async |c| {
            Ok(c.query_one("SELECT count(*) FROM console_users", &[])
                .await?
                .get(0))
        })
    }

    fn create_session(
        &self,
        user: &str,
        id_hash: &[u8],
        csrf: &str,
        expires_ms: i64,
    ) -> Result<(), DbError> {
        let now = now_ms();
        self.run(async |c| {
            let tx = c.transaction().await?;
            let user_id: i64 = tx
                .query_one("SELECT id FROM console_users WHERE name = $1", &[&user])
                .await?
                .get(0);
            tx.execute(
                "DELETE FROM console_sessions WHERE expires_ms <= $1",
                &[&now],
            )
            .await?;
            tx.execute(
                "INSERT INTO console_sessions (id_hash, user_id, csrf, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id_hash, &user_id, &csrf, &now, &expires_ms],
            )
            .await?;
            tx.execute(
                "DELETE FROM console_sessions WHERE user_id = $1 AND id_hash NOT IN \
                 (SELECT id_hash FROM console_sessions WHERE user_id = $1 \
                  ORDER BY created_ms DESC LIMIT $2)",
                &[&user_id, &MAX_SESSIONS_PER_USER],
            )
            .await?;
            tx.commit().await
        })
    }

    fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, DbError> {
        let row = self.run(async |c| {
            c.query_opt(
                "SELECT u.name, s.csrf, s.expires_ms FROM console_sessions s \
                 JOIN console_users u ON u.id = s.user_id \
                 WHERE s.id_hash = $1 AND s.expires_ms > $2",
                &[&id_hash, &now_ms()],
            )
            .await
        })?;
        Ok(row.map(|r| Session {
            user: r.get(0),
            csrf: r.get(1),
            expires_ms: r.get(2),
        }))
    }

    fn delete_session(&self, id_hash: &[u8]) -> Result<(), DbError> {
        self.run(async |c| {
            c.execute(
                "DELETE FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await
        })?;
        Ok(())
    }

    fn create_token(
        &self,
        name: &str,
        token_hash: &[u8],
        created_by: &str,
    ) -> Result<TokenInfo, DbError> {
        let now = now_ms();
        let row = self.run(async |c| {
            c.query_one(
                &format!(
                    "INSERT INTO console_api_tokens (name, token_hash, created_by, created_ms) \
                     VALUES ($1, $2, $3, $4) RETURNING {TOKEN_COLUMNS}"
                ),
                &[&name, &token_hash, &created_by, &now],
            )
            .await
        })?;
        Ok(token_info(&row))
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, DbError> {
        let rows = self.run(async |c| {
            c.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM console_api_tokens ORDER BY id DESC"),
                &[],
            )
            .await
        })?;
        Ok(rows.iter().map(token_info).collect())
    }

    fn use_token(&self, token_hash: &[u8]) -> Result<Option<TokenInfo>, DbError> {
        let now = now_ms();
        let row = self.run(async |c| {
            let found = c
                .query_opt(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM console_api_tokens \
                         WHERE token_hash = $1 AND revoked_ms IS NULL"
                    ),
                    &[&token_hash],
                )
                .await?;
            if let Some(row) = &found {
                let token = token_info(row);
                if token.last_used_ms.is_none_or(|t| now - t >= TOKEN_TOUCH_MS) {
                    c.execute(
                        "UPDATE console_api_tokens SET last_used_ms = $1 WHERE id = $2",
                        &[&now, &token.id],
                    )
                    .await?;
                }
            }
            Ok(found)
        })?;
        Ok(row.as_ref().map(token_info))
    }

    fn revoke_token(&self, id: i64) -> Result<Option<TokenInfo>, DbError> {
        let row = self.run(async |c| {
            c.query_opt(
                &format!(
                    "UPDATE console_api_tokens SET revoked_ms = $1 \
                     WHERE id = $2 AND revoked_ms IS NULL RETURNING {TOKEN_COLUMNS}"
                ),
                &[&now_ms(), &id],
            )
            .await
        })?;
        Ok(row.as_ref().map(token_info))
    }

    fn audit(&self, entry: &NewAudit<'_>) -> Result<i64, DbError> {
        let before = entry.before.map(clip);
        let after = entry.after.map(clip);
        self.run(async |c| {
            Ok(c.query_one(
                "INSERT INTO console_audit \
                 (ts_ms, actor, ip, action, target, summary, before, after) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &now_ms(),
                    &entry.actor,
                    &entry.ip,
                    &entry.action,
                    &entry.target,
                    &entry.summary,
                    &before,
                    &after,
                ],
            )
            .await?
            .get(0))
        })
    }

    fn audit_log(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, DbError> {
        let rows = self.run(async |c| {
            c.query(
                "SELECT id, ts_ms, actor, ip, action, target, summary, before, after \
                 FROM console_audit WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[&before_id.unwrap_or(i64::MAX), &i64::from(limit)],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                ts_ms: r.get(1),
                actor: r.get(2),
                ip: r.get(3),
                action: r.get(4),
                target: r.get(5),
                summary: r.get(6),
                before: r.get(7),
                after: r.get(8),
            })
            .collect())
    }

    /// Saves and announces the version in one transaction: NOTIFY is
    /// delivered at commit, so no node hears of a version it cannot read.
    fn save_overlay(&self, new: &NewOverlay<'_>) -> Result<i64, DbError> {
        let document = serde_json::to_string(new.document)?;
        self.run(async |c| {
            let tx = c.transaction().await?;
            let version: i64 = tx
                .query_one(
                    "INSERT INTO console_overlays \
                     (ts_ms, actor, comment, summary, rollback_of, document) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING version",
                    &[
                        &now_ms(),
                        &new.actor,
                        &new.comment,
                        &new.summary,
                        &new.rollback_of,
                        &document,
                    ],
                )
                .await?
                .get(0);
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&OVERLAY_CHANNEL, &version.to_string()],
            )
            .await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    fn latest_overlay(&self) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("ORDER BY version DESC LIMIT 1", None)
    }

    fn overlay(&self, version: i64) -> Result<Option<OverlayVersion>, DbError> {
        self.overlay_where("WHERE version = $1", Some(version))
    }

    fn overlays(&self, limit: u32) -> Result<Vec<OverlayMeta>, DbError> {
        let rows = self.run(async |c| {
            c.query(
                &format!(
                    "SELECT {OVERLAY_COLUMNS} FROM console_overlays \
                     ORDER BY version DESC LIMIT $1"
                ),
                &[&i64::from(limit)],
            )
            .await
        })?;
        Ok(rows.iter().map(overlay_meta).collect())
    }

    fn watch_overlays(&self) -> Option<OverlayWatch> {
        let mut notices = self.pool.listen(OVERLAY_CHANNEL);
        let (tx, rx) = tokio::sync::watch::channel(0);
        let pool = self.pool.clone();
        let task = self.pool.spawn(async move {
            while let Some(notice) = notices.recv().await {
                let version = match notice {
                    Notice::Listening => latest_version(&pool).await,
                    Notice::Payload(text) => text.parse().ok(),
                };
                if let Some(v) = version {
                    tx.send_if_modified(|seen| {
                        let newer = v > *seen;
                        *seen = (*seen).max(v);
                        newer
                    });
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Some(OverlayWatch { rx, task })
    }
}

/// The newest saved version, after a (re)connection.
async fn latest_version(pool: &PgPool) -> Option<i64> {
    let read = async {
        let client = pool.get().await?;
        let row = client
            .query_one("SELECT max(version) FROM console_overlays", &[])
            .await
            .map_err(portcullis_store::StoreError::from)?;
        Ok::<_, portcullis_store::StoreError>(row.get::<_, Option<i64>>(0))
    };
    match read.await {
        Ok(version) => version,
        Err(error) => {
            tracing::warn!(%error, "cannot read the latest overlay version");
            None
        }
    }
}
