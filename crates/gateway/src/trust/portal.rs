//! The challenge endpoints under `/.portcullis/` (PROTOCOL.md in
//! crates/challenge): the gateway answers them itself, never the origin.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response};
use portcullis_challenge::{
    ClientBinding, ClientReport, MintedClearance, SliderAnswer, assess_with_work,
};
use portcullis_state::{Gcra, StateStore};
use serde::Deserialize;
use serde_json::json;

use super::{ClientTrust, DEVICE_COOKIE};
use crate::context::now_ms;
use crate::context::{ChallengeState, RequestContext};
use crate::http::respond::{ProxyBody, gateway_response};

/// The largest verify body accepted (a report is well under 4 KB).
const MAX_VERIFY_BODY: usize = 16 * 1024;

/// Attempts per client address on the endpoints: sustained per second, and burst.
const ATTEMPTS_PER_S: f64 = 2.0;
const ATTEMPTS_BURST: u32 = 30;

/// The SDK, served to the interstitial page (and to sites that want it).
const SDK_FILES: [(&str, &str); 5] = [
    ("index.js", include_str!("../../../../sdk/js/src/index.js")),
    (
        "crypto.js",
        include_str!("../../../../sdk/js/src/crypto.js"),
    ),
    ("env.js", include_str!("../../../../sdk/js/src/env.js")),
    ("sign.js", include_str!("../../../../sdk/js/src/sign.js")),
    (
        "captcha.js",
        include_str!("../../../../sdk/js/src/captcha.js"),
    ),
];

const INTERSTITIAL: &str = include_str!("assets/interstitial.html");

/// What the endpoint needs of the request beyond its head.
pub struct PortalRequest<'a> {
    pub parts: &'a Parts,
    /// The whole body, or `None` if it was larger than the inspection limit.
    pub body: Option<&'a [u8]>,
    /// The client's current risk rank (difficulty and refusal follow it).
    pub risk: u8,
    /// 0..1: how loaded the gateway is (difficulty follows it).
    pub load: f32,
    /// Whether the request arrived over TLS (cookies get `Secure`).
    pub tls: bool,
}

/// Answers a request under `/.portcullis/`.
pub async fn serve(
    trust: &ClientTrust,
    state: &dyn StateStore,
    ctx: &mut RequestContext,
    req: PortalRequest<'_>,
) -> Response<ProxyBody> {
    let path = req.parts.uri.path();
    let rest = path
        .strip_prefix(portcullis_challenge::PATH_PREFIX)
        .unwrap_or("");
    if let Some(name) = rest.strip_prefix("sdk/") {
        return sdk_file(ctx, name);
    }
    if !admitted(state, ctx).await {
        let mut response = error(ctx, 429, "rate_limited");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    match (&req.parts.method, rest) {
        (&Method::GET, "challenge") => challenge(trust, ctx, &req),
        (&Method::POST, "verify") => verify(trust, state, ctx, &req).await,
        (&Method::GET, "captcha") => captcha(trust, ctx),
        (&Method::GET, "captcha/bg" | "captcha/piece") => captcha_image(trust, ctx, &req, rest),
        _ => error(ctx, 404, "not_found"),
    }
}

async fn admitted(state: &dyn StateStore, ctx: &RequestContext) -> bool {
    let key = format!("pc:rl:{}", ctx.client_ip);
    let limit = Gcra::per_second(ATTEMPTS_PER_S, ATTEMPTS_BURST);
    match state.rate_limit(&key, limit, 1).await {
        Ok(decision) => decision.allowed,
        Err(e) => {
            tracing::warn!(error = %e, "challenge rate limit lookup failed");
            true
        }
    }
}

fn binding<'a>(ctx: &'a RequestContext) -> Option<ClientBinding<'a>> {
    Some(ClientBinding {
        ip: ctx.client_ip,
        device_id: ctx.device.as_deref()?,
    })
}

fn challenge(
    trust: &ClientTrust,
    ctx: &RequestContext,
    req: &PortalRequest<'_>,
) -> Response<ProxyBody> {
    let Some(client) = binding(ctx) else {
        return error(ctx, 403, "invalid_device");
    };
    if req.risk >= trust.refuse_at {
        return error(ctx, 403, "captcha_required");
    }
    match trust.issuer.issue(&client, req.risk, req.load, now_ms()) {
        Ok(challenge) => json_response(ctx, 200, &challenge),
        Err(e) => error(ctx, e.http_status(), e.code()),
    }
}

#[derive(Deserialize)]
struct VerifyBody {
    token: Option<String>,
    solution: Option<u64>,
    captcha: Option<String>,
    answer: Option<SliderAnswer>,
    #[serde(default)]
    report: ClientReport,
}

async fn verify(
    trust: &ClientTrust,
    state: &dyn StateStore,
    ctx: &mut RequestContext,
    req: &PortalRequest<'_>,
) -> Response<ProxyBody> {
    let Some(client) = binding(ctx) else {
        return error(ctx, 403, "invalid_device");
    };
    let Some(body) = req.body.filter(|b| b.len() <= MAX_VERIFY_BODY) else {
        return error(ctx, 413, "malformed");
    };
    let Ok(input) = serde_json::from_slice::<VerifyBody>(body) else {
        return error(ctx, 400, "malformed");
    };
    let now = now_ms();
    let (replay_key, ttl, risk, flags) = match (&input.token, input.solution, &input.captcha) {
        (Some(token), Some(solution), _) => {
            let solved = match trust.issuer.verify_solution(token, solution, now, &client) {
                Ok(solved) => solved,
                Err(e) => return error(ctx, e.http_status(), e.code()),
            };
            let env = assess_with_work(&input.report, solution);
            let risk = env.risk.max(solved.risk).max(req.risk);
            if risk >= trust.refuse_at {
                ctx.challenge = ChallengeState::Failed;
                return error(ctx, 403, "captcha_required");
            }
            (solved.replay_key(), solved.ttl_ms, risk, env.flags)
        }
        (_, _, Some(token)) => {
            let Some(answer) = &input.answer else {
                return error(ctx, 400, "malformed");
            };
            let solved = match trust.captcha.verify(token, answer, now, &client) {
                Ok(solved) => solved,
                Err(e) => return error(ctx, e.http_status(), e.code()),
            };
            // A person passed the puzzle: trusted, though not as much as a clean check.
            let env = assess_with_work(&input.report, 0);
            (
                solved.replay_key(),
                solved.ttl_ms,
                env.risk.clamp(1, 3),
                env.flags,
            )
        }
        _ => return error(ctx, 400, "malformed"),
    };
    match state
        .put_if_absent(&replay_key, b"", Duration::from_millis(ttl.max(1)))
        .await
    {
        Ok(true) => {}
        Ok(false) => return error(ctx, 409, "replayed"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a solved challenge");
            return error(ctx, 503, "unavailable");
        }
    }
    let platform = input.report.platform;
    let minted = match trust.authority.mint(&client, platform, risk, now) {
        Ok(minted) => minted,
        Err(e) => return error(ctx, 403, e.code()),
    };
    remember_env(state, trust, &minted, &flags).await;
    let mut response = json_response(ctx, 200, &minted.response(now));
    if req
        .parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "cookie=1"))
    {
        set_cookies(&mut response, trust, &minted, req.tls);
    }
    ctx.challenge = ChallengeState::Passed { age_s: 0 };
    ctx.clearance = Some(minted.claims);
    response
}

/// The environment flags of a clearance, for the risk engine of later requests.
pub fn env_key(cid: &str) -> String {
    format!("pc:env:{cid}")
}

async fn remember_env(
    state: &dyn StateStore,
    trust: &ClientTrust,
    minted: &MintedClearance,
    flags: &[&str],
) {
    if flags.is_empty() {
        return;
    }
    let ttl = Duration::from_millis(trust.authority.ttl_ms.max(1));
    let key = env_key(&minted.claims.cid.to_string());
    if let Err(e) = state.put(&key, flags.join(",").as_bytes(), ttl).await {
        tracing::warn!(error = %e, "cannot record the environment of a clearance");
    }
}

fn set_cookies(
    response: &mut Response<ProxyBody>,
    trust: &ClientTrust,
    minted: &MintedClearance,
    tls: bool,
) {
    let secure = if tls { "; Secure" } else { "" };
    let max_age = trust.authority.ttl_ms / 1000;
    let cookies = [
        format!(
            "{}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            trust.cookie, minted.token
        ),
        format!(
            "{DEVICE_COOKIE}={}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}",
            minted.claims.device_id
        ),
    ];
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

fn captcha(trust: &ClientTrust, ctx: &RequestContext) -> Response<ProxyBody> {
    let Some(client) = binding(ctx) else {
        return error(ctx, 403, "invalid_device");
    };
    match trust.captcha.issue(&client, now_ms(), &mut rand::rng()) {
        Ok(puzzle) => json_response(ctx, 200, &puzzle),
        Err(e) => error(ctx, e.http_status(), e.code()),
    }
}

fn captcha_image(
    trust: &ClientTrust,
    ctx: &RequestContext,
    req: &PortalRequest<'_>,
    which: &str,
) -> Response<ProxyBody> {
    let token = req
        .parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
        .unwrap_or("");
    match trust.captcha.render(token, now_ms()) {
        Ok((background, piece)) => {
            let png = if which == "captcha/bg" {
                background
            } else {
                piece
            };
            gateway_response(200, "image/png", Bytes::from(png), &ctx.request_id)
        }
        Err(e) => error(ctx, e.http_status(), e.code()),
    }
}

fn sdk_file(ctx: &RequestContext, name: &str) -> Response<ProxyBody> {
    match SDK_FILES.iter().find(|(file, _)| *file == name) {
        Some((_, source)) => gateway_response(
            200,
            "text/javascript; charset=utf-8",
            Bytes::from_static(source.as_bytes()),
            &ctx.request_id,
        ),
        None => error(ctx, 404, "not_found"),
    }
}

/// The HTML page a browser navigation without a clearance gets: it runs the
/// check with the SDK, receives the clearance as a cookie and reloads.
pub fn interstitial(request_id: &str) -> Bytes {
    Bytes::from(INTERSTITIAL.replace("{{request_id}}", request_id))
}

fn json_response(
    ctx: &RequestContext,
    status: u16,
    value: &impl serde::Serialize,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    gateway_response(
        status,
        "application/json",
        Bytes::from(body),
        &ctx.request_id,
    )
}

fn error(ctx: &RequestContext, status: u16, code: &str) -> Response<ProxyBody> {
    json_response(
        ctx,
        status,
        &json!({"error": code, "request_id": ctx.request_id}),
    )
}

/// Whether `path` is one of the gateway's own endpoints.
pub fn is_portal(path: &str) -> bool {
    path.starts_with(portcullis_challenge::PATH_PREFIX)
}

/// Marks a clearance revoked until it would have expired anyway.
pub async fn revoke(
    state: &dyn StateStore,
    trust: &ClientTrust,
    cid: &str,
) -> portcullis_state::StateResult<()> {
    let ttl = Duration::from_millis(trust.authority.ttl_ms.max(1));
    state.put(&super::check::revoked_key(cid), b"1", ttl).await
}

/// The JSON body of a challenge answer: where an API client finds the challenge.
pub fn challenge_body(request_id: &str, code: &str) -> Bytes {
    Bytes::from(
        json!({
            "error": code,
            "request_id": request_id,
            "challenge": format!("{}challenge", portcullis_challenge::PATH_PREFIX),
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_files_are_served_by_name_only() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let ctx = RequestContext::new("r".into(), ip, ip);
        assert_eq!(sdk_file(&ctx, "index.js").status(), 200);
        assert_eq!(sdk_file(&ctx, "../index.js").status(), 404);
        assert_eq!(sdk_file(&ctx, "").status(), 404);
    }

    #[test]
    fn the_interstitial_carries_the_request_id() {
        let page = interstitial("abc123");
        let text = std::str::from_utf8(&page).unwrap();
        assert!(text.contains("abc123"));
        assert!(text.contains("/.portcullis/sdk/index.js"));
    }
}
