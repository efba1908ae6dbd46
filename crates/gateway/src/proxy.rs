//! One request end to end: run the pipeline, let the policy step decide,
//! then answer from the gateway or forward to the origin, and record the
//! decision.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::answers::intercept;
use crate::body::ClientBody;
use crate::body::Metered;
use crate::client_ip::{client_ip, ip_text};
use crate::context::{Action, Answer, Demand, Event, Layer, RequestContext};
use crate::events::{PassNote, PassRoute};
use crate::http::cors;
use crate::http::headers::{
    self as hdr, ForwardingNames, HopByHop, X_FORWARDED_FOR, upgrade_protocol, without_cookies,
};
use crate::http::respond::{
    ProxyBody, X_REQUEST_ID, empty_body, full_body, json_error, new_request_id,
};
use crate::origin::{self, HeadWriter, OriginError, Outbound, RequestFraming};
use crate::pipeline;
use crate::runtime::Runtime;
use crate::shared::Shared;
use crate::stages::{Exchange, InspectedBody, RequestBody, Target, raw_target};
use crate::trust::DEVICE_COOKIE;

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What an HTTP/1 request head said about its connection (nothing, over HTTP/2).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadFacts {
    /// Framed by both `Content-Length` and `Transfer-Encoding`: refused,
    /// and the connection closes after the answer.
    pub framing_conflict: bool,
    /// Asked to switch protocols: unless the answer switches, the
    /// connection closes after it.
    pub switch_asked: bool,
}

/// Answers one request. Never fails: every problem becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    req: Request<ClientBody>,
    head: HeadFacts,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let rt = shared.runtime.load_full();
    let (parts, body) = req.into_parts();
    let mut ex = begin(
        &shared,
        &rt,
        peer,
        parts,
        RequestBody::Unread(body),
        tls,
        head.framing_conflict,
    );
    pipeline::run(&mut ex).await;
    let (action, layer) = ex.ctx.decide();
    let mut response = respond(&mut ex, action).await;
    let declined_switch = head.switch_asked && response.status() != StatusCode::SWITCHING_PROTOCOLS;
    if ex.framing_conflict || declined_switch {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    record(ex, action, layer, &response, started);
    crate::worker::end_of_turn().await;
    Ok(response)
}

/// The exchange of a request whose head is in hand, before any stage ran.
pub(crate) fn begin<'a>(
    shared: &'a Shared,
    rt: &'a Arc<Runtime>,
    peer: SocketAddr,
    parts: Parts,
    body: RequestBody,
    tls: bool,
    framing_conflict: bool,
) -> Exchange<'a> {
    let ip = client_ip(
        peer.ip(),
        &parts.headers,
        &rt.trusted_proxies,
        &rt.forwarded,
    );
    let mut ctx = RequestContext::new(new_request_id(), ip, peer.ip());
    ctx.via_trusted_proxy = rt.trusted_proxies.contains(peer.ip());
    let raw_target = raw_target(&parts.uri);
    Exchange {
        shared,
        rt,
        ctx,
        target: Target::provisional(),
        raw_target,
        parts,
        body,
        answer: None,
        tls,
        framing_conflict,
    }
}

/// The answer to the request: a stage's own, the gateway's refusal, or the
/// origin's.
async fn respond(ex: &mut Exchange<'_>, action: Action) -> Response<ProxyBody> {
    let mut response = match (ex.answer.take(), action) {
        (Some(answer), _) => answer,
        (None, Action::Pass) => match std::mem::replace(&mut ex.body, RequestBody::None) {
            RequestBody::Read(body) => {
                let response = forward(ex, body).await;
                return mask_leaks(ex, response).await;
            }
            // A pass without a read body: the pipeline stopped without a refusal.
            _ => intercept(
                ex.rt,
                &ex.ctx,
                &ex.parts.headers,
                Answer::BadRequest { status: 400 },
            ),
        },
        (None, Action::Intercept(answer)) => intercept(ex.rt, &ex.ctx, &ex.parts.headers, answer),
    };
    if let Some(origin) = cors::allowed_origin(&ex.parts.headers, &ex.rt.trust.cors_origins) {
        cors::expose(origin, &mut response);
    }
    response
}

/// Error pages bigger than this pass unchecked (and unbuffered).
const MAX_MASKED_PAGE: u64 = 256 * 1024;

/// Replaces an origin error page that leaks internals with a generic error
/// carrying the request id; the kind of leak goes into the event.
async fn mask_leaks(ex: &mut Exchange<'_>, response: Response<ProxyBody>) -> Response<ProxyBody> {
    use http_body::Body as _;
    let rt = ex.rt;
    let status = response.status().as_u16();
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_MASKED_PAGE);
    let enabled = rt.config.detect.mask_error_pages && rt.detection(ex.target.path()).is_some();
    if status < 400 || !small || !enabled {
        return response;
    }
    let (head, body) = response.into_parts();
    // The size hint's upper bound is the origin's Content-Length, which the
    // origin body enforces.
    let Ok(collected) = body.collect().await else {
        return json_error(502, "origin response failed", &ex.ctx.request_id);
    };
    let bytes = collected.to_bytes();
    match portcullis_detect::leaks_internals(status, &bytes) {
        Some(kind) => {
            ex.ctx
                .add("error_page_leak", format!("{kind:?}"), Demand::Tag);
            json_error(status, "internal error", &ex.ctx.request_id)
        }
        None => Response::from_parts(head, full_body(bytes)),
    }
}

/// Sends the request to its origin: the canonical target, the gateway's
/// own forwarding and risk headers, and the body (inspected prefix, then
/// the streamed rest).
async fn forward(ex: &mut Exchange<'_>, body: InspectedBody) -> Response<ProxyBody> {
    let (shared, rt) = (ex.shared, ex.rt);
    let mut out = match outgoing(ex) {
        Ok(outgoing) => outgoing,
        Err(unroutable) => return unroutable.answer(&ex.ctx.request_id),
    };
    let upstream = out.upstream;
    let (framing, outbound) = outbound(&ex.parts.method, &ex.parts.headers, body);
    let head = upstream_head(ex, &out, framing);
    let (ctx, method, pool) = (&ex.ctx, &ex.parts.method, upstream.pool());
    let deadline = tokio::time::Instant::now() + upstream.response_timeout;
    let response = match origin::send(pool, method, head, outbound, deadline).await {
        Ok(response) => response,
        Err(OriginError::Timeout) => {
            count_origin_error(shared, "timeout");
            return json_error(504, "origin timed out", &ctx.request_id);
        }
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, upstream = %upstream.authority, error = %e, "origin request failed");
            count_origin_error(shared, "error");
            return json_error(502, "origin unavailable", &ctx.request_id);
        }
    };
    let (mut head, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id) {
        head.headers.insert(X_REQUEST_ID, value);
    }
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        // Only a request that asked to switch is answered by a switch.
        let answered = out.websocket_accept.as_deref().is_none_or(|accept| {
            head.headers
                .get("sec-websocket-accept")
                .is_some_and(|v| v.as_bytes() == accept.as_bytes())
        });
        let switched = out.client_upgrade.take().zip(body.into_switched());
        let Some((client, origin)) = switched.filter(|_| answered) else {
            count_origin_error(shared, "error");
            return json_error(502, "origin switched protocols unasked", &ctx.request_id);
        };
        tunnel(client, origin, ctx.request_id.clone());
        return Response::from_parts(head, empty_body());
    }
    let body = if rt.quota.meters_bandwidth() {
        Metered::new(body, Arc::clone(rt))
            .map_err(Into::into)
            .boxed()
    } else {
        body.map_err(Into::into).boxed()
    };
    Response::from_parts(head, body)
}

/// How the request body goes to the origin: whole, with its length, or
/// streamed under the client's length or chunked.
fn outbound(
    method: &http::Method,
    headers: &HeaderMap,
    body: InspectedBody,
) -> (RequestFraming, Outbound) {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match body.streamed {
        None => {
            let length = body.inspected.len() as u64;
            let framing = match length > 0
                || declared.is_some()
                || matches!(
                    *method,
                    http::Method::POST | http::Method::PUT | http::Method::PATCH
                ) {
                true => RequestFraming::Length(length),
                false => RequestFraming::None,
            };
            (framing, Outbound::Whole(body.inspected))
        }
        Some(stream) => {
            let framing = declared.map_or(RequestFraming::Chunked, RequestFraming::Length);
            (framing, Outbound::Stream(stream, framing))
        }
    }
}

/// The request for the origin, before its body.
pub(crate) struct Outgoing<'a> {
    pub upstream: &'a crate::runtime::Upstream,
    /// A WebSocket (or other allowed) upgrade passes through.
    pub tunnelled: bool,
    pub client_upgrade: Option<crate::h1::ClientUpgrade>,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` the origin's
    /// switch must carry: a switch without it is no handshake answered.
    pub websocket_accept: Option<String>,
}

/// Why a request has no origin request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unroutable {
    NoOrigin,
}

impl Unroutable {
    fn answer(self, request_id: &str) -> Response<ProxyBody> {
        match self {
            Unroutable::NoOrigin => json_error(502, "no origin for this host and path", request_id),
        }
    }
}

/// The origin the request goes to and whether it switches protocols, or
/// why there is none.
pub(crate) fn outgoing<'a>(ex: &mut Exchange<'a>) -> Result<Outgoing<'a>, Unroutable> {
    let rt: &'a Runtime = ex.rt;
    let Some(upstream) = rt.upstream(&ex.target.authority, ex.target.path()) else {
        return Err(Unroutable::NoOrigin);
    };
    let allowed = upgrade_protocol(&ex.parts.headers).filter(|protocol| {
        rt.config
            .headers
            .upgrades
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(protocol))
    });
    let websocket = allowed.is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    let websocket_accept = websocket
        .then(|| hdr::websocket_accept(&ex.parts.headers))
        .flatten();
    // A WebSocket upgrade without a valid handshake goes on as a plain request.
    let tunnelled = allowed.is_some() && (!websocket || websocket_accept.is_some());
    let client_upgrade = tunnelled
        .then(|| ex.parts.extensions.remove::<crate::h1::ClientUpgrade>())
        .flatten();
    Ok(Outgoing {
        upstream,
        tunnelled,
        client_upgrade,
        websocket_accept,
    })
}

/// The origin request's head, written straight from the client's: the
/// canonical target, the client's headers the origin may see, the
/// gateway's forwarding and risk headers, and the body's framing.
pub(crate) fn upstream_head(
    ex: &Exchange<'_>,
    out: &Outgoing<'_>,
    framing: RequestFraming,
) -> Vec<u8> {
    let rt = ex.rt;
    let forwarding = Forwarding {
        names: &rt.forwarding_names,
        clearance_cookie: &rt.trust.cookie,
        host: &ex.target.authority,
        tls: ex.tls,
        tunnelled: out.tunnelled,
    };
    let target = ex.parts.uri.path_and_query().map_or("/", |t| t.as_str());
    let mut head = HeadWriter::new(&ex.parts.method, target, ex.parts.headers.len() + 8);
    write_upstream_headers(&mut head, &ex.parts.headers, &ex.ctx, &forwarding);
    for (name, value) in &ex.ctx.risk_headers {
        head.header(name.as_str().as_bytes(), value.as_bytes());
    }
    head.finish(out.upstream.authority.as_str(), framing)
}

fn count_origin_error(shared: &Shared, outcome: &'static str) {
    shared
        .metrics
        .upstream_errors
        .get_or_create(&crate::metrics::OutcomeLabel { outcome })
        .inc();
}

/// Joins the client's and the origin's connections after a switch of
/// protocols (WebSocket), starting with what each sent past its head.
fn tunnel(
    client: crate::h1::ClientUpgrade,
    (mut origin, early): (tokio::net::TcpStream, bytes::BytesMut),
    request_id: String,
) {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        let Some(mut client) = client.connection().await else {
            tracing::debug!(%request_id, "websocket upgrade did not complete");
            return;
        };
        let copied = async {
            origin.write_all(&client.early).await?;
            client.io.write_all(&early).await?;
            tokio::io::copy_bidirectional(&mut client.io, &mut origin).await
        };
        if let Err(e) = copied.await {
            tracing::debug!(%request_id, error = %e, "websocket tunnel closed");
        }
    });
}

/// What the gateway owns in the headers it sends to the origin.
struct Forwarding<'a> {
    /// The owned and risk names (only the risk stage's values, written
    /// after these headers, carry the risk names).
    names: &'a ForwardingNames,
    clearance_cookie: &'a str,
    /// The canonical authority.
    host: &'a str,
    tls: bool,
    /// A WebSocket (or other allowed) upgrade passes through.
    tunnelled: bool,
}

/// The headers the gateway sets on the origin request, in this order (a
/// static: these names are built once, not at every request).
static OURS: [HeaderName; 7] = [
    header::CONNECTION,
    X_FORWARDED_FOR,
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_REQUEST_ID,
    header::HOST,
    X_FORWARDED_HOST,
];

/// The client's headers as the origin gets them, in one pass over them:
/// hop-by-hop, forged and risk headers left out, the gateway's cookies cut
/// out, and the gateway's forwarding headers in place of any client copy.
fn write_upstream_headers(
    head: &mut HeadWriter,
    headers: &HeaderMap,
    ctx: &RequestContext,
    f: &Forwarding<'_>,
) {
    let hop = HopByHop::of(headers, f.tunnelled);
    // A client's own X-Forwarded-For is kept only when it came through a
    // trusted proxy (and its Connection header did not list it).
    let prior = (ctx.via_trusted_proxy && !hop.covers(&X_FORWARDED_FOR))
        .then(|| headers.get(X_FORWARDED_FOR))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let peer = ip_text(ctx.peer_ip);
    let chain = prior.map(|prior| format!("{prior}, {}", peer.as_str()));
    let forwarded = chain.as_deref().unwrap_or(peer.as_str());
    let real_ip = ip_text(ctx.client_ip);
    let host = (!f.host.is_empty()).then_some(f.host);
    let upgrade = (f.tunnelled && !f.names.owns(&header::CONNECTION)).then_some("upgrade");
    let values = [
        upgrade,
        Some(forwarded),
        Some(real_ip.as_str()),
        Some(if f.tls { "https" } else { "http" }),
        Some(ctx.request_id.as_str()),
        host,
        host,
    ];
    let ours = OURS.iter().zip(values);
    let replaced = |name: &HeaderName| ours.clone().any(|(n, v)| v.is_some() && n == name);
    let listed_none = !hop.lists_names();
    for (name, value) in headers {
        if listed_none && f.names.is_plain(name) {
            head.header(name.as_str().as_bytes(), value.as_bytes());
            continue;
        }
        if hop.covers(name) || f.names.owns(name) || f.names.is_risk(name) || replaced(name) {
            continue;
        }
        if name == header::COOKIE {
            if let Some(kept) = without_cookies(value, &[f.clearance_cookie, DEVICE_COOKIE]) {
                head.header(b"cookie", &kept);
            }
            continue;
        }
        head.header(name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in ours {
        if let Some(value) = value.filter(|_| !f.names.is_risk(name)) {
            head.header(name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Metrics and the decision event.
pub(crate) fn record(
    ex: Exchange<'_>,
    action: Action,
    layer: Option<Layer>,
    response: &Response<ProxyBody>,
    started: Instant,
) {
    let (shared, rt) = (ex.shared, ex.rt);
    let ctx = ex.ctx;
    let metrics = &shared.metrics;
    metrics.hot.count_request(action, layer, ctx.class);
    metrics.count_portal(&ctx.signals);
    for signal in &ctx.signals {
        metrics
            .signals
            .get_or_create(&crate::metrics::NameLabel { name: signal.name })
            .inc();
    }
    if !shared.events.is_enabled() {
        return;
    }
    let status = response.status().as_u16();
    // Every request on a core URL is recorded: its rank is what operators
    // watch. A pass with nothing to say is counted, or written as a sample.
    let plain_pass = action == Action::Pass
        && ctx.signals.is_empty()
        && ctx.policy.is_none()
        && ctx.would.is_none();
    let pass_route = plain_pass.then(|| shared.events.route_pass(&rt.config, status >= 500));
    match pass_route {
        Some(PassRoute::Drop) => return,
        Some(PassRoute::Count) => {
            shared.events.count_pass(PassNote {
                ts_ms: crate::context::now_ms(),
                class: ctx.class,
                client_ip: ctx.client_ip,
                device: ctx.device,
                account: ctx.account,
            });
            return;
        }
        Some(PassRoute::Write { .. }) | None => {}
    }
    let mut signals = ctx.signals;
    for signal in &mut signals {
        clip(&mut signal.evidence, MAX_EVIDENCE);
    }
    // Refused before the target was made canonical: the path as it came.
    let (mut host, mut path) = match ex.target.path.matched.is_empty() {
        true => (ex.target.authority, ex.parts.uri.path().to_owned()),
        false => (ex.target.authority, ex.target.path.matched),
    };
    clip(&mut host, MAX_HOST);
    clip(&mut path, MAX_PATH);
    let event = Event {
        ts_ms: crate::context::now_ms(),
        request_id: ctx.request_id,
        client_ip: ctx.client_ip,
        method: ex.parts.method.to_string(),
        host,
        path,
        action: action.as_str(),
        layer,
        status,
        class: ctx.class,
        signals,
        duration_us: started.elapsed().as_micros() as u64,
        cid: ctx.clearance.as_ref().map(|c| c.cid.to_string()),
        device_id: ctx.device,
        account_id: ctx.account,
        route: ctx
            .policy
            .and_then(|i| rt.policies.get(i))
            .map(|p| p.config.name.clone()),
        risk_rank: ctx.risk.as_ref().map(|r| r.rank),
        device_risk_rank: ctx.risk.as_ref().map(|r| r.device_rank),
        reasons: ctx.risk.map(|r| r.reasons).unwrap_or_default(),
        would: ctx.would,
    };
    match pass_route {
        Some(route) => shared.events.send_pass(event, route),
        None => shared.events.send(event),
    }
}

/// What one event keeps of a field a client chose: a 30 KB target must not
/// cost 30 KB of log and store per request.
const MAX_PATH: usize = 1024;
const MAX_HOST: usize = 255;
const MAX_EVIDENCE: usize = 256;

/// Cuts `text` to at most `max` bytes on a character boundary, marked `…`.
fn clip(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod cost;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::headers::RESERVED_PREFIXES;
    use std::net::IpAddr;

    #[test]
    fn event_fields_are_clipped_on_character_boundaries() {
        let mut long = "路".repeat(2000);
        clip(&mut long, MAX_PATH);
        assert!(
            long.len() <= MAX_PATH && long.ends_with('…'),
            "{}",
            long.len()
        );
        let mut short = "/a".to_owned();
        clip(&mut short, MAX_PATH);
        assert_eq!(short, "/a");
    }

    /// The headers the origin receives from `headers`, read back from the
    /// head written for it.
    fn forwarded_headers(headers: &mut HeaderMap, ctx: &RequestContext, f: &Forwarding<'_>) {
        let mut head = HeadWriter::new(&http::Method::GET, "/", headers.len());
        write_upstream_headers(&mut head, headers, ctx, f);
        let written = head.finish("default.example", RequestFraming::None);
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut fields);
        assert!(request.parse(&written).unwrap().is_complete());
        headers.clear();
        for field in request.headers.iter() {
            headers.append(
                HeaderName::from_bytes(field.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(field.value).unwrap(),
            );
        }
    }

    fn forwarding(names: &ForwardingNames) -> Forwarding<'_> {
        Forwarding {
            names,
            clearance_cookie: "pc_clearance",
            host: "example.com",
            tls: false,
            tunnelled: false,
        }
    }

    fn default_risk_names() -> Vec<HeaderName> {
        let config = portcullis_config::RiskConfig::default();
        let headers = portcullis_risk::RiskHeaders::new(&config, None).unwrap();
        headers.names().to_vec()
    }

    #[test]
    fn forged_headers_are_removed_and_the_gateway_sets_its_own() {
        let remove = portcullis_config::HeadersConfig::default().remove;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-wx-risk-rank", "0"),
            ("x_wx_risk_rank", "0"),
            ("x-portcullis-verdict", "ok"),
            ("x_portcullis_verdict", "ok"),
            ("x-pc-clearance", "token"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-original-url", "/admin"),
            ("x_request_id", "attacker"),
            ("x_forwarded_proto", "https"),
            ("cookie", "pc_clearance=t; sid=1; pc_device=d"),
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let ctx = RequestContext::new("rid".into(), peer, peer);
        let names = ForwardingNames::new(&remove, &[]);
        forwarded_headers(&mut headers, &ctx, &forwarding(&names));
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cookie",
                "host",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-real-ip",
                "x-request-id"
            ]
        );
        assert_eq!(headers["cookie"], "sid=1");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9");
        assert_eq!(headers["x-real-ip"], "203.0.113.9");
        assert_eq!(headers["x-forwarded-host"], "example.com");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers[header::HOST], "example.com");
    }

    /// The steps `write_upstream_headers` folds into one pass, one after
    /// the other as they were written first: hop-by-hop headers, forged
    /// names, the gateway's cookies, its own headers, then the risk names.
    fn stepwise(
        headers: &mut HeaderMap,
        ctx: &RequestContext,
        f: &Forwarding<'_>,
        remove: &[String],
    ) {
        let hop = HopByHop::of(headers, f.tunnelled);
        let hops: Vec<HeaderName> = headers.keys().filter(|n| hop.covers(n)).cloned().collect();
        for name in hops {
            headers.remove(name);
        }
        if f.tunnelled {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let prior = headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|_| ctx.via_trusted_proxy)
            .map(str::to_owned);
        // The names compared one by one, as before they were compiled.
        let listed = |n: &str| {
            let mut forged = remove.iter().map(String::as_str).chain(hdr::FORWARDING);
            forged.any(|w| hdr::same_name(n, w))
                || RESERVED_PREFIXES.iter().any(|p| hdr::has_prefix(n, p))
        };
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|n| listed(n.as_str()))
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
        let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
        headers.remove(header::COOKIE);
        for cookie in &cookies {
            if let Some(kept) = without_cookies(cookie, &[f.clearance_cookie, DEVICE_COOKIE]) {
                headers.append(header::COOKIE, HeaderValue::from_bytes(&kept).unwrap());
            }
        }
        let peer = ctx.peer_ip.to_string();
        let forwarded = prior.map_or(peer.clone(), |p| format!("{p}, {peer}"));
        let real_ip = ctx.client_ip.to_string();
        let proto = if f.tls { "https" } else { "http" };
        for (name, value) in [
            (X_FORWARDED_FOR, forwarded.as_str()),
            (X_REAL_IP, real_ip.as_str()),
            (X_FORWARDED_PROTO, proto),
            (X_REQUEST_ID, ctx.request_id.as_str()),
            (header::HOST, f.host),
            (X_FORWARDED_HOST, f.host),
        ] {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        for name in f.names.risk() {
            headers.remove(name);
        }
    }

    fn sorted(headers: &HeaderMap) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut all: Vec<_> = headers
            .keys()
            .map(|k| {
                let values = headers.get_all(k).iter().map(|v| v.as_bytes().to_vec());
                (k.as_str().to_owned(), values.collect())
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn one_pass_gives_the_headers_of_the_steps_one_by_one() {
        let default_remove = portcullis_config::HeadersConfig::default().remove;
        let odd_remove = vec!["connection".to_owned(), "cookie".to_owned()];
        let default_risk = default_risk_names();
        let odd_risk: Vec<HeaderName> = ["x-real-ip", "cookie", "connection", "x-risk"]
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        let requests: &[&[(&str, &str)]] = &[
            &[
                ("host", "example.com"),
                ("user-agent", "Mozilla/5.0"),
                ("accept", "*/*"),
            ],
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x_real_ip", "6.6.6.6"),
                ("x-wx-risk-rank", "0"),
                ("x_wx_device", "d"),
                ("x-risk", "9"),
                ("cookie", "pc_clearance=t; sid=1"),
                ("cookie", "pc_device=d"),
            ],
            &[
                ("connection", "Upgrade, x-forwarded-for, x-keep"),
                ("upgrade", "websocket"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-keep", "1"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("cookie", "a=1"),
            ],
        ];
        let clients = [("203.0.113.9", "203.0.113.9"), ("1.1.1.1", "10.0.0.2")];
        for remove in [&default_remove, &odd_remove, &Vec::new()] {
            for risk_names in [&default_risk, &odd_risk] {
                let names = ForwardingNames::new(remove, risk_names);
                for request in requests {
                    for (client, peer) in clients {
                        for (tunnelled, trusted) in [(false, false), (true, true), (false, true)] {
                            let mut headers = HeaderMap::new();
                            for (name, value) in *request {
                                headers.append(
                                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                                    HeaderValue::from_static(value),
                                );
                            }
                            let mut ctx = RequestContext::new(
                                "rid".into(),
                                client.parse().unwrap(),
                                peer.parse().unwrap(),
                            );
                            ctx.via_trusted_proxy = trusted;
                            let f = Forwarding {
                                tunnelled,
                                ..forwarding(&names)
                            };
                            let mut expected = headers.clone();
                            stepwise(&mut expected, &ctx, &f, remove);
                            forwarded_headers(&mut headers, &ctx, &f);
                            assert_eq!(
                                sorted(&headers),
                                sorted(&expected),
                                "{request:?} {remove:?} {risk_names:?} {client} {tunnelled} {trusted}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn trusted_chain_is_appended() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        let mut ctx = RequestContext::new(
            "r".into(),
            "1.1.1.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        );
        ctx.via_trusted_proxy = true;
        let names = ForwardingNames::new(&[], &[]);
        forwarded_headers(&mut headers, &ctx, &forwarding(&names));
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 10.0.0.2");
        assert_eq!(headers["x-real-ip"], "1.1.1.1");
    }
}
