//! The Portcullis console: the authenticated admin API and the web UI,
//! served on the admin listener.
//!
//! Owns the console database ([`ConsoleDb`]: users, sessions, API tokens,
//! the audit log and the versioned policy overlay), authentication
//! (Argon2id passwords, sessions with CSRF tokens, API tokens, the
//! `PORTCULLIS_ADMIN_TOKEN` bearer), the JSON API described by
//! `/api/openapi.json`, and the UI (plain HTML, CSS and JavaScript embedded
//! in the binary). It reads events and rollups from the event store and
//! acts on the gateway through the [`Gateway`] trait, which the gateway
//! implements, so this crate does not depend on it.

mod api;
mod auth;
mod db;
mod error;
mod gateway;
mod limiter;
mod secret;
mod summary;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use portcullis_config::ConsoleConfig;
use portcullis_store::EventStore;

pub use db::{
    AuditEntry, ConsoleDb, DbError, NewAudit, NewOverlay, OverlayMeta, OverlayVersion,
    OverlayWatch, TokenInfo,
};
pub use gateway::{ApplyFailure, BanInfo, BoxFuture, Gateway};
pub use secret::{MIN_PASSWORD_LEN, PasswordError, hash_password, verify_password};
pub use summary::describe as describe_change;

/// What the console serves from.
pub struct ConsoleOptions {
    pub config: ConsoleConfig,
    /// `PORTCULLIS_ADMIN_TOKEN`: a bearer token with every right.
    pub admin_token: Option<String>,
    /// The event store, for the dashboard and the interception log.
    pub events: Option<Arc<dyn EventStore>>,
}

/// The console's routes (`/`, `/ui/*`, `/api/*`, `/metrics`, `/healthz`).
/// Serve it with `ConnectInfo<SocketAddr>` in the request extensions, so
/// that login limits and the audit log see the client's address.
pub fn router(db: Arc<ConsoleDb>, gateway: Arc<dyn Gateway>, options: ConsoleOptions) -> Router {
    let limiter = limiter::LoginLimiter::new(
        options.config.login_attempts,
        Duration::from_secs(options.config.login_window_s),
        limiter::MAX_TRACKED,
    );
    let state = AppState(Arc::new(Inner {
        db,
        gateway,
        events: options.events,
        admin_token: options.admin_token,
        config: options.config,
        limiter,
        apply_lock: tokio::sync::Mutex::new(()),
    }));
    api::routes()
        .router
        .merge(ui::routes())
        .layer(axum::middleware::map_response(ui::security_headers))
        .with_state(state)
}

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    db: Arc<ConsoleDb>,
    gateway: Arc<dyn Gateway>,
    events: Option<Arc<dyn EventStore>>,
    admin_token: Option<String>,
    config: ConsoleConfig,
    limiter: limiter::LoginLimiter,
    /// One configuration change at a time, so versions follow what is live.
    apply_lock: tokio::sync::Mutex<()>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Runs a database call off the async runtime.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&ConsoleDb) -> Result<T, DbError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let joined = tokio::task::spawn_blocking(move || f(&db)).await;
        match joined {
            Ok(result) => result.map_err(error::ApiError::from),
            Err(e) => Err(error::ApiError::internal(&e)),
        }
    }

    /// Runs an event-store query off the async runtime; 503 without a store.
    pub(crate) async fn events<T, F>(&self, f: F) -> Result<T, error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn EventStore) -> Result<T, portcullis_store::StoreError> + Send + 'static,
    {
        let Some(store) = self.events.clone() else {
            return Err(error::ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "the event store is off ([store] enabled = false)",
            ));
        };
        let joined = tokio::task::spawn_blocking(move || f(store.as_ref())).await;
        match joined {
            Ok(result) => result.map_err(error::ApiError::from),
            Err(e) => Err(error::ApiError::internal(&e)),
        }
    }

    /// Runs blocking gateway work (applying a configuration) off the runtime.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Gateway) -> T + Send + 'static,
    {
        let gateway = Arc::clone(&self.gateway);
        tokio::task::spawn_blocking(move || f(gateway.as_ref()))
            .await
            .map_err(|e| error::ApiError::internal(&e))
    }
}
