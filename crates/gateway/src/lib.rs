//! The Portcullis data path.
//!
//! Owns the listeners (plain, TLS, admin), the request context and decision
//! pipeline, the edge layer (layer 1), the proxy to the origins, hot reload
//! of the configuration, metrics and the decision-event queue. Pure checks
//! live in [`edge`] and [`context`] and are tested without sockets.

pub mod admin;
pub mod bans;
pub mod body;
pub mod client_ip;
pub mod conn_io;
pub mod context;
pub mod demo;
pub mod edge;
pub mod events;
pub mod hot_metrics;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use portcullis_config::{Config, UpstreamConfig};
use portcullis_state::{MemoryStore, MemoryStoreOptions, StateStore};

use crate::edge::conn::ConnLimiter;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// What every request handler shares.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub state: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
    pub events: EventSink,
    pub conns: Arc<ConnLimiter>,
    pub bans: Arc<bans::Bans>,
    /// Bearer token the admin API requires (from `PORTCULLIS_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
}

/// Command-line settings that win over the file, on start and on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub upstream: Option<String>,
}

impl Overrides {
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.server.admin = Some(admin);
        }
        if let Some(upstream) = &self.upstream {
            config.upstreams = vec![UpstreamConfig::new(upstream.clone())];
        }
        config
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, watched for changes and re-read on SIGHUP.
    File(PathBuf),
    /// A fixed configuration (defaults plus overrides, or tests).
    Fixed(Box<Config>),
}

impl ConfigSource {
    pub fn load(&self, overrides: &Overrides) -> anyhow::Result<Config> {
        let config = match self {
            ConfigSource::File(path) => Config::load(path)?,
            ConfigSource::Fixed(config) => (**config).clone(),
        };
        Ok(overrides.apply(config))
    }
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
}

/// Starts the listeners and the reload watcher on the current tokio runtime.
pub async fn start(source: ConfigSource, overrides: Overrides) -> anyhow::Result<Running> {
    let config = source.load(&overrides)?;
    anyhow::ensure!(
        !config.upstreams.is_empty(),
        "no origin configured: give --upstream URL or [[upstreams]] in the config"
    );
    let runtime = Runtime::build(config, 1).context("cannot apply the configuration")?;
    let metrics = Arc::new(Metrics::new(runtime.workers));
    let events = if runtime.config.events.log {
        EventSink::json_lines(
            runtime.config.events.queue,
            Box::new(std::io::stdout()),
            Arc::clone(&metrics),
        )
    } else {
        EventSink::disabled(Arc::clone(&metrics))
    };
    metrics.config_version.set(1);
    let listen_addr = runtime.config.server.listen;
    let admin_addr = runtime.config.server.admin;
    let tls_addr = runtime.config.server.tls.as_ref().map(|t| t.listen);
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new(MemoryStoreOptions::default()));
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
        admin_token: std::env::var("PORTCULLIS_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
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
            tokio::spawn(admin::serve(listener, Arc::clone(&shared)));
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(reload::watch(source, overrides, Arc::clone(&shared)));
    tracing::info!(%listen, admin = ?admin, tls = ?tls, "portcullis is listening");
    Ok(Running {
        listen,
        admin,
        tls,
        shared,
    })
}
