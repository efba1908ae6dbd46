//! The Portcullis data path.
//!
//! Owns the listeners (plain, TLS, admin), the request context and decision
//! pipeline, the edge layer (layer 1), the proxy to the origins, hot reload
//! of the configuration, metrics and the decision-event queue. Pure checks
//! live in [`edge`] and [`context`] and are tested without sockets.

pub mod admin;
pub mod answers;
pub mod bans;
pub mod body;
pub mod client_ip;
pub mod conn_io;
pub mod console;
pub mod context;
pub mod control;
pub mod demo;
pub mod edge;
pub mod events;
pub mod files;
pub mod h1;
pub mod hot_metrics;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod risk;
pub mod runtime;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod stages;
pub mod trust;
pub mod worker;

pub use control::{ConfigSource, Overrides};
pub use shared::Shared;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use portcullis_config::{Config, Overlay, StoreBackend};
use portcullis_console::ConsoleDb;
use portcullis_state::{MemoryStore, MemoryStoreOptions, RedisStore, StateStore};
use portcullis_store::{
    EventStore, EventWriter, PgConfig, PgPool, PgStore, Retention, SqliteStore, WriterConfig,
};

use crate::edge::conn::ConnLimiter;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::snapshot::StateSnapshot;

/// What the gateway runs beside the data path: the event store and the
/// console. [`start`] runs without them; the binary opens them from the
/// `[store]` and `[console]` sections with [`Services::open`].
#[derive(Default)]
pub struct Services {
    pub store: Option<Arc<dyn EventStore>>,
    pub console: Option<Arc<ConsoleDb>>,
    /// Bearer token with every right on the admin listener.
    pub admin_token: Option<String>,
    /// Where the memory backend is kept across restarts (`[state] snapshot`).
    pub state_snapshot: Option<PathBuf>,
}

impl Services {
    /// Opens (creating if needed) what `[store]` and `[console]` enable.
    /// With `[store] backend = "postgres"` the events and the console's
    /// data live in PostgreSQL, shared by every node.
    pub fn open(config: &Config) -> anyhow::Result<Services> {
        let (store, pool) = open_store(config)?;
        let console = if config.console.enabled {
            let db = match pool {
                Some(pool) => ConsoleDb::open_postgres(pool)
                    .context("cannot open the console tables in PostgreSQL")?,
                None => {
                    let path = &config.console.path;
                    ConsoleDb::open(path).with_context(|| {
                        format!("cannot open the console database {}", path.display())
                    })?
                }
            };
            Some(Arc::new(db))
        } else {
            None
        };
        let state = &config.state;
        let state_snapshot = (state.backend == portcullis_config::StateBackend::Memory
            && !state.snapshot.as_os_str().is_empty())
        .then(|| state.snapshot.clone());
        Ok(Services {
            store,
            console,
            admin_token: admin_token_from_env(),
            state_snapshot,
        })
    }
}

/// A token for this start's admin API when no credential is configured:
/// every admin route needs one. Shown once on standard error, never logged.
fn generated_admin_token() -> String {
    let token = format!("{:032x}", rand::random::<u128>());
    eprintln!(
        "portcullis: no admin credential is configured (PORTCULLIS_ADMIN_TOKEN or [console]); \
         the admin API of this start takes: Authorization: Bearer {token}"
    );
    token
}

/// The event store, and the PostgreSQL pool the console shares with it.
type OpenedStore = (Option<Arc<dyn EventStore>>, Option<PgPool>);

fn open_store(config: &Config) -> anyhow::Result<OpenedStore> {
    let settings = &config.store;
    match settings.backend {
        StoreBackend::Sqlite if settings.enabled => {
            let path = &settings.path;
            let store = SqliteStore::open(path)
                .with_context(|| format!("cannot open the event store {}", path.display()))?;
            Ok((Some(Arc::new(store)), None))
        }
        StoreBackend::Sqlite => Ok((None, None)),
        StoreBackend::Postgres => {
            let url = settings.url.clone().unwrap_or_default();
            let pg = PgConfig::new(url);
            if settings.enabled {
                let store = PgStore::open(&pg).context("cannot open the PostgreSQL event store")?;
                let pool = store.pool().clone();
                Ok((Some(Arc::new(store)), Some(pool)))
            } else {
                let pool = PgPool::new(&pg).context("invalid [store] url")?;
                Ok((None, Some(pool)))
            }
        }
    }
}

/// `PORTCULLIS_ADMIN_TOKEN`, when set and not empty.
pub fn admin_token_from_env() -> Option<String> {
    std::env::var("PORTCULLIS_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

fn runtime_workers(shared: &Shared) -> usize {
    shared.runtime.load().workers
}

/// A started gateway: the addresses it listens on.
pub struct Running {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    snapshot: Option<Arc<StateSnapshot>>,
}

impl Running {
    /// What must outlive the process: the events not yet written (log,
    /// counted passes, store) and the memory backend's snapshot.
    pub async fn shutdown(&self) {
        let events = self.shared.events.clone();
        let flushed =
            tokio::task::spawn_blocking(move || events.flush(Duration::from_secs(10))).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("events queued at shutdown may be lost");
        }
        if let Some(snapshot) = &self.snapshot {
            snapshot.save().await;
        }
    }
}

/// Starts the listeners and the reload watcher on the current tokio runtime,
/// without event store or console.
pub async fn start(source: ConfigSource, overrides: Overrides) -> anyhow::Result<Running> {
    let services = Services {
        admin_token: admin_token_from_env(),
        ..Services::default()
    };
    start_with(source, overrides, services).await
}

/// Starts the gateway with its event store and console.
pub async fn start_with(
    source: ConfigSource,
    overrides: Overrides,
    services: Services,
) -> anyhow::Result<Running> {
    let file = source.load(&overrides)?;
    let overlay = services
        .console
        .as_deref()
        .map_or_else(Overlay::default, |db| control::initial_overlay(db, &file));
    let config = control::merge(&file, &overlay).context("the console overlay does not apply")?;
    anyhow::ensure!(
        !config.upstreams.is_empty(),
        "no origin configured: give --upstream URL or [[upstreams]] in the config"
    );
    let runtime = Runtime::build(config, 1).context("cannot apply the configuration")?;
    if let Some(db) = &services.console {
        control::sync_admin_password(db, &runtime.config.console);
        control::warn_if_no_user(db);
    }
    let mut metrics = Metrics::new(runtime.workers, pipeline::STAGE_NAMES);
    let writer = store_writer(&runtime.config, services.store.clone())?;
    if let Some(writer) = &writer {
        let collector = events::StoreCollector::new(Arc::clone(writer));
        metrics.registry.register_collector(Box::new(collector));
    }
    let metrics = Arc::new(metrics);
    let events = event_sink(&runtime.config, writer, Arc::clone(&metrics));
    metrics.config_version.set(1);
    let listen_addr = runtime.config.server.listen;
    let admin_addr = runtime.config.server.admin;
    let tls_addr = runtime.config.server.tls.as_ref().map(|t| t.listen);
    let alerts = services
        .store
        .clone()
        .map(|store| portcullis_alerts::spawn(&runtime.config, store));
    let (state, snapshot) =
        state_store(&runtime.config.state, services.state_snapshot.clone()).await?;
    let bans = Arc::new(bans::Bans::new(Arc::clone(&state)));
    if let Err(e) = bans.refresh().await {
        tracing::warn!(error = %e, "cannot load bans; starting without");
    }
    tokio::spawn(Arc::clone(&bans).keep_fresh());
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        state,
        metrics,
        events,
        conns: Arc::new(ConnLimiter::default()),
        bans,
        admin_token: services.admin_token.clone().or_else(|| {
            (admin_addr.is_some() && services.console.is_none()).then(generated_admin_token)
        }),
        control: control::Control::new(source, overrides, file, overlay),
        console_db: services.console.clone(),
        alerts,
    });

    let workers = runtime_workers(&shared);
    let (plain, listen) = server::bind_workers(listen_addr, workers).await?;
    let (tls_listeners, tls) = match tls_addr {
        Some(addr) => {
            let (listeners, bound) = server::bind_workers(addr, workers).await?;
            (listeners, Some(bound))
        }
        None => (Vec::new(), None),
    };
    server::spawn_workers(plain, tls_listeners, &shared)?;
    let admin = match admin_addr {
        Some(addr) => {
            let listener = server::bind(addr).await?;
            let bound = listener.local_addr()?;
            let router = admin_router(&shared, &services);
            tokio::spawn(admin::serve(listener, router));
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(reload::watch(Arc::clone(&shared)));
    if let Some(watch) = shared
        .console_db
        .as_ref()
        .and_then(|db| db.watch_overlays())
    {
        tokio::spawn(reload::follow_overlays(Arc::clone(&shared), watch));
    }
    tracing::info!(%listen, admin = ?admin, tls = ?tls, "portcullis is listening");
    Ok(Running {
        listen,
        admin,
        tls,
        shared,
        snapshot,
    })
}

/// The state backend `[state]` names: this node's memory (loaded from its
/// snapshot, when one is kept), or Redis.
async fn state_store(
    config: &portcullis_config::StateConfig,
    snapshot: Option<PathBuf>,
) -> anyhow::Result<(Arc<dyn StateStore>, Option<Arc<StateSnapshot>>)> {
    use portcullis_config::{NonceFallback, RedisMode, StateBackend};
    let t = &config.tiers;
    let local = MemoryStoreOptions {
        capacity: t.features,
        limits_capacity: t.limits,
        bans_capacity: t.bans,
        revocations_capacity: t.revocations,
        nonces_capacity: t.nonces,
        challenges_capacity: t.challenges,
        ..MemoryStoreOptions::default()
    };
    if config.backend == StateBackend::Memory {
        let store = Arc::new(MemoryStore::new(local));
        let snapshot = snapshot.map(|path| {
            let snapshot = Arc::new(StateSnapshot::load(Arc::clone(&store), path));
            Arc::clone(&snapshot).keep_saving(Duration::from_secs(config.snapshot_every_s));
            snapshot
        });
        return Ok((store, snapshot));
    }
    let r = &config.redis;
    let endpoint = portcullis_state::Endpoint {
        mode: match r.mode {
            RedisMode::Standalone => portcullis_state::RedisMode::Standalone,
            RedisMode::Cluster => portcullis_state::RedisMode::Cluster,
            RedisMode::Sentinel => portcullis_state::RedisMode::Sentinel {
                master: r.sentinel_master.clone(),
            },
        },
        urls: r.urls.clone(),
        username: r.username.clone(),
        password: std::env::var("PORTCULLIS_REDIS_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| r.password.clone()),
    };
    let options = portcullis_state::RedisOptions {
        timeout: std::time::Duration::from_millis(r.timeout_ms),
        failures_to_open: r.failures_to_open,
        probe_every: std::time::Duration::from_millis(r.probe_ms),
        flush_every: std::time::Duration::from_millis(r.flush_ms),
        nodes: config.nodes,
        nonces_when_down: match r.nonces_when_down {
            NonceFallback::Refuse => portcullis_state::NonceFallback::Refuse,
            NonceFallback::Local => portcullis_state::NonceFallback::Local,
        },
        key_prefix: r.key_prefix.clone(),
        allow_eviction: r.allow_eviction,
        local,
        ..portcullis_state::RedisOptions::new(endpoint)
    };
    Ok((RedisStore::start(options).await?, None))
}

/// The console when it is on, the minimal admin API otherwise.
fn admin_router(shared: &Arc<Shared>, services: &Services) -> axum::Router {
    match &services.console {
        Some(db) => console::router(shared, Arc::clone(db), services.store.clone()),
        None => admin::router(Arc::clone(shared)),
    }
}

/// The event store's writer thread, batching events into `store`.
fn store_writer(
    config: &Config,
    store: Option<Arc<dyn EventStore>>,
) -> anyhow::Result<Option<Arc<EventWriter>>> {
    let Some(store) = store else {
        return Ok(None);
    };
    let settings = &config.store;
    let writer_config = WriterConfig {
        capacity: settings.queue,
        batch_size: settings.batch_size,
        max_delay: std::time::Duration::from_millis(settings.batch_delay_ms),
        retention: Some(Retention {
            events_days: settings.events_days,
            rollups_days: settings.rollups_days,
            max_bytes: (settings.max_mib > 0).then_some(settings.max_mib << 20),
            ..Retention::default()
        }),
        spool: settings.spool,
        ..WriterConfig::default()
    };
    let writer =
        EventWriter::spawn(store, writer_config).context("cannot start the event store writer")?;
    Ok(Some(Arc::new(writer)))
}

/// The event pipeline: JSON lines on standard output (`[events] log`) and
/// the event store, when there is one.
fn event_sink(
    config: &Config,
    store: Option<Arc<EventWriter>>,
    metrics: Arc<Metrics>,
) -> EventSink {
    let json: Option<Box<dyn std::io::Write + Send>> = if config.events.log {
        Some(Box::new(std::io::stdout()))
    } else {
        None
    };
    let outputs = events::EventOutputs {
        json,
        store,
        record_passed: config.store.record_passed,
    };
    EventSink::start(outputs, config.events.queue, metrics)
}
