//! An HTTP/1 client connection, plain or over TLS: each request head read
//! ([`crate::h1`]), answered by the request handler, and the answer
//! written, until the connection ends or switches protocols.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tokio::time::Instant;

use crate::Shared;
use crate::body::ClientBody;
use crate::h1::head::{Head, HeadError, HeadLimits};
use crate::h1::write::Asked;
use crate::h1::{ClientUpgrade, Connection, Stream, Upgraded};
use crate::http::respond::ProxyBody;
use crate::proxy::{self, HeadFacts};
use crate::runtime::Runtime;

/// Serves requests on `io` until the connection ends. `early`: bytes
/// already read from it; `deadline`: by when the first head must be in.
pub async fn serve<S: Stream + 'static>(
    io: S,
    early: BytesMut,
    mut deadline: Instant,
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
) {
    let mut conn = Connection::new(io, early);
    let mut headers = HeaderMap::new();
    loop {
        let rt = shared.runtime.load_full();
        let limits = &rt.config.limits;
        let head_limits = HeadLimits {
            max_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        let head = match conn.read_head(head_limits, deadline, headers).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(refused) => {
                let asked = Asked::of(&Method::GET, Version::HTTP_11, false);
                let _ = conn.send(refused_head(&shared, &rt, refused), asked).await;
                break;
            }
        };
        let asked = Asked::of(&head.parts.method, head.parts.version, head.keep_alive);
        let (request, facts, upgrade) = request_of(&conn, head);
        let response = match proxy::handle(Arc::clone(&shared), peer, tls, request, facts).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let Ok(sent) = conn.send(response, asked).await else {
            break;
        };
        headers = sent.headers;
        if switched && let Some(upgrade) = upgrade {
            conn.hand_over(upgrade);
            return;
        }
        let body_timeout = Duration::from_millis(limits.body_timeout_ms);
        // A declined switch was answered `connection: close` (see
        // `proxy::handle`), so `keep_alive` is false for it.
        if !sent.keep_alive || !conn.body_finished(body_timeout).await {
            break;
        }
        deadline = Instant::now() + Duration::from_millis(limits.header_timeout_ms);
    }
    if tls {
        // A TLS client is told the end (close_notify); over plain TCP the
        // kernel's FIN does it.
        conn.shutdown().await;
    }
}

/// The request for the pipeline, what its head said, and where the
/// connection goes if it asked to switch protocols.
fn request_of<S: Stream + 'static>(
    conn: &Connection<S>,
    head: Head,
) -> (
    Request<ClientBody>,
    HeadFacts,
    Option<tokio::sync::oneshot::Sender<Upgraded>>,
) {
    let Head {
        mut parts,
        framing,
        expect_continue,
        switch_asked,
        framing_conflict,
        ..
    } = head;
    let body = conn
        .start_body(framing, expect_continue)
        .map_or(ClientBody::Empty, ClientBody::H1);
    let upgrade = (switch_asked && parts.method != Method::CONNECT).then(|| {
        let (sender, upgrade) = ClientUpgrade::new();
        parts.extensions.insert(upgrade);
        sender
    });
    let facts = HeadFacts {
        framing_conflict,
        switch_asked,
    };
    (Request::from_parts(parts, body), facts, upgrade)
}

/// The gateway's answer to a head it could not parse, with a request id.
fn refused_head(shared: &Shared, rt: &Runtime, refused: HeadError) -> Response<ProxyBody> {
    let status = refused.status();
    let request_id = crate::http::respond::new_request_id();
    let template = &rt.config.block.bad_request;
    let body = rt.render(template, status, &request_id);
    shared.metrics.hot.count_request(
        crate::context::Action::Intercept(crate::context::Answer::BadRequest { status }),
        Some(crate::context::Layer::Edge),
        crate::context::TrafficClass::Normal,
    );
    tracing::debug!(%request_id, status, error = %refused, "request head refused");
    let mut answer =
        crate::http::respond::gateway_response(status, &template.content_type, body, &request_id);
    answer
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    answer
}
