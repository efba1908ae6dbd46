//! HTTP/1 on the client connection: request heads parsed in place and
//! judged for their framing ([`head`]), request bodies decoded as the
//! pipeline reads them ([`BodyReader`]), answer heads with the gateway's
//! own framing ([`write`]), and the connection handed to a request that
//! switched protocols. `server::http1` runs a connection with them.
//!
//! A general-purpose server hid what a security gateway must see (a head
//! framed by both `Content-Length` and `Transfer-Encoding` was repaired
//! before the pipeline saw it), refused request targets the web sends
//! (`?q=你好`), and cost the largest part of the proxy's own CPU on small
//! requests. HTTP/2 stays on hyper.

mod body;
mod conn;
mod decode;
pub mod head;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

pub use body::{BodyError, BodyReader};
pub use conn::{Connection, Sent};

/// A client connection's byte stream: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// The client connection after `101 Switching Protocols`, with the bytes
/// the client sent past its head.
pub struct Upgraded {
    pub io: Box<dyn Stream>,
    pub early: Bytes,
}

/// In the extensions of a request that asked to switch protocols: the
/// connection, once the switch is answered. (Extensions are `Clone`; the
/// first to ask gets the connection.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl ClientUpgrade {
    /// The upgrade a request will carry, and where its connection is sent.
    pub fn new() -> (oneshot::Sender<Upgraded>, Self) {
        let (sender, receiver) = oneshot::channel();
        (sender, ClientUpgrade(Arc::new(Mutex::new(Some(receiver)))))
    }

    pub async fn connection(self) -> Option<Upgraded> {
        let receiver = self.0.lock().take()?;
        receiver.await.ok()
    }
}
