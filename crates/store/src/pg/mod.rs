//! The shared backend: PostgreSQL ≥ 13 through tokio-postgres, so that
//! every gateway node writes one interception log.
//!
//! - [`PgPool`] is a deadpool pool of tokio-postgres connections driven by
//!   a small runtime of its own, with a synchronous door ([`PgPool::block_on`])
//!   for the [`crate::EventStore`] contract: callers are the writer thread or
//!   `spawn_blocking`, never async code. The console's database uses the same
//!   pool type, and [`PgPool::listen`] follows a LISTEN/NOTIFY channel.
//! - [`PgStore`] writes events with binary COPY, one transaction per batch
//!   with the minute rollups, into daily partitions of `events` (declarative
//!   partitioning by timestamp). Retention and the disk budget drop whole
//!   partitions, oldest first.
//! - [`TempPostgres`] runs a throwaway server for tests and benchmarks.

mod days;
mod read;
mod retention;
mod schema;
mod store;
mod temp;
mod tls;
mod write;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

pub use store::PgStore;
pub use temp::{Durability, TempPostgres, TempPostgresError};
pub use tls::{TlsError, TlsMode, TlsSettings, split_url};

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database` or the key=value form
    /// (`host=... dbname=...`), as libpq takes it. `sslmode` (up to
    /// `verify-full`) and `sslrootcert` choose TLS; see [`TlsMode`].
    pub url: String,
    /// Connections kept open (the writer takes one, readers the others).
    pub pool_size: usize,
    /// How long connecting may take before the database counts as down.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free connection.
    pub wait_timeout: Duration,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(2),
            wait_timeout: Duration::from_secs(5),
        }
    }
}

/// The runtime that drives every PostgreSQL connection of the process, so
/// that the store works the same from plain threads and from any runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portcullis-pg")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the PostgreSQL runtime: {e}"))
    })
}

/// Runs the future `make` returns to completion on the PostgreSQL runtime
/// and waits for it. Meant for plain threads (the event writer) and
/// `spawn_blocking`; called where a runtime is entered (tokio forbids
/// nesting `block_on`), it runs on a short-lived thread instead, so that
/// async startup code can still open the store.
fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send,
    F: Future,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().handle().block_on(make());
    }
    std::thread::scope(|s| {
        let waiter = s.spawn(|| runtime().handle().block_on(make()));
        waiter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A pool of PostgreSQL connections with a synchronous door.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    config: tokio_postgres::Config,
    /// `None`: plain connections (`sslmode` absent or `disable`).
    tls: Option<MakeRustlsConnect>,
}

impl PgPool {
    /// Builds the pool; connections are opened on first use, so a database
    /// that is down now does not stop the gateway from starting.
    pub fn new(config: &PgConfig) -> Result<PgPool, StoreError> {
        let (url, settings) =
            split_url(&config.url).map_err(|e| StoreError::Database(Box::new(e)))?;
        let tls = tls::connector(&settings).map_err(|e| StoreError::Database(Box::new(e)))?;
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Database(Box::new(e)))?;
        pg.connect_timeout(config.connect_timeout)
            .application_name("portcullis")
            .keepalives_idle(Duration::from_secs(30));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(pg.clone(), tls.clone(), manager_config),
            None => Manager::from_config(pg.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.wait_timeout))
            .build()
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(PgPool {
            pool,
            config: pg,
            tls,
        })
    }

    /// Runs the future `make` returns on the PostgreSQL runtime and waits
    /// for it (see [`block_on`]).
    pub fn block_on<M, F>(&self, make: M) -> F::Output
    where
        M: FnOnce() -> F + Send,
        F: Future,
        F::Output: Send,
    {
        block_on(make)
    }

    /// Spawns `fut` on the PostgreSQL runtime.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        runtime().spawn(fut)
    }

    /// A connection from the pool (async).
    pub async fn get(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Follows a LISTEN channel on a connection of its own, reconnecting
    /// with backoff. Every (re)connection sends [`Notice::Listening`] first:
    /// notifications sent while disconnected are lost, so the receiver should
    /// re-read what they announce. The listener stops when `Receiver` is
    /// dropped.
    pub fn listen(&self, channel: &str) -> mpsc::Receiver<Notice> {
        let (tx, rx) = mpsc::channel(64);
        let config = self.config.clone();
        let channel = channel.to_owned();
        match self.tls.clone() {
            Some(tls) => self.spawn(listen_loop(config, tls, channel, tx)),
            None => self.spawn(listen_loop(config, NoTls, channel, tx)),
        };
        rx
    }
}

/// What a LISTEN subscription hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The listener is (again) connected: anything may have been missed.
    Listening,
    /// A notification's payload.
    Payload(String),
}

const LISTEN_RETRY_FIRST: Duration = Duration::from_millis(200);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(2);

async fn listen_loop<T>(
    config: tokio_postgres::Config,
    tls: T,
    channel: String,
    tx: mpsc::Sender<Notice>,
) where
    T: MakeTlsConnect<Socket> + Clone,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut wait = LISTEN_RETRY_FIRST;
    while !tx.is_closed() {
        match listen_once(&config, tls.clone(), &channel, &tx).await {
            Ok(()) => wait = LISTEN_RETRY_FIRST,
            Err(error) => tracing::warn!(%error, channel, "LISTEN connection failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
        wait = (wait * 2).min(LISTEN_RETRY_MAX);
    }
}

/// One connection's life: LISTEN, then forward notifications until it ends.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    tx: &mpsc::Sender<Notice>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = note_tx.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    let quoted = channel.replace('"', "\"\"");
    client
        .batch_execute(&format!("LISTEN \"{quoted}\""))
        .await?;
    if tx.send(Notice::Listening).await.is_err() {
        return Ok(());
    }
    loop {
        tokio::select! {
            note = note_rx.recv() => match note {
                Some(payload) => {
                    if tx.send(Notice::Payload(payload)).await.is_err() {
                        return Ok(());
                    }
                }
                None => break,
            },
            () = tx.closed() => return Ok(()),
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A tokio-postgres error as a store error: connection problems are
/// [`StoreError::Unavailable`] (the writer spools and retries), the rest
/// are [`StoreError::Database`].
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Database(Box::new(e))
    }
}

fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08: connection exceptions; shutdowns and a starting server.
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
        // No SQLSTATE: unreachable only for an I/O error on the way (refused,
        // reset, timed out); encoding errors would fail again on retry.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

pub(crate) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(Box::new(other)),
    }
}
