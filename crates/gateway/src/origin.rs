//! The origin side of the proxy: a pool of keep-alive HTTP/1.1 connections
//! per worker and origin, and one exchange on a connection.
//!
//! The request task itself writes the request (head and whole body in one
//! system call) and reads the response head, and the client connection's
//! task reads the response body as it sends it: no task and no channel of
//! the origin connection's own. A general-purpose client (one task per
//! connection, requests and bodies passed through channels) cost several
//! task switches and a pool lock per request, a third of the proxy's own
//! CPU.

mod body;
pub mod wire;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::OriginBody;
pub use wire::{HeadWriter, RequestFraming};

use crate::http::respond::ProxyBody;

/// Why an exchange with the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("cannot connect to the origin: {0}")]
    Connect(std::io::Error),
    #[error("connecting to the origin timed out")]
    ConnectTimeout,
    /// The connection ended before the first byte of a response.
    #[error("the origin closed the connection before answering")]
    Closed,
    #[error("origin connection: {0}")]
    Io(#[from] std::io::Error),
    /// No response head by the deadline.
    #[error("the origin did not answer in time")]
    Timeout,
    #[error("malformed response from the origin: {0}")]
    Malformed(&'static str),
    #[error("the request body failed: {0}")]
    RequestBody(crate::http::respond::BoxError),
}

impl From<crate::http::chunked::ChunkError> for OriginError {
    fn from(e: crate::http::chunked::ChunkError) -> Self {
        OriginError::Malformed(e.0)
    }
}

/// Response body reads are at least this large.
const READ_CHUNK: usize = 16 * 1024;

/// One origin's idle connections on one worker.
pub struct OriginPool {
    /// `host:port` to connect to.
    address: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Most recently used at the back.
    idle: Mutex<VecDeque<Idle>>,
    sweeper: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection to the origin with the bytes read from it and not yet used.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// The deadline of the exchange under way: one timer per connection,
    /// moved on at each exchange (a timer made and dropped per request
    /// costs more).
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl OriginPool {
    pub fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        let address = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        OriginPool {
            address,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
            sweeper: AtomicBool::new(false),
        }
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock();
        while let Some(Idle { conn, since }) = idle.pop_back() {
            if since.elapsed() < self.idle_timeout && conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, OriginError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| OriginError::ConnectTimeout)?
            .map_err(OriginError::Connect)?;
        stream.set_nodelay(true).map_err(OriginError::Connect)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        // Keep-alive probes only find dead origins sooner; a socket without them still works.
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            deadline: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
        })
    }

    /// Takes back a connection whose exchange ended cleanly.
    pub(crate) fn release(self: &Arc<Self>, conn: Conn) {
        if self.max_idle == 0 {
            return; // `pool_max_idle = 0`: no connection is kept
        }
        let mut idle = self.idle.lock();
        while idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        if !self.sweeper.load(Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.sweeper.swap(true, Ordering::Relaxed)
        {
            runtime.spawn(sweep(Arc::downgrade(self)));
        }
    }

    fn drop_expired(&self) {
        let mut idle = self.idle.lock();
        while idle
            .front()
            .is_some_and(|i| i.since.elapsed() >= self.idle_timeout)
        {
            idle.pop_front();
        }
    }
}

/// Closes connections idle past the timeout even when no request comes,
/// so that the gateway, not the origin, ends them; stops with the pool.
async fn sweep(pool: Weak<OriginPool>) {
    let every = match pool.upgrade() {
        Some(pool) => (pool.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.drop_expired(),
            None => return,
        }
    }
}

impl Conn {
    /// Whether the origin has neither closed the idle connection nor sent
    /// anything on it. Only a socket the reactor saw become readable costs
    /// a read; usually the answer is in its readiness.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Reads more of the response into the buffer; 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        poll_fill(&mut self.stream, &mut self.buf, cx)
    }

    /// The connection itself and what was read past the response head, for
    /// a tunnel after `101 Switching Protocols`.
    pub(crate) fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }
}

/// Reads more from `reader` into `buf`; 0 at the end of the stream.
fn poll_fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(std::pin::Pin::new(reader), cx, buf)
}

/// The request body as it goes to the origin.
pub enum Outbound {
    /// In hand: written with the head, and sent again on a new connection
    /// if a pooled one turns out closed.
    Whole(Bytes),
    /// Streamed from the client after the head.
    Stream(ProxyBody, RequestFraming),
}

/// Sends the request (`head` from a [`HeadWriter`]) and reads the response
/// head, which must be in by `deadline` ([`OriginError::Timeout`]). A
/// request whose body is in hand is sent once more, on a new connection,
/// when a pooled connection was closed under it (idempotent methods) or a
/// connection could not be made.
pub async fn send(
    pool: &Arc<OriginPool>,
    method: &Method,
    head: Vec<u8>,
    body: Outbound,
    deadline: tokio::time::Instant,
) -> Result<Response<OriginBody>, OriginError> {
    // A connection made here counts against the deadline too.
    let connect = || async {
        tokio::time::timeout_at(deadline, pool.connect())
            .await
            .unwrap_or(Err(OriginError::Timeout))
    };
    let (conn, reused) = match pool.checkout() {
        Some(conn) => (conn, true),
        None => (connect().await?, false),
    };
    let whole = match &body {
        Outbound::Whole(bytes) => Some(bytes.clone()),
        Outbound::Stream(..) => None,
    };
    match exchange(pool, conn, method, &head, body, deadline).await {
        Err(OriginError::Closed) if reused && method.is_idempotent() && whole.is_some() => {
            tracing::debug!(origin = %pool.address, "pooled origin connection was closed; retrying once");
            let conn = connect().await?;
            let body = Outbound::Whole(whole.unwrap_or_default());
            exchange(pool, conn, method, &head, body, deadline).await
        }
        result => result,
    }
}

async fn exchange(
    pool: &Arc<OriginPool>,
    mut conn: Conn,
    method: &Method,
    head: &[u8],
    body: Outbound,
    deadline: tokio::time::Instant,
) -> Result<Response<OriginBody>, OriginError> {
    crate::worker::end_of_turn().await;
    conn.deadline.as_mut().reset(deadline);
    let (mut head, cut_short) = {
        let Conn {
            stream,
            buf,
            deadline: timer,
        } = &mut conn;
        let answered = async {
            match body {
                Outbound::Whole(bytes) => {
                    write_whole(stream, head, &bytes).await?;
                    Ok((read_head(stream, buf).await?, false))
                }
                Outbound::Stream(body, framing) => {
                    write_or_closed(stream.write_all(head).await)?;
                    stream_and_read(stream, buf, body, framing).await
                }
            }
        };
        let mut answered = std::pin::pin!(answered);
        std::future::poll_fn(|cx| match answered.as_mut().poll(cx) {
            Poll::Pending if timer.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(OriginError::Timeout))
            }
            polled => polled,
        })
        .await?
    };
    let (framing, reusable) = wire::response_framing(method, &mut head)?;
    let reusable = reusable && !cut_short;
    let mut response = Response::new(OriginBody::new(
        Arc::clone(pool),
        conn,
        framing,
        reusable,
        head.status == http::StatusCode::SWITCHING_PROTOCOLS,
    ));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// A write that fails on a connection the origin closed is `Closed`: the
/// origin saw nothing of the request.
fn write_or_closed(result: std::io::Result<()>) -> Result<(), OriginError> {
    result.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => OriginError::Closed,
        _ => OriginError::Io(e),
    })
}

/// Head and body in one write when the body is small.
async fn write_whole(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> Result<(), OriginError> {
    const JOIN_BELOW: usize = 16 * 1024;
    if body.is_empty() {
        return write_or_closed(stream.write_all(head).await);
    }
    if body.len() < JOIN_BELOW {
        let mut joined = Vec::with_capacity(head.len() + body.len());
        joined.extend_from_slice(head);
        joined.extend_from_slice(body);
        return write_or_closed(stream.write_all(&joined).await);
    }
    write_or_closed(stream.write_all(head).await)?;
    stream.write_all(body).await.map_err(OriginError::Io)
}

/// Streams the body while watching for the answer: an origin may answer
/// (413, 401) and stop reading before the body ends, and its answer is the
/// client's. True with the head when the body was cut short (the
/// connection is not reused).
async fn stream_and_read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    body: ProxyBody,
    framing: RequestFraming,
) -> Result<(wire::ResponseHead, bool), OriginError> {
    let mut body = body;
    let answered = {
        let (mut reader, mut writer) = stream.split();
        let writing = write_stream(&mut writer, &mut body, framing);
        let reading = read_head(&mut reader, buf);
        tokio::pin!(writing, reading);
        tokio::select! {
            biased;
            head = &mut reading => head.map(|head| (head, true)),
            written = &mut writing => match written {
                Ok(()) => reading.await.map(|head| (head, false)),
                Err(OriginError::RequestBody(e)) => Err(OriginError::RequestBody(e)),
                Err(_) => reading.await.map(|head| (head, true)),
            },
        }
    };
    if matches!(answered, Ok((_, true))) {
        tokio::spawn(linger(body));
    }
    answered
}

/// How long the rest of a request body the origin did not wait for is
/// still read (nginx's `lingering_time`).
const LINGER: Duration = Duration::from_secs(5);

/// Reads and drops what the client still sends of a body the origin
/// answered before its end, for at most [`LINGER`] (and never past the body
/// limit, which ends the body): closing with unread bytes would reset the
/// connection, and the client would lose the answer it is being sent.
async fn linger(mut body: ProxyBody) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

async fn write_stream<W: AsyncWrite + Unpin>(
    stream: &mut W,
    body: &mut ProxyBody,
    framing: RequestFraming,
) -> Result<(), OriginError> {
    let chunked = framing == RequestFraming::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(OriginError::RequestBody)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            stream
                .write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .await?;
            stream.write_all(&data).await?;
            stream.write_all(b"\r\n").await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Reads the final response head, skipping interim (1xx) answers other
/// than `101 Switching Protocols`.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> Result<wire::ResponseHead, OriginError> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            if let Some(head) = wire::parse_head(buf)? {
                if head.status.is_informational()
                    && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Ok(head);
            }
        }
        match std::future::poll_fn(|cx| poll_fill(reader, buf, cx)).await {
            Ok(0) if !received => return Err(OriginError::Closed),
            Ok(0) => return Err(OriginError::Malformed("response ended in its head")),
            Ok(_) => {}
            Err(e) if !received && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(OriginError::Closed);
            }
            Err(e) => return Err(OriginError::Io(e)),
        }
    }
}
