//! Request and response bodies of the proxy: the inspected prefix read
//! before forwarding, the bounded rest streamed after it, and metering.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::runtime::Runtime;

/// A request body as the client sends it: over HTTP/1 (the gateway's own
/// server) or HTTP/2 (hyper's).
pub enum ClientBody {
    Empty,
    H1(crate::h1::BodyReader),
    H2(Incoming),
}

/// Why a client's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error(transparent)]
    H1(#[from] crate::h1::BodyError),
    #[error(transparent)]
    H2(#[from] hyper::Error),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::H2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::H1(body) => body.is_end_stream(),
            ClientBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::H1(body) => body.size_hint(),
            ClientBody::H2(body) => body.size_hint(),
        }
    }
}

/// How reading the inspected prefix of a request body ended.
pub enum Prefix {
    /// The whole body, within the inspection limit.
    Complete(Bytes),
    /// The first bytes; the rest is still in the stream.
    Partial(Bytes, ClientBody),
    TooLarge,
    TimedOut,
    /// The client broke the framing or the connection.
    Broken,
}

/// Reads up to `inspect` bytes of `body` within `timeout`, refusing more than `max` in all.
pub async fn read_prefix(
    mut body: ClientBody,
    inspect: usize,
    max: u64,
    timeout: Duration,
) -> Prefix {
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while buf.len() < inspect {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Prefix::TimedOut,
            Ok(None) => return Prefix::Complete(buf.freeze()),
            Ok(Some(Err(_))) => return Prefix::Broken,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > max {
                        return Prefix::TooLarge;
                    }
                }
            }
        }
    }
    if body.is_end_stream() {
        Prefix::Complete(buf.freeze())
    } else {
        Prefix::Partial(buf.freeze(), body)
    }
}

/// The inspected prefix followed by the rest of the client's body, cut off
/// (an error toward the origin) past `remaining` more bytes.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: ClientBody,
    remaining: u64,
}

impl PrefixedBody {
    pub fn new(prefix: Bytes, rest: ClientBody, max: u64) -> Self {
        let remaining = max.saturating_sub(prefix.len() as u64);
        PrefixedBody {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
            remaining,
        }
    }
}

/// The body grew past the configured maximum while streaming.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("request body exceeds the configured maximum")]
    TooLarge,
    #[error(transparent)]
    Client(#[from] ClientBodyError),
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match Pin::new(&mut self.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        return Poll::Ready(Some(Err(StreamError::TooLarge)));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

/// A response body whose bytes are charged to the bandwidth quota.
pub struct Metered<B> {
    inner: B,
    runtime: Arc<Runtime>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, runtime: Arc<Runtime>) -> Self {
        Metered { inner, runtime }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.runtime.quota.charge_bytes(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
