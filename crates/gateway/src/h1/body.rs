//! The client connection while a request is on it, and the request body
//! read off it as the pipeline asks for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};

use super::decode::Decoder;
use crate::http::chunked::{ChunkError, Decoded};

/// Reads off the connection are at least this large.
const READ_SIZE: usize = 8 * 1024;

/// What a client that sent `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The client connection: its stream, the bytes read and not yet used, and
/// where the current request's body is. Shared by the connection's task
/// (heads, answers) and the request body (the pipeline reads it); the two
/// never use it at the same time, so its lock is never contended.
pub(super) struct Inbound<S> {
    pub io: S,
    pub buf: BytesMut,
    pub body: Decoder,
    /// Bytes of `100 Continue` owed before the body is read (none when the
    /// client did not ask for it, or once they are written).
    pub continue_owed: &'static [u8],
    /// The body's framing broke or its connection failed.
    pub body_failed: bool,
}

impl<S> Inbound<S> {
    pub fn new(io: S, early: BytesMut) -> Self {
        Inbound {
            io,
            buf: early,
            body: Decoder::Done,
            continue_owed: &[],
            body_failed: false,
        }
    }

    /// Sets up the body of a new request.
    pub fn start_body(&mut self, body: Decoder, expect_continue: bool) {
        self.continue_owed = if expect_continue && !body.is_done() {
            CONTINUE
        } else {
            &[]
        };
        self.body = body;
        self.body_failed = false;
    }
}

impl<S: AsyncRead + Unpin> Inbound<S> {
    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Framing(#[from] ChunkError),
    #[error("the connection ended within the request body")]
    Truncated,
    #[error("request body: {0}")]
    Io(#[from] std::io::Error),
}

/// A body read through the connection's lock, whatever the stream's type.
pub(super) trait ReadBody: Send {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>>;
    fn remaining(&self) -> Option<u64>;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ReadBody for Inbound<S> {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        while !self.continue_owed.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.continue_owed))?;
            if n == 0 {
                return Poll::Ready(Some(Err(std::io::Error::from(
                    std::io::ErrorKind::WriteZero,
                )
                .into())));
            }
            self.continue_owed = &self.continue_owed[n..];
        }
        if self.body_failed {
            return Poll::Ready(Some(Err(BodyError::Truncated)));
        }
        loop {
            let decoded = self
                .body
                .decode(&mut self.buf)
                .inspect_err(|_| self.body_failed = true)?;
            match decoded {
                Decoded::Data(data) => return Poll::Ready(Some(Ok(data))),
                Decoded::Done => return Poll::Ready(None),
                Decoded::NeedMore => {}
            }
            let read = ready!(self.poll_fill(cx));
            if !matches!(read, Ok(n) if n > 0) {
                self.body_failed = true;
                return Poll::Ready(Some(Err(read
                    .err()
                    .map_or(BodyError::Truncated, BodyError::Io))));
            }
        }
    }

    fn remaining(&self) -> Option<u64> {
        self.body.remaining()
    }
}

/// The body of a request on an HTTP/1 connection.
pub struct BodyReader {
    inbound: Arc<Mutex<dyn ReadBody>>,
}

impl BodyReader {
    pub(super) fn new(inbound: Arc<Mutex<dyn ReadBody>>) -> Self {
        BodyReader { inbound }
    }
}

impl Body for BodyReader {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = self.inbound.lock().poll_data(cx);
        polled.map(|data| data.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.inbound.lock().remaining() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.inbound.lock().remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
