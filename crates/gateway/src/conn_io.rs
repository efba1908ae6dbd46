//! The client connection as the HTTP/1 parser sees it: every byte read goes
//! through the framing scanner (which may percent-encode a request target
//! the parser would refuse), and the parser's own bare error answers are
//! replaced by the gateway's answer carrying a request id.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::edge::framing::{FramingScanner, parser_error_status};

/// Per-connection facts the request handler reads.
#[derive(Default)]
pub struct ConnFlags {
    /// A request head on this connection carried both framing headers.
    framing_conflict: AtomicBool,
    /// A request head asked to switch protocols; the framing scanner no
    /// longer reads the connection.
    switch_asked: AtomicBool,
}

impl ConnFlags {
    /// Whether a head on this connection was framed ambiguously; the request
    /// that reads it is refused and the connection closed after its answer.
    pub fn take_framing_conflict(&self) -> bool {
        self.framing_conflict.swap(false, Ordering::Relaxed)
    }

    /// Whether the request being answered asked to switch protocols (the
    /// connection is no longer scanned): unless it is answered by a switch,
    /// the connection closes after its answer.
    pub fn take_switch_asked(&self) -> bool {
        self.switch_asked.swap(false, Ordering::Relaxed)
    }
}

/// Renders the gateway's answer for a head the parser refused.
pub type ErrorPage = Box<dyn Fn(u16) -> Bytes + Send + Sync>;

pub struct ScannedIo<S> {
    inner: S,
    scanner: FramingScanner,
    flags: Arc<ConnFlags>,
    error_page: ErrorPage,
    /// A replacement answer still being written.
    pending: Option<Bytes>,
    /// Request bytes the scanner rewrote, not yet read by the parser.
    rewritten: Bytes,
    /// Bytes read off the connection before the parser started (the read
    /// that showed the client speaks), not yet scanned.
    early: Bytes,
}

impl<S> ScannedIo<S> {
    /// `early`: what was already read from `inner`; the parser reads it first.
    pub fn new(inner: S, early: Bytes, flags: Arc<ConnFlags>, error_page: ErrorPage) -> Self {
        ScannedIo {
            inner,
            scanner: FramingScanner::default(),
            flags,
            error_page,
            pending: None,
            rewritten: Bytes::new(),
            early,
        }
    }
}

impl<S: AsyncWrite + Unpin> ScannedIo<S> {
    /// Writes out the replacement answer; ready when nothing is pending.
    fn drive_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.pending.as_mut() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = pending.split_to(n);
            if pending.is_empty() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Swallows a parser error answer in `head`, queuing ours instead.
    fn replace_parser_error(&mut self, head: &[u8]) -> bool {
        match parser_error_status(head) {
            Some(status) => {
                self.pending = Some((self.error_page)(status));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ScannedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.rewritten.is_empty() {
            this.drain_rewritten(buf);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if this.early.is_empty() {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        } else {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early.split_to(n));
        }
        if let Some(rewritten) = this.scanner.feed(&buf.filled()[before..]) {
            // The parser reads the rewritten bytes instead (they may be longer).
            buf.set_filled(before);
            this.rewritten = Bytes::from(rewritten);
            this.drain_rewritten(buf);
        }
        if this.scanner.take_conflict() {
            this.flags.framing_conflict.store(true, Ordering::Relaxed);
        }
        if this.scanner.take_switch_asked() {
            this.flags.switch_asked.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> ScannedIo<S> {
    /// Moves as much of the rewritten bytes as fits into `buf`.
    fn drain_rewritten(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.rewritten.len().min(buf.remaining());
        buf.put_slice(&self.rewritten.split_to(n));
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ScannedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drive_pending(cx))?;
        // The replacement is written by the flush that follows every write.
        if self.replace_parser_error(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drive_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && self.replace_parser_error(first)
        {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drive_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drive_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
