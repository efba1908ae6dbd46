//! Reads the inspected part of the body (`inspect_body_bytes`) within its
//! time limit; the rest streams to the origin under `max_body_bytes`. The
//! part read is checked for protocol sanity (encoding, UTF-8, JSON).

use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;

use super::{Exchange, Flow, InspectedBody, RequestBody, Stage};
use crate::body::{Prefix, PrefixedBody, read_prefix};
use crate::context::Layer;
use crate::edge::protocol;

pub struct Body;

impl Stage for Body {
    const NAME: &'static str = "body";
    const LAYER: Layer = Layer::Edge;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow {
        let incoming = match std::mem::replace(&mut ex.body, RequestBody::None) {
            RequestBody::Unread(incoming) => incoming,
            RequestBody::Read(body) => {
                super::route::check_body_method(ex, &body.inspected);
                ex.body = RequestBody::Read(body);
                return Flow::after(&ex.ctx);
            }
            RequestBody::None => return Flow::Continue,
        };
        if incoming.is_end_stream() {
            ex.body = RequestBody::Read(InspectedBody::whole(bytes::Bytes::new()));
            return Flow::Continue;
        }
        let limits = &ex.rt.config.limits;
        let prefix = read_prefix(
            incoming,
            limits.inspect_body_bytes,
            limits.max_body_bytes,
            Duration::from_millis(limits.body_timeout_ms),
        )
        .await;
        let body = match prefix {
            Prefix::Complete(bytes) => InspectedBody::whole(bytes),
            Prefix::Partial(bytes, rest) => InspectedBody {
                streamed: Some(
                    PrefixedBody::new(bytes.clone(), rest, limits.max_body_bytes)
                        .map_err(Into::into)
                        .boxed(),
                ),
                inspected: bytes,
            },
            Prefix::TooLarge => {
                ex.ctx.refuse("body_too_large", "", 413);
                return Flow::Stop;
            }
            Prefix::TimedOut => {
                ex.ctx.refuse("body_timeout", "", 408);
                return Flow::Stop;
            }
            Prefix::Broken => {
                ex.ctx.refuse("body_malformed", "", 400);
                return Flow::Stop;
            }
        };
        if let Some(v) = protocol::check_body(
            &ex.parts.headers,
            &body.inspected,
            body.complete(),
            &ex.rt.config.protocol,
        ) {
            super::protocol::raise(&mut ex.ctx, v);
        }
        super::route::check_body_method(ex, &body.inspected);
        ex.body = RequestBody::Read(body);
        Flow::after(&ex.ctx)
    }
}
