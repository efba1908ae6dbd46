//! The request path: run the pipeline's stages in order, let the policy step
//! decide, then answer from the gateway or forward to the origin.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use portcullis_config::{ClassAction, DetectMode};
use portcullis_state::Gcra;

use crate::Shared;
use crate::body::{Metered, Prefix, PrefixedBody, read_prefix};
use crate::client_ip::client_ip;
use crate::conn_io::ConnFlags;
use crate::context::{
    Action, Answer, Demand, Event, Layer, RequestContext, TrafficClass, retry_after_secs,
};
use crate::edge::protocol;
use crate::hot_metrics::Stage;
use crate::policy;
use crate::risk;
use crate::runtime::{ProxyBody, Runtime};
use crate::trust::check::{self, Requirement, device_of};
use crate::trust::portal::{self, PortalRequest};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Answers one request. Never fails: every problem becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: Arc<ConnFlags>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let runtime = shared.runtime.load_full();
    let request_id = new_request_id();
    let ip = client_ip(
        peer.ip(),
        req.headers(),
        &runtime.trusted_proxies,
        &runtime.forwarded,
    );
    let mut ctx = RequestContext::new(request_id, ip, peer.ip());
    ctx.via_trusted_proxy = runtime.trusted_proxies.contains(peer.ip());
    let (mut parts, body) = req.into_parts();
    let host = host_of(&parts);
    let path = parts.uri.path().to_owned();
    identify(&runtime, &mut ctx, &parts.headers);

    if conn.framing_conflict.load(Ordering::Relaxed) {
        ctx.refuse(
            "cl_te_conflict",
            "content-length with transfer-encoding",
            400,
        );
    } else {
        edge_stages(&shared, &runtime, &mut ctx, &parts, &host).await;
    }
    let mut forward_body = None;
    let mut portal_answer = None;
    if !ctx.is_stopped() {
        let body = body_stage(&shared, &runtime, &mut ctx, &parts.headers, body).await;
        let stopped = ctx.is_stopped();
        if !stopped && portal::is_portal(&path) {
            portal_answer = Some(serve_portal(&shared, &runtime, &mut ctx, &parts, &body).await);
        } else if !stopped && ctx.class != TrafficClass::Trusted {
            detect_stage(&shared, &runtime, &mut ctx, &parts, &body);
        }
        if portal_answer.is_none() {
            policy_stage(&shared, &runtime, &mut ctx, &parts, &host, &body).await;
        }
        forward_body = Some(body.forward);
    }

    let (action, layer) = ctx.decide();
    let response = match (portal_answer, action, forward_body) {
        (Some(answer), _, _) => answer,
        (None, Action::Pass, Some(body)) => {
            let response = forward(&shared, &runtime, &ctx, &mut parts, &host, body).await;
            mask_leaks(&runtime, &mut ctx, &path, response).await
        }
        (None, Action::Intercept(answer), _) => intercept(&runtime, &ctx, &parts.headers, answer),
        (None, Action::Pass, None) => intercept(
            &runtime,
            &ctx,
            &parts.headers,
            Answer::BadRequest { status: 400 },
        ),
    };
    record(
        &shared, &runtime, ctx, &parts, host, path, action, layer, &response, started,
    );
    Ok(response)
}

/// The device and account the request names (not yet proven).
fn identify(rt: &Runtime, ctx: &mut RequestContext, headers: &HeaderMap) {
    let identity = &rt.config.identity;
    ctx.device = device_of(headers, &identity.device_header).map(str::to_owned);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    ctx.account = identity
        .account_header
        .as_deref()
        .and_then(header)
        .or_else(|| {
            identity
                .account_cookie
                .as_deref()
                .and_then(|name| cookie(headers, name))
        })
        .filter(|a| usable_account(a))
        .map(str::to_owned);
    // A verified token's claim names the account, so that rate limits can count by it.
    if let Some(claim) = &identity.account_claim {
        let verified = verified_token(rt, headers);
        if let Ok(token) = &verified
            && let Some(account) = token.claim_text(claim).filter(|a| usable_account(a))
        {
            ctx.account = Some(account);
        }
        ctx.jwt = Some(verified);
    }
}

fn usable_account(account: &str) -> bool {
    !account.is_empty() && account.len() <= MAX_ACCOUNT_ID
}

fn verified_token(
    rt: &Runtime,
    headers: &HeaderMap,
) -> Result<portcullis_authz::VerifiedToken, portcullis_authz::TokenError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let token = portcullis_authz::bearer_token(authorization)?;
    rt.jwt.verify(token, crate::context::now_ms() / 1000)
}

/// A route that requires a JWT: a valid token (401 otherwise) that allows
/// this request (403 otherwise: over-privileged).
fn jwt_stage(
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    body: &InspectedBody,
    requirement: &portcullis_config::JwtRequirement,
) {
    let verified = ctx
        .jwt
        .take()
        .unwrap_or_else(|| verified_token(rt, &parts.headers));
    let token = match verified {
        Ok(token) => token,
        Err(e) => {
            let code = e.as_str();
            let demand = Demand::Refuse { status: 401, code };
            ctx.add(code, Layer::Clean, 50, e.to_string(), demand);
            return;
        }
    };
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    let view = portcullis_authz::RequestView {
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        json_body: (json && body.complete).then_some(&body.inspected[..]),
    };
    if let Err(denial) = rt.jwt.check(&token, requirement, &view) {
        let code = denial.as_str();
        let evidence = format!("{code}: {denial}");
        let demand = Demand::Refuse { status: 403, code };
        ctx.add("over_privileged", Layer::Clean, 80, evidence, demand);
    }
}

/// Longer account ids are ignored rather than stored in every table.
const MAX_ACCOUNT_ID: usize = 128;

/// The gateway's own endpoints under `/.portcullis/`.
async fn serve_portal(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    body: &InspectedBody,
) -> Response<ProxyBody> {
    let t = Instant::now();
    let risk = rt.risk.quick(ctx).rank;
    let request = PortalRequest {
        parts,
        body: body.complete.then_some(&body.inspected[..]),
        risk,
        load: 0.0,
        tls: parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS),
    };
    let response = portal::serve(&rt.trust, shared.state.as_ref(), ctx, request).await;
    shared.metrics.hot.observe(Stage::Trust, t);
    response
}

/// Layer 3 on core URLs: the client's proof, the risk rank, the band's action.
async fn policy_stage(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    host: &str,
    body: &InspectedBody,
) {
    if rt.policies.is_empty() {
        return;
    }
    let Some(index) = rt
        .policies
        .find(host, parts.method.as_str(), parts.uri.path())
    else {
        return;
    };
    ctx.policy = Some(index);
    let Some(policy) = rt.policies.get(index) else {
        return;
    };
    if !ctx.is_stopped() {
        let t = Instant::now();
        let need = Requirement {
            clearance: policy.config.clearance,
            signature: policy.config.signature,
        };
        let whole_body = body.complete.then_some(&body.inspected[..]);
        check::check(
            &rt.trust,
            shared.state.as_ref(),
            ctx,
            parts,
            host,
            whole_body,
            need,
        )
        .await;
        if let Some(requirement) = &policy.config.jwt
            && !ctx.is_stopped()
        {
            jwt_stage(rt, ctx, parts, body, requirement);
        }
        shared.metrics.hot.observe(Stage::Trust, t);
    }
    let t = Instant::now();
    let route = &policy.config.name;
    let (verdict, headers) = risk::assess(
        &rt.risk,
        shared.state.as_ref(),
        ctx,
        route,
        std::time::Duration::from_millis(rt.trust.authority.ttl_ms),
        policy.config.debug,
        parts,
    )
    .await;
    ctx.risk = Some(verdict);
    if policy.config.risk_headers {
        ctx.risk_headers = headers;
    }
    if !ctx.is_stopped() {
        policy::apply_bands(&policy.config, ctx);
    }
    shared.metrics.hot.observe(Stage::Policy, t);
}

/// Layer 1 before any body byte is read: addresses, protocol, quota, class.
async fn edge_stages(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    host: &str,
) {
    let t = Instant::now();
    ip_stage(shared, rt, ctx);
    shared.metrics.hot.observe(Stage::Ip, t);
    if ctx.is_stopped() {
        return;
    }

    let t = Instant::now();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(v) = protocol::check_head(
        parts.method.as_str(),
        target,
        &parts.headers,
        &rt.config.protocol,
        &rt.config.limits,
    ) {
        ctx.refuse(v.name, v.evidence, v.status);
    }
    shared.metrics.hot.observe(Stage::Protocol, t);
    if ctx.is_stopped() {
        return;
    }

    let t = Instant::now();
    if let Err(refused) = rt.quota.admit(parts.uri.path()) {
        let demand = Demand::TooMany {
            retry_after_s: retry_after_secs(refused.retry_after),
            status: rt.quota.status,
        };
        ctx.add("quota_exceeded", Layer::Edge, 0, refused.which, demand);
        shared.metrics.hot.observe(Stage::Quota, t);
        return;
    }
    shared.metrics.hot.observe(Stage::Quota, t);

    if ctx.class != TrafficClass::Trusted {
        let t = Instant::now();
        classify_stage(shared, rt, ctx, &parts.headers).await;
        shared.metrics.hot.observe(Stage::Classify, t);
        if !ctx.is_stopped() && !rt.rate_limits.is_empty() {
            let t = Instant::now();
            limits_stage(shared, rt, ctx, parts, host).await;
            shared.metrics.hot.observe(Stage::Limits, t);
        }
    }
}

/// Rate limits per route and key; repeated violations ban the address.
async fn limits_stage(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    host: &str,
) {
    let facts = portcullis_limits::RequestFacts {
        host,
        path: parts.uri.path(),
        method: parts.method.as_str(),
        ip: ctx.client_ip,
        device: ctx.device.as_deref(),
        account: ctx.account.as_deref(),
    };
    let exceeded = match rt.rate_limits.check(shared.state.as_ref(), &facts).await {
        Ok(exceeded) => exceeded,
        Err(e) => {
            // Fail open: limits are lost while the state is down, the site is not.
            tracing::warn!(error = %e, "rate limit check failed");
            return;
        }
    };
    for excess in exceeded {
        let demand = match excess.action {
            portcullis_config::LimitAction::Reject => Demand::TooMany {
                retry_after_s: retry_after_secs(excess.retry_after),
                status: 429,
            },
            portcullis_config::LimitAction::Tag => Demand::Tag,
        };
        if let Some(ttl) = excess.ban {
            let reason = format!("rate limit {} exceeded repeatedly", excess.rule);
            match shared.bans.ban(ctx.client_ip, ttl, &reason).await {
                Ok(_) => {
                    tracing::info!(ip = %ctx.client_ip, rule = excess.rule, ttl_s = ttl.as_secs(), "address banned")
                }
                Err(e) => tracing::warn!(error = %e, "cannot record a ban"),
            }
            ctx.add("rate_limit_ban", Layer::Clean, 100, reason, Demand::Block);
        }
        ctx.add(
            "rate_limit",
            Layer::Clean,
            30,
            excess.rule.to_string(),
            demand,
        );
    }
}

/// The value of one cookie, from any `Cookie` header.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn ip_stage(shared: &Shared, rt: &Runtime, ctx: &mut RequestContext) {
    let ip = ctx.client_ip;
    if rt.allow.contains(ip) {
        ctx.class = TrafficClass::Trusted;
        return;
    }
    if rt.deny.contains(ip) {
        ctx.add("ip_denied", Layer::Edge, 100, "deny list", Demand::Block);
        return;
    }
    for feed in &rt.feeds {
        if feed.set.contains(ip) {
            let demand = match feed.action {
                ClassAction::Block => Demand::Block,
                _ => Demand::Tag,
            };
            ctx.add("threat_feed", Layer::Edge, 60, feed.name.clone(), demand);
            if demand == Demand::Block {
                return;
            }
        }
    }
    if let Some(reason) = shared.bans.check(ip) {
        ctx.add("ip_banned", Layer::Edge, 100, reason, Demand::Block);
    }
}

async fn classify_stage(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) {
    let traffic = &rt.config.traffic;
    if let Some(found) = rt.classifier.classify(ctx.client_ip, headers) {
        ctx.class = found.class;
        let (action, rps, name, weight) = match found.class {
            TrafficClass::Scanner => (
                traffic.scanner.action,
                traffic.scanner.throttle_rps,
                "scanner",
                40,
            ),
            TrafficClass::Automation => (
                traffic.automation.action,
                traffic.automation.throttle_rps,
                "automation",
                30,
            ),
            _ => (traffic.crawler.action, 1.0, "crawler", 10),
        };
        let demand = match action {
            ClassAction::Allow => return,
            ClassAction::Tag => Demand::Tag,
            ClassAction::Block => Demand::Block,
            ClassAction::Throttle => throttle(shared, name, ctx.client_ip, rps).await,
        };
        ctx.add(name, Layer::Edge, weight, found.evidence, demand);
    }
    if ctx.class == TrafficClass::Normal
        && let Some(missing) = crate::edge::classify::missing_browser_headers(headers)
    {
        ctx.add(
            "browser_headers_missing",
            Layer::Edge,
            10,
            missing,
            Demand::Tag,
        );
    }
}

async fn throttle(shared: &Shared, class: &str, ip: IpAddr, rps: f64) -> Demand {
    let burst = (rps * 5.0).ceil().max(1.0) as u32;
    let key = format!("throttle:{class}:{ip}");
    match shared
        .state
        .rate_limit(&key, Gcra::per_second(rps, burst), 1)
        .await
    {
        Ok(d) if !d.allowed => Demand::TooMany {
            retry_after_s: retry_after_secs(d.retry_after),
            status: 429,
        },
        Ok(_) => Demand::Tag,
        Err(e) => {
            tracing::warn!(error = %e, "throttle lookup failed");
            Demand::Tag
        }
    }
}

/// A request body after the body stage.
struct InspectedBody {
    /// What goes to the origin.
    forward: ProxyBody,
    /// The part read and inspected before forwarding.
    inspected: Bytes,
    /// Whether `inspected` is the whole body.
    complete: bool,
}

impl InspectedBody {
    fn empty() -> Self {
        InspectedBody {
            forward: empty_body(),
            inspected: Bytes::new(),
            complete: true,
        }
    }
}

/// Reads the inspected part of the body and checks it.
async fn body_stage(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
    body: Incoming,
) -> InspectedBody {
    use http_body::Body as _;
    if body.is_end_stream() {
        return InspectedBody::empty();
    }
    let t = Instant::now();
    let limits = &rt.config.limits;
    let prefix = read_prefix(
        body,
        limits.inspect_body_bytes,
        limits.max_body_bytes,
        Duration::from_millis(limits.body_timeout_ms),
    )
    .await;
    let (inspected, complete, forward) = match prefix {
        Prefix::Complete(bytes) => (bytes.clone(), true, full_body(bytes)),
        Prefix::Partial(bytes, rest) => (
            bytes.clone(),
            false,
            PrefixedBody::new(bytes, rest, limits.max_body_bytes)
                .map_err(Into::into)
                .boxed(),
        ),
        Prefix::TooLarge => {
            ctx.refuse("body_too_large", "", 413);
            return InspectedBody::empty();
        }
        Prefix::TimedOut => {
            ctx.refuse("body_timeout", "", 408);
            return InspectedBody::empty();
        }
        Prefix::Broken => {
            ctx.refuse("body_malformed", "", 400);
            return InspectedBody::empty();
        }
    };
    if let Some(v) = protocol::check_body(headers, &inspected, complete, &rt.config.protocol) {
        ctx.refuse(v.name, v.evidence, v.status);
    }
    shared.metrics.hot.observe(Stage::Body, t);
    InspectedBody {
        forward,
        inspected,
        complete,
    }
}

/// Layer 2 attack detection over the head and the inspected body.
fn detect_stage(
    shared: &Shared,
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    body: &InspectedBody,
) {
    let Some(detection) = rt.detection(parts.uri.path()) else {
        return;
    };
    let t = Instant::now();
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let verdict = detection.detector.inspect(&portcullis_detect::RawRequest {
        method: parts.method.as_str(),
        target: target.as_bytes(),
        headers: &headers,
        body: &body.inspected,
        body_truncated: !body.complete,
    });
    let demand = match detection.mode {
        DetectMode::Block => Demand::Block,
        DetectMode::LogOnly => Demand::Tag,
    };
    custom_rules(rt, ctx, parts, &headers, &body.inspected, demand);
    shared.metrics.hot.observe(Stage::Detect, t);
    if !verdict.is_attack(detection.threshold) {
        return;
    }
    for finding in &verdict.findings {
        let evidence = format!(
            "{} {}: {}",
            finding.rule_id, finding.location, finding.evidence
        );
        ctx.add(
            finding.family.as_str(),
            Layer::Clean,
            finding.score,
            evidence,
            demand,
        );
    }
}

/// `[[detect.rules]]` over the same request view as detection; `demand` is
/// what a block rule asks for under the route's mode.
fn custom_rules(
    rt: &Runtime,
    ctx: &mut RequestContext,
    parts: &http::request::Parts,
    headers: &[(&str, &[u8])],
    body: &[u8],
    demand: Demand,
) {
    if rt.custom_rules.is_empty() {
        return;
    }
    let host = parts
        .uri
        .host()
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = parts.method.as_str();
    let req = portcullis_rules::Request::new(method, host, target, headers, ctx.client_ip, body);
    for rule in &rt.custom_rules {
        if !rule.applies_to(req.path()) || !rule.expr.matches(&req) {
            continue;
        }
        let (weight, demand) = match rule.action {
            portcullis_config::RuleAction::Block => (rule.score, demand),
            portcullis_config::RuleAction::Tag => (rule.score, Demand::Tag),
            // Recorded in the event, but no weight in the risk score.
            portcullis_config::RuleAction::Log => (0, Demand::Tag),
        };
        ctx.add("custom_rule", Layer::Clean, weight, rule.id.clone(), demand);
    }
}

/// Error pages bigger than this pass unchecked (and unbuffered).
const MAX_MASKED_PAGE: u64 = 256 * 1024;

/// Replaces an origin error page that leaks internals with a generic error
/// carrying the request id; the kind of leak goes into the event.
async fn mask_leaks(
    rt: &Runtime,
    ctx: &mut RequestContext,
    path: &str,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    use http_body::Body as _;
    let status = response.status().as_u16();
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_MASKED_PAGE);
    let enabled = rt.config.detect.mask_error_pages && rt.detection(path).is_some();
    if status < 400 || !small || !enabled {
        return response;
    }
    let (head, body) = response.into_parts();
    // The size hint's upper bound is the origin's Content-Length, which hyper enforces.
    let Ok(collected) = body.collect().await else {
        return origin_failure(ctx, 502, "origin response failed");
    };
    let bytes = collected.to_bytes();
    match portcullis_detect::leaks_internals(status, &bytes) {
        Some(kind) => {
            ctx.add(
                "error_page_leak",
                Layer::Clean,
                0,
                format!("{kind:?}"),
                Demand::Tag,
            );
            origin_failure(ctx, status, "internal error")
        }
        None => Response::from_parts(head, full_body(bytes)),
    }
}

fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A gateway answer from the configured templates, always with the request id.
fn intercept(
    rt: &Runtime,
    ctx: &RequestContext,
    headers: &HeaderMap,
    answer: Answer,
) -> Response<ProxyBody> {
    let block = &rt.config.block;
    let (template, status, retry_after, pc_error) = match answer {
        Answer::Blocked => (&block.blocked, block.blocked.status, None, None),
        Answer::BadRequest { status } => (&block.bad_request, status, None, None),
        Answer::TooMany {
            retry_after_s,
            status,
        } => (&block.too_many, status, Some(retry_after_s), None),
        Answer::Refuse { status, code } => (&block.blocked, status, None, Some(code)),
        Answer::Challenge { code } => return challenge(rt, ctx, headers, code),
        Answer::Custom => match policy_response(rt, ctx) {
            Some(response) => return response,
            None => (&block.blocked, block.blocked.status, None, None),
        },
    };
    let body = rt.render(template, status, &ctx.request_id);
    let mut response = gateway_response(status, &template.content_type, body, &ctx.request_id);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(code) = pc_error {
        response
            .headers_mut()
            .insert(X_PC_ERROR, HeaderValue::from_static(code));
    }
    response
}

const X_PC_ERROR: HeaderName = HeaderName::from_static("x-pc-error");

/// 401 with `x-pc-error`: the interstitial page for a browser navigation,
/// JSON pointing at the challenge for API clients (the SDK handles it).
fn challenge(
    rt: &Runtime,
    ctx: &RequestContext,
    headers: &HeaderMap,
    code: &'static str,
) -> Response<ProxyBody> {
    let mut response = if rt.trust.interstitial && policy::is_navigation(headers) {
        gateway_response(
            401,
            "text/html; charset=utf-8",
            portal::interstitial(&ctx.request_id),
            &ctx.request_id,
        )
    } else {
        gateway_response(
            401,
            "application/json",
            portal::challenge_body(&ctx.request_id, code),
            &ctx.request_id,
        )
    };
    response
        .headers_mut()
        .insert(X_PC_ERROR, HeaderValue::from_static(code));
    response
}

/// The matching policy's own intercept response, if it has one.
fn policy_response(rt: &Runtime, ctx: &RequestContext) -> Option<Response<ProxyBody>> {
    let policy = rt.policies.get(ctx.policy?)?;
    let custom = policy.config.intercept.as_ref()?;
    let body = Bytes::from(custom.body.replace("{{request_id}}", &ctx.request_id));
    let mut response = gateway_response(custom.status, &custom.content_type, body, &ctx.request_id);
    for (name, value) in &custom.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Some(response)
}

/// A response written by the gateway itself.
pub fn gateway_response(
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn origin_failure(ctx: &RequestContext, status: u16, error: &str) -> Response<ProxyBody> {
    let body = format!(r#"{{"error":"{error}","request_id":"{}"}}"#, ctx.request_id);
    gateway_response(
        status,
        "application/json",
        Bytes::from(body),
        &ctx.request_id,
    )
}

async fn forward(
    shared: &Shared,
    rt: &Arc<Runtime>,
    ctx: &RequestContext,
    parts: &mut http::request::Parts,
    host: &str,
    body: ProxyBody,
) -> Response<ProxyBody> {
    let Some(upstream) = rt.upstream(host, parts.uri.path()) else {
        return origin_failure(ctx, 502, "no origin for this host and path");
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(uri) = format!("{}{}", upstream.base, path_and_query).parse::<http::Uri>() else {
        return origin_failure(ctx, 400, "bad request target");
    };
    let upgrade = is_upgrade(&parts.headers);
    let client_upgrade = upgrade
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let mut headers = std::mem::take(&mut parts.headers);
    prepare_upstream_headers(&mut headers, ctx, host, upgrade);
    risk::write_headers(&rt.risk, &ctx.risk_headers, &mut headers);

    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let result = tokio::time::timeout(
        upstream.response_timeout,
        upstream.client().request(upstream_req),
    )
    .await;
    parts.headers = HeaderMap::new();
    let mut response = match result {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(request_id = %ctx.request_id, upstream = %upstream.authority, error = %e, "origin request failed");
            shared
                .metrics
                .upstream_errors
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "error" })
                .inc();
            return origin_failure(ctx, 502, "origin unavailable");
        }
        Err(_) => {
            shared
                .metrics
                .upstream_errors
                .get_or_create(&crate::metrics::OutcomeLabel { outcome: "timeout" })
                .inc();
            return origin_failure(ctx, 504, "origin timed out");
        }
    };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        tunnel(
            client_upgrade,
            hyper::upgrade::on(&mut response),
            ctx.request_id.clone(),
        );
    } else {
        strip_hop_by_hop(response.headers_mut());
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let (head, incoming) = response.into_parts();
    let body = if rt.quota.meters_bandwidth() {
        Metered::new(incoming, Arc::clone(rt))
            .map_err(Into::into)
            .boxed()
    } else {
        incoming.map_err(Into::into).boxed()
    };
    Response::from_parts(head, body)
}

fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    request_id: String,
) {
    tokio::spawn(async move {
        let (Ok(client), Ok(origin)) = (client.await, origin.await) else {
            tracing::debug!(%request_id, "websocket upgrade did not complete");
            return;
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut origin = hyper_util::rt::TokioIo::new(origin);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
            tracing::debug!(%request_id, error = %e, "websocket tunnel closed");
        }
    });
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Headers a client could forge about the gateway's verdict: always removed.
fn is_reserved(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-wx-") || name.starts_with("x-portcullis-")
}

fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    ctx: &RequestContext,
    host: &str,
    upgrade: bool,
) {
    if upgrade {
        strip_hop_by_hop_except_upgrade(headers);
    } else {
        strip_hop_by_hop(headers);
    }
    let reserved: Vec<HeaderName> = headers.keys().filter(|n| is_reserved(n)).cloned().collect();
    for name in reserved {
        headers.remove(name);
    }
    // A client's own X-Forwarded-For is kept only when it came through a trusted proxy.
    let forwarded = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if ctx.via_trusted_proxy => format!("{prior}, {}", ctx.peer_ip),
        _ => ctx.peer_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if !headers.contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(host)
    {
        headers.insert(header::HOST, value);
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_except_upgrade(headers);
    headers.remove(header::UPGRADE);
}

fn strip_hop_by_hop_except_upgrade(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::UPGRADE)
        .collect();
    let keep_connection = headers
        .contains_key(header::UPGRADE)
        .then(|| headers.get(header::CONNECTION).cloned())
        .flatten();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if let Some(connection) = keep_connection
        && connection
            .to_str()
            .is_ok_and(|c| c.to_ascii_lowercase().contains("upgrade"))
    {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn host_of(parts: &http::request::Parts) -> String {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default()
        .to_owned()
}

/// Metrics and the decision event.
#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    rt: &Runtime,
    ctx: RequestContext,
    parts: &http::request::Parts,
    host: String,
    path: String,
    action: Action,
    layer: Option<Layer>,
    response: &Response<ProxyBody>,
    started: Instant,
) {
    let metrics = &shared.metrics;
    metrics.hot.count_request(action, layer, ctx.class);
    for signal in &ctx.signals {
        metrics
            .signals
            .get_or_create(&crate::metrics::NameLabel { name: signal.name })
            .inc();
    }
    // Every request on a core URL is recorded: its rank is what operators watch.
    let wanted = action != Action::Pass
        || !ctx.signals.is_empty()
        || ctx.policy.is_some()
        || shared.events.wants_passed(&rt.config);
    if !shared.events.is_enabled() || !wanted {
        return;
    }
    shared.events.send(Event {
        ts_ms: crate::context::now_ms(),
        request_id: ctx.request_id,
        client_ip: ctx.client_ip,
        method: parts.method.to_string(),
        host,
        path,
        action: action.as_str(),
        layer,
        status: response.status().as_u16(),
        class: ctx.class,
        signals: ctx.signals,
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
    });
}

/// 16 hex digits, unique enough to find one request in logs.
pub(crate) fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_risk_headers_are_removed_and_forwarding_added() {
        let mut headers = HeaderMap::new();
        headers.insert("x-wx-risk-rank", HeaderValue::from_static("0"));
        headers.insert("x-portcullis-verdict", HeaderValue::from_static("ok"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let ctx = RequestContext::new("rid".into(), peer, peer);
        prepare_upstream_headers(&mut headers, &ctx, "example.com", false);
        assert!(headers.get("x-wx-risk-rank").is_none());
        assert!(headers.get("x-portcullis-verdict").is_none());
        assert!(headers.get("x-secret").is_none(), "listed in Connection");
        assert!(headers.get(header::CONNECTION).is_none());
        assert_eq!(
            headers["x-forwarded-for"], "203.0.113.9",
            "untrusted XFF replaced"
        );
        assert_eq!(headers["x-request-id"], "rid");
        assert_eq!(headers[header::HOST], "example.com");
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
        prepare_upstream_headers(&mut headers, &ctx, "h", false);
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 10.0.0.2");
    }
}
