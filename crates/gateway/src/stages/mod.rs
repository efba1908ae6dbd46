//! The stages of the request pipeline, one module each. A stage reads the
//! [`Exchange`] (the request, its canonical form, what earlier stages found)
//! and adds signals to its context; it never answers the client itself,
//! except a stage that serves the gateway's own endpoints, which leaves its
//! answer in [`Exchange::answer`]. The order is declared once, in the
//! `pipeline` module above this one.

pub mod bands;
pub mod body;
pub mod classify;
pub mod detect;
pub mod framing;
pub mod identify;
pub mod ip;
pub mod jwt;
pub mod limits;
pub mod portal;
pub mod protocol;
pub mod quota;
pub mod risk;
pub mod route;
pub mod rules;
pub mod trust;

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http::request::Parts;

use crate::context::{Layer, RequestContext};
use crate::http::canonical::CanonicalPath;
use crate::http::respond::ProxyBody;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// What a stage tells the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop the pipeline: a refusal was demanded, or an answer written.
    Stop,
}

impl Flow {
    /// `Stop` when a signal of `ctx` demands more than evidence.
    pub fn after(ctx: &RequestContext) -> Flow {
        if ctx.is_stopped() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// One stage of the pipeline.
#[allow(async_fn_in_trait)] // stages are dispatched statically by the runner
pub trait Stage {
    /// Its name in metrics, events and docs.
    const NAME: &'static str;
    const LAYER: Layer;
    /// Clients on the allow list skip it.
    const SKIPPED_WHEN_TRUSTED: bool = false;
    /// It runs on core URLs only (a policy matched).
    const CORE_URLS_ONLY: bool = false;

    async fn run(&self, ex: &mut Exchange<'_>) -> Flow;
}

/// The canonical request target: what every matcher reads.
#[derive(Debug, Clone)]
pub struct Target {
    /// The one authority (lower case, no trailing dot, no default port);
    /// empty only before the protocol stage (a request naming none is
    /// refused there).
    pub authority: String,
    pub path: CanonicalPath,
    /// The query as the client sent it (without `?`).
    pub query: Option<String>,
}

impl Target {
    /// The target before the protocol stage made it canonical: empty (the
    /// raw target is in `Exchange::parts`), so that it costs nothing.
    pub fn provisional() -> Target {
        Target {
            authority: String::new(),
            path: CanonicalPath {
                matched: String::new(),
                forwarded: String::new(),
                encoded_slash: false,
                rewritten: false,
            },
            query: None,
        }
    }

    /// The origin-form target sent to the origin.
    pub fn forwarded(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path.forwarded),
            None => self.path.forwarded.clone(),
        }
    }

    /// The canonical path matchers compare with.
    pub fn path(&self) -> &str {
        &self.path.matched
    }
}

/// The request's origin-form target as it came (shared, not copied).
pub fn raw_target(uri: &http::Uri) -> http::uri::PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
}

/// A request's headers as (name, value) pairs.
pub type HeaderPairs<'a> = smallvec::SmallVec<[(&'a str, &'a [u8]); 16]>;

/// The request body as the pipeline has it.
pub enum RequestBody {
    /// Not read yet.
    Unread(crate::body::ClientBody),
    /// The inspected prefix was read.
    Read(InspectedBody),
    /// No body to forward (the request was refused before it was read).
    None,
}

/// A request body after the body stage.
pub struct InspectedBody {
    /// The part read and inspected before forwarding.
    pub inspected: Bytes,
    /// The whole body as it streams to the origin (`inspected`, then the
    /// rest), when `inspected` is not all of it.
    pub streamed: Option<ProxyBody>,
}

impl InspectedBody {
    /// A body read whole within the inspection limit.
    pub fn whole(inspected: Bytes) -> Self {
        InspectedBody {
            inspected,
            streamed: None,
        }
    }

    /// Whether `inspected` is the whole body.
    pub fn complete(&self) -> bool {
        self.streamed.is_none()
    }
}

/// One request on its way through the pipeline.
pub struct Exchange<'a> {
    pub shared: &'a Shared,
    pub rt: &'a Arc<Runtime>,
    pub ctx: RequestContext,
    /// The request head. Once the protocol stage ran, `parts.uri` is the
    /// canonical origin-form target (what the origin receives).
    pub parts: Parts,
    pub target: Target,
    /// The target as the client sent it (a shared reference to the bytes
    /// parsed): detection reads its encodings too.
    pub raw_target: http::uri::PathAndQuery,
    pub body: RequestBody,
    /// An answer written by a stage (the gateway's own endpoints).
    pub answer: Option<Response<ProxyBody>>,
    /// The request arrived over TLS.
    pub tls: bool,
    /// The head was framed by both `Content-Length` and `Transfer-Encoding`
    /// (see `h1::head`).
    pub framing_conflict: bool,
}

impl RequestBody {
    /// The inspected bytes, and whether they are the whole body.
    pub fn inspected(&self) -> (&[u8], bool) {
        match self {
            RequestBody::Read(body) => (&body.inspected, body.complete()),
            RequestBody::Unread(_) | RequestBody::None => (&[], true),
        }
    }

    /// The whole body, when it was read within the inspection limit.
    pub fn whole(&self) -> Option<&[u8]> {
        match self.inspected() {
            (bytes, true) => Some(bytes),
            (_, false) => None,
        }
    }
}

impl<'a> Exchange<'a> {
    /// The policy of the core URL the request is on, once the route stage
    /// found one.
    pub fn policy(&self) -> Option<&'a crate::policy::Policy> {
        let rt: &'a Runtime = self.rt;
        self.ctx.policy.and_then(|i| rt.policies.get(i))
    }

    /// The headers as (name, value) pairs, for detection and custom rules;
    /// on the stack for the usual few headers.
    pub fn header_pairs(&self) -> HeaderPairs<'_> {
        self.parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect()
    }
}
