//! Protocol sanity of the head, then the canonical request: one authority
//! and one normalised path that every later stage matches and the origin
//! receives. `OPTIONS *` is answered here; `CONNECT` is refused.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Uri};

use super::{Exchange, Flow, Stage, Target};
use crate::context::{Demand, Layer, RequestContext};
use crate::edge::protocol;
use crate::http::canonical::{canonical_authority, canonical_path};
use crate::http::respond::gateway_response;

pub struct Protocol;

impl Stage for Protocol {
    const NAME: &'static str = "protocol";
    const LAYER: Layer = Layer::Edge;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        if ex.parts.method == Method::CONNECT {
            ex.ctx
                .refuse("connect_method", "CONNECT is not proxied", 405);
            return Flow::Stop;
        }
        if ex.parts.uri == "*" {
            return asterisk(ex);
        }
        let raw = ex.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let config = &ex.rt.config;
        if let Some(v) = protocol::check_head(
            ex.parts.method.as_str(),
            raw,
            &ex.parts.headers,
            &config.protocol,
            &config.limits,
        ) {
            raise(&mut ex.ctx, v);
            return Flow::Stop;
        }
        match canonical_target(ex) {
            Ok(target) => {
                rewrite_uri(ex, &target);
                ex.target = target;
                Flow::Continue
            }
            Err(error) => {
                ex.ctx.refuse(error.code(), error.to_string(), 400);
                Flow::Stop
            }
        }
    }
}

fn canonical_target(ex: &Exchange<'_>) -> Result<Target, crate::http::canonical::CanonicalError> {
    let default_port = if ex.tls { 443 } else { 80 };
    let authority = canonical_authority(
        ex.parts.uri.authority().map(|a| a.as_str()),
        ex.parts
            .headers
            .get_all(header::HOST)
            .iter()
            .map(HeaderValue::as_bytes),
        default_port,
    )?;
    // A request that names no host is refused (RFC 9112 3.2 for HTTP/1.1;
    // for HTTP/1.0 too): a policy or a rate limit bound to a host could not
    // be held to it, and the origin would route it to a default host.
    let authority = authority.ok_or(crate::http::canonical::CanonicalError::HostMissing)?;
    let path = canonical_path(ex.parts.uri.path())?;
    Ok(Target {
        authority,
        path,
        query: ex.parts.uri.query().map(str::to_owned),
    })
}

/// A protocol violation as a signal: an evasion is refused as an attack
/// (`[block.blocked]`), anything else as a malformed request.
pub(super) fn raise(ctx: &mut RequestContext, v: protocol::Violation) {
    if v.status == 403 {
        ctx.add(v.name, v.evidence, Demand::Block);
    } else {
        ctx.refuse(v.name, v.evidence, v.status);
    }
}

/// From here on `parts.uri` is the origin-form target the origin receives.
fn rewrite_uri(ex: &mut Exchange<'_>, target: &Target) {
    if !target.path.rewritten && ex.parts.uri.authority().is_none() {
        return;
    }
    if let Ok(uri) = target.forwarded().parse::<Uri>() {
        ex.parts.uri = uri;
    }
}

/// `OPTIONS *` asks about the server itself: answered here.
fn asterisk(ex: &mut Exchange<'_>) -> Flow {
    if ex.parts.method != Method::OPTIONS {
        ex.ctx.refuse("bad_target", "* outside OPTIONS", 400);
        return Flow::Stop;
    }
    let allow = ex.rt.config.protocol.allowed_methods.join(", ");
    let mut response = gateway_response(204, "text/plain", Bytes::new(), &ex.ctx.request_id);
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    ex.answer = Some(response);
    Flow::Stop
}
