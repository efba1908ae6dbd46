//! The origin's response body, read from its connection as the client's
//! connection asks for it; the connection goes back to the pool once the
//! body is read to its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::wire::BodyFraming;
use super::{Conn, OriginError, OriginPool};
use crate::http::chunked::{ChunkedDecoder, Decoded};

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// `101 Switching Protocols`: the connection is the tunnel's.
    Switched,
    Done,
}

pub struct OriginBody {
    state: State,
    conn: Option<Conn>,
    pool: Arc<OriginPool>,
    /// The connection may carry another request after this body.
    reusable: bool,
}

impl OriginBody {
    pub(super) fn new(
        pool: Arc<OriginPool>,
        conn: Conn,
        framing: BodyFraming,
        reusable: bool,
        switched: bool,
    ) -> Self {
        let state = match (switched, framing) {
            (true, _) => State::Switched,
            (false, BodyFraming::Empty) => State::Done,
            (false, BodyFraming::Length(n)) => State::Length(n),
            (false, BodyFraming::Chunked) => State::Chunked(ChunkedDecoder::default()),
            (false, BodyFraming::UntilClose) => State::UntilClose,
        };
        let mut body = OriginBody {
            state,
            conn: Some(conn),
            pool,
            reusable: reusable && !switched,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The origin connection after `101 Switching Protocols`, with the
    /// bytes read past the head.
    pub fn into_switched(mut self) -> Option<(tokio::net::TcpStream, bytes::BytesMut)> {
        match self.state {
            State::Switched => self.conn.take().map(Conn::into_parts),
            _ => None,
        }
    }

    /// The body was read to its end: the connection goes back to the pool
    /// when nothing follows the body in its buffer.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.pool.release(conn);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, OriginError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.state {
                State::Done | State::Switched => return Poll::Ready(None),
                State::Length(0) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                State::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                State::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(Decoded::Done) => {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return Poll::Ready(Some(Err(self.fail(e.into())))),
                },
                State::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
            let read = match self.conn.as_mut() {
                Some(conn) => ready!(conn.poll_fill(cx)),
                None => return Poll::Ready(None),
            };
            match read {
                Ok(0) if matches!(self.state, State::UntilClose) => {
                    self.state = State::Done;
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let e = OriginError::Malformed("response body cut short");
                    return Poll::Ready(Some(Err(self.fail(e))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(e.into())))),
            }
        }
    }

    /// The connection is out of step with the origin: it is closed. The
    /// client's connection closes too (its answer's head may be out), so
    /// the log says why.
    fn fail(&mut self, error: OriginError) -> OriginError {
        tracing::warn!(origin = %self.pool.address, error = %error, "origin response body failed; closing the client connection");
        self.state = State::Done;
        self.conn = None;
        error
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, OriginError>>> {
        self.get_mut()
            .poll_next(cx)
            .map(|next| next.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Switched | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Switched => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
