//! One client connection speaking HTTP/1: heads read off it, request bodies
//! set up on it, answers written to it.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use http::Response;
use http::header::HeaderMap;
use http_body::Body as _;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::{BodyReader, Inbound, ReadBody};
use super::decode::Decoder;
use super::head::{self, BodyFraming, Head, HeadError, HeadLimits};
use super::write::{self, Asked, ResponseFraming};
use super::{Stream, Upgraded};
use crate::http::respond::ProxyBody;

/// A body chunk at most this large is copied next to the head (one write);
/// a larger one is written by itself.
const COALESCE: usize = 16 * 1024;
/// An unread request body of at most this many bytes is read and dropped
/// after the answer so that the connection can carry the next request.
const DRAIN_MAX: u64 = 64 * 1024;

/// The connection, shared with the body of the request on it.
pub struct Connection<S> {
    inbound: Arc<Mutex<Inbound<S>>>,
    /// The answer head being written (kept: one buffer per connection).
    out: Vec<u8>,
    /// By when the next head must be in: one timer per connection, moved
    /// on at each head (a timer made and dropped per request costs more).
    head_deadline: Pin<Box<tokio::time::Sleep>>,
}

/// An answer written out.
pub struct Sent {
    /// The answer's header map, cleared, for the next head.
    pub headers: HeaderMap,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

impl<S: Stream + 'static> Connection<S> {
    /// `early`: bytes already read from `io` (the connection's buffer from
    /// then on: not copied).
    pub fn new(io: S, early: BytesMut) -> Self {
        Connection {
            inbound: Arc::new(Mutex::new(Inbound::new(io, early))),
            out: Vec::with_capacity(1024),
            head_deadline: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// Reads until a head is complete: `Ok(None)` when the connection ends
    /// or the deadline passes first. `headers`: a map to reuse.
    pub async fn read_head(
        &mut self,
        limits: HeadLimits,
        deadline: Instant,
        headers: HeaderMap,
    ) -> Result<Option<Head>, HeadError> {
        let mut headers = Some(headers);
        // The bytes known not to end a head: a head sent in many small
        // pieces is parsed once it may be complete, not once per piece.
        let mut checked = 0;
        let (inbound, timer) = (&self.inbound, &mut self.head_deadline);
        let mut read = |cx: &mut std::task::Context<'_>| {
            let mut conn = inbound.lock();
            loop {
                if head::may_end(&conn.buf, checked, limits) {
                    let map = headers.take().unwrap_or_default();
                    match head::parse(&mut conn.buf, limits, map) {
                        Ok(None) => checked = conn.buf.len(),
                        done => return Poll::Ready(done),
                    }
                }
                match ready!(conn.poll_fill(cx)) {
                    Ok(n) if n > 0 => {}
                    _ => return Poll::Ready(Ok(None)),
                }
            }
        };
        // The timer is set only when the head is not in yet: a head that
        // came with the connection's first bytes costs no timer at all.
        let mut set = false;
        poll_fn(|cx| match read(cx) {
            Poll::Pending => {
                if !set {
                    timer.as_mut().reset(deadline);
                    set = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Ok(None)),
                    Poll::Pending => Poll::Pending,
                }
            }
            polled => polled,
        })
        .await
    }

    /// Sets up the body of the request whose head was read: its reader,
    /// unless it has none.
    pub fn start_body(&self, framing: BodyFraming, expect_continue: bool) -> Option<BodyReader> {
        self.inbound
            .lock()
            .start_body(Decoder::new(framing), expect_continue);
        (framing != BodyFraming::None).then(|| {
            let inbound: Arc<Mutex<dyn ReadBody>> = Arc::clone(&self.inbound) as _;
            BodyReader::new(inbound)
        })
    }

    /// Writes `response`; `Err` when the connection failed. A body not
    /// written whole (as framed) ends the connection (`keep_alive` false).
    pub async fn send(&mut self, response: Response<ProxyBody>, asked: Asked) -> io::Result<Sent> {
        let (parts, mut body) = response.into_parts();
        self.out.clear();
        let encoded = write::encode_head(
            &mut self.out,
            parts.status,
            &parts.headers,
            &body.size_hint(),
            asked,
        );
        let mut headers = parts.headers;
        headers.clear();
        let complete = match encoded.framing {
            ResponseFraming::NoBody => true,
            framing => self.send_body(&mut body, framing).await?,
        };
        self.flush().await?;
        Ok(Sent {
            headers,
            keep_alive: encoded.keep_alive && complete,
        })
    }

    /// Writes the body after the head, coalescing what is ready; whether the
    /// body was written whole (as framed).
    async fn send_body(
        &mut self,
        body: &mut ProxyBody,
        framing: ResponseFraming,
    ) -> io::Result<bool> {
        let mut left = match framing {
            ResponseFraming::Length(n) => n,
            _ => u64::MAX,
        };
        loop {
            // What the body has ready goes out with the head; the buffer is
            // written only when the body must wait.
            let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
            let frame = match polled {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    self.flush().await?;
                    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed");
                    return Ok(false);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    // Trailers are not sent; empty data frames say nothing.
                    _ => continue,
                },
            };
            if data.len() as u64 > left {
                // More than the length announced: the rest is never sent.
                return Ok(false);
            }
            left -= data.len() as u64;
            if framing == ResponseFraming::Chunked {
                write::chunk_size_line(&mut self.out, data.len());
            }
            if self.out.len() + data.len() <= COALESCE {
                self.out.extend_from_slice(&data);
            } else {
                self.flush().await?;
                write_all(&self.inbound, &data).await?;
            }
            if framing == ResponseFraming::Chunked {
                self.out.extend_from_slice(b"\r\n");
            }
        }
        match framing {
            ResponseFraming::Chunked => {
                self.out.extend_from_slice(write::LAST_CHUNK);
                Ok(true)
            }
            ResponseFraming::Length(_) => Ok(left == 0),
            _ => Ok(true),
        }
    }

    /// Writes out and empties the answer buffer.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            write_all(&self.inbound, &self.out).await?;
            self.out.clear();
        }
        poll_fn(|cx| Pin::new(&mut self.inbound.lock().io).poll_flush(cx)).await
    }

    /// Whether the request body was read to its end, reading and dropping a
    /// small rest the pipeline did not read (a refused request's body): the
    /// connection carries the next request only after it.
    pub async fn body_finished(&self, timeout: Duration) -> bool {
        // A body still held (an origin connection finishing with it) would
        // read the next request's bytes: the connection ends instead.
        if Arc::strong_count(&self.inbound) > 1 {
            return false;
        }
        {
            let conn = self.inbound.lock();
            if conn.body.is_done() {
                return true;
            }
            // A client waiting for `100 Continue` was never told to send it.
            if conn.body_failed
                || !conn.continue_owed.is_empty()
                || conn.body.remaining().is_none_or(|n| n > DRAIN_MAX)
            {
                return false;
            }
        }
        let drained = poll_fn(|cx| {
            let mut conn = self.inbound.lock();
            loop {
                match ready!(conn.poll_data(cx)) {
                    Some(Ok(_)) => {}
                    Some(Err(_)) => return Poll::Ready(false),
                    None => return Poll::Ready(true),
                }
            }
        });
        tokio::time::timeout(timeout, drained)
            .await
            .unwrap_or(false)
    }

    /// Gives the connection to the request that switched protocols.
    pub fn hand_over(self, upgrade: oneshot::Sender<Upgraded>) {
        let Ok(inbound) = Arc::try_unwrap(self.inbound) else {
            return;
        };
        let inbound = inbound.into_inner();
        let _ = upgrade.send(Upgraded {
            io: Box::new(inbound.io),
            early: inbound.buf.freeze(),
        });
    }

    /// Ends the connection's writing (a TLS client's close_notify).
    pub async fn shutdown(&self) {
        let shutdown = poll_fn(|cx| Pin::new(&mut self.inbound.lock().io).poll_shutdown(cx));
        let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
    }
}

async fn write_all<S: Stream>(inbound: &Mutex<Inbound<S>>, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    poll_fn(|cx| {
        let mut conn = inbound.lock();
        while written < bytes.len() {
            match ready!(Pin::new(&mut conn.io).poll_write(cx, &bytes[written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => written += n,
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}
