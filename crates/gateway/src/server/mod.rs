//! Listeners: the plain and TLS data listeners with their connection caps
//! and timeouts, the worker threads, and each connection by its protocol
//! (HTTP/1 in [`http1`], HTTP/2 on hyper).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::Shared;
use crate::body::ClientBody;
use crate::conn_io::Rewind;
use crate::edge::conn::ConnGuard;
use crate::metrics::OutcomeLabel;
use crate::runtime::Runtime;

mod http1;

/// The first read of a plain connection: a request head usually fits.
const FIRST_READ: usize = 4096;

/// Written to a plain connection refused by the caps, before closing it.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 34\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"error\":\"too many connections\"}\r\n";

fn http2_builder(rt: &Runtime) -> http2::Builder<TokioExecutor> {
    let limits = &rt.config.limits;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Takes a connection slot for `peer`, or refuses and counts it.
fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<ConnGuard> {
    let rt = shared.runtime.load();
    let limits = &rt.config.limits;
    match shared.conns.try_acquire(
        peer.ip(),
        limits.max_connections,
        limits.max_connections_per_ip,
    ) {
        Ok(guard) => Some(guard),
        Err(refused) => {
            shared
                .metrics
                .connections_refused
                .get_or_create(&OutcomeLabel {
                    outcome: refused.as_str(),
                })
                .inc();
            None
        }
    }
}

/// The next connection on `listener`.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub async fn serve_plain(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (mut stream, peer) = accept(&listener).await;
        let Some(guard) = admit(&shared, peer) else {
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            // A connection that never sends a byte is closed by the header timeout.
            let deadline = head_deadline(&shared);
            // The first bytes are read here, not peeked: the parser gets
            // them without reading the socket a second time.
            let mut first = BytesMut::with_capacity(FIRST_READ);
            match tokio::time::timeout_at(deadline, first_bytes(&mut stream, &mut first)).await {
                Ok(Ok(protocol)) => {
                    let conn = Conn {
                        peer,
                        tls: false,
                        deadline,
                    };
                    serve_connection(stream, first, conn, shared, guard, protocol).await
                }
                _ => drop(guard),
            }
        });
    }
}

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a plain connection's first bytes into `buf` until they show the
/// protocol: the HTTP/2 preface, or anything else (HTTP/1).
async fn first_bytes(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Protocol> {
    loop {
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let seen = buf.len().min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] {
            return Ok(Protocol::Http1);
        }
        if seen == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
    }
}

pub async fn serve_tls(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let Some(guard) = admit(&shared, peer) else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let rt = shared.runtime.load_full();
            let Some(tls) = rt.tls.clone() else { return };
            let _ = stream.set_nodelay(true);
            let deadline = head_deadline(&shared);
            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
            match tokio::time::timeout_at(deadline, accept).await {
                Ok(Ok(tls_stream)) => {
                    let protocol = match tls_stream.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        _ => Protocol::Http1,
                    };
                    let conn = Conn {
                        peer,
                        tls: true,
                        deadline,
                    };
                    serve_connection(tls_stream, BytesMut::new(), conn, shared, guard, protocol)
                        .await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The HTTP version of a connection: by its first bytes (plain text), or
/// as negotiated by ALPN.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// By when a new connection's first request head must be in.
fn head_deadline(shared: &Shared) -> Instant {
    Instant::now() + Duration::from_millis(shared.runtime.load().config.limits.header_timeout_ms)
}

/// A client connection, accepted.
struct Conn {
    peer: SocketAddr,
    tls: bool,
    /// By when the first request head must be in.
    deadline: Instant,
}

async fn serve_connection<S: crate::h1::Stream + 'static>(
    stream: S,
    early: BytesMut,
    conn: Conn,
    shared: Arc<Shared>,
    guard: ConnGuard,
    protocol: Protocol,
) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.connections_open.inc();
    match protocol {
        Protocol::Http1 => {
            http1::serve(stream, early, conn.deadline, shared, conn.peer, conn.tls).await
        }
        Protocol::Http2 => {
            let runtime = shared.runtime.load_full();
            let Conn { peer, tls, .. } = conn;
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let req = req.map(ClientBody::H2);
                crate::proxy::handle(Arc::clone(&shared), peer, tls, req, Default::default())
            });
            let io = TokioIo::new(Rewind::new(stream, early.freeze()));
            if let Err(e) = http2_builder(&runtime).serve_connection(io, service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
    }
    metrics.connections_open.dec();
    drop(guard);
}

/// Binds one listening socket per worker on the same address (SO_REUSEPORT,
/// so the kernel spreads connections), and returns the bound address.
pub async fn bind_workers(
    addr: SocketAddr,
    workers: usize,
) -> anyhow::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    use anyhow::Context as _;
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let socket = if bound.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket
            .bind(bound)
            .with_context(|| format!("cannot listen on {addr}"))?;
        let listener = socket.listen(4096)?;
        bound = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok((listeners, bound))
}

/// Starts one thread per worker, each with its own single-threaded runtime:
/// a connection, its requests and their origin connections stay on one core,
/// with no work stealing and no cross-thread wake-ups.
pub fn spawn_workers(
    plain: Vec<std::net::TcpListener>,
    tls: Vec<std::net::TcpListener>,
    shared: &Arc<Shared>,
) -> anyhow::Result<()> {
    let mut tls = tls.into_iter();
    let batch = shared.runtime.load().config.server.batch_scheduling;
    for (index, plain) in plain.into_iter().enumerate() {
        let tls = tls.next();
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || {
                crate::worker::set_worker_index(index);
                if batch {
                    crate::worker::schedule_as_batch();
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::spawn(timer_anchor());
                    if let Some(tls) = tls.and_then(|l| TcpListener::from_std(l).ok()) {
                        tokio::spawn(serve_tls(tls, Arc::clone(&shared)));
                    }
                    match TcpListener::from_std(plain) {
                        Ok(listener) => serve_plain(listener, shared).await,
                        Err(e) => tracing::error!(error = %e, "cannot register a listener"),
                    }
                });
            })?;
    }
    Ok(())
}

/// Keeps a timer due within [`ANCHOR_EVERY`] on the worker's runtime. Tokio
/// wakes its driver through an eventfd (a system call, and a spare trip
/// through epoll) whenever a new timer is due before every armed one; each
/// request arms two (the head timeout, the origin's response timeout),
/// seconds away, and with this earlier timer always armed neither is ever
/// the first.
async fn timer_anchor() {
    let mut tick = tokio::time::interval(ANCHOR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Shorter than the timeouts a request arms by default (seconds); a
/// shorter configured timeout only costs the wake-up it cost before.
const ANCHOR_EVERY: Duration = Duration::from_millis(250);

/// Binds a listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
