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
use portcullis_config::ChallengeConfig;
use portcullis_risk::features::EnvRecord;
use portcullis_state::{Gcra, Op, Reply, StateStore};
use serde::Deserialize;
use serde_json::json;

use super::{ClientTrust, DEVICE_COOKIE};
use crate::context::now_ms;
use crate::context::{ChallengeState, Demand, RequestContext};
use crate::http::respond::{ProxyBody, gateway_response};

/// The largest verify body accepted (a report is well under 4 KB).
const MAX_VERIFY_BODY: usize = 16 * 1024;

/// The window of the device ids counted per environment fingerprint.
const FINGERPRINT_WINDOW: Duration = Duration::from_secs(600);

/// How often the endpoints may be called, and how the work rises with an
/// address's challenge rate (`[challenge]`). Counted per device and per
/// address: many devices on one address is NAT, many checks of one device
/// is not.
#[derive(Debug, Clone, Copy)]
pub struct PortalLimits {
    pub device: Gcra,
    pub ip: Gcra,
    pub ip_quiet_per_minute: u32,
    pub ip_max_extra_bits: u8,
}

impl PortalLimits {
    pub fn new(config: &ChallengeConfig) -> PortalLimits {
        PortalLimits {
            device: Gcra::per_second(
                f64::from(config.device_per_minute) / 60.0,
                config.device_burst,
            ),
            ip: Gcra::per_second(f64::from(config.ip_per_s), config.ip_burst),
            ip_quiet_per_minute: config.ip_quiet_per_minute,
            ip_max_extra_bits: config.ip_max_extra_bits,
        }
    }

    /// Extra bits of work for an address that asked for this many
    /// challenges this minute: one per doubling above the quiet rate.
    pub fn extra_bits(&self, challenges_this_minute: u64) -> u8 {
        let quiet = u64::from(self.ip_quiet_per_minute.max(1));
        if challenges_this_minute < quiet.saturating_mul(2) {
            return 0;
        }
        let doublings = (challenges_this_minute / quiet).ilog2();
        u8::try_from(doublings)
            .unwrap_or(u8::MAX)
            .min(self.ip_max_extra_bits)
    }
}

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
    let is_challenge = req.parts.method == Method::GET && rest == "challenge";
    let admission = admit(trust, state, ctx, is_challenge).await;
    let challenges = match admission {
        Ok(challenges) => challenges,
        Err((why, retry_after_s)) => return limited(ctx, why, retry_after_s),
    };
    match (&req.parts.method, rest) {
        (&Method::GET, "challenge") => {
            let extra = trust.limits.extra_bits(challenges);
            challenge(trust, ctx, &req, extra)
        }
        (&Method::POST, "verify") => verify(trust, state, ctx, &req).await,
        (&Method::GET, "captcha") => captcha(trust, ctx),
        (&Method::GET, "captcha/bg" | "captcha/piece") => captcha_image(trust, ctx, &req, rest),
        _ => error(ctx, 404, "not_found"),
    }
}

/// Spends one call of the device's and of the address's allowance (one
/// batch) and, for a challenge, counts it in the address's minute. Returns
/// that count, or why the call is refused and when to come back.
async fn admit(
    trust: &ClientTrust,
    state: &dyn StateStore,
    ctx: &RequestContext,
    is_challenge: bool,
) -> Result<u64, (&'static str, u64)> {
    let limits = &trust.limits;
    let minute = now_ms() / 60_000;
    let mut ops = vec![
        Op::RateLimit {
            key: format!("pc:rl:ip:{}", ctx.client_ip),
            limit: limits.ip,
            cost: 1,
        },
        Op::Incr {
            key: format!("pc:cr:{minute}:{}", ctx.client_ip),
            delta: i64::from(is_challenge),
            ttl: Duration::from_secs(120),
        },
    ];
    // Without a device id the call is refused anyway (invalid_device).
    if let Some(device) = &ctx.device {
        ops.push(Op::RateLimit {
            key: format!("pc:rl:dv:{device}"),
            limit: limits.device,
            cost: 1,
        });
    }
    let replies = match state.batch(&ops).await {
        Ok(replies) => replies,
        Err(e) => {
            // Fail open: a state outage must not stop every check.
            tracing::warn!(error = %e, "challenge rate limit lookup failed");
            return Ok(0);
        }
    };
    let refused = |reply: Option<&Reply>| match reply {
        Some(Reply::Rate(d)) if !d.allowed => Some(crate::context::retry_after_secs(d.retry_after)),
        _ => None,
    };
    if let Some(wait) = refused(replies.get(2)) {
        return Err(("device", wait));
    }
    if let Some(wait) = refused(replies.first()) {
        return Err(("address", wait));
    }
    match replies.get(1) {
        Some(Reply::Count(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        _ => Ok(0),
    }
}

/// 429 with `Retry-After`, recorded as a throttle with its reason.
fn limited(ctx: &mut RequestContext, why: &'static str, retry_after_s: u64) -> Response<ProxyBody> {
    let retry_after_s = retry_after_s.max(1);
    let demand = Demand::TooMany {
        retry_after_s,
        status: 429,
    };
    ctx.add("portal_limited", why, demand);
    let mut response = json_response(
        ctx,
        429,
        &json!({"error": "rate_limited", "request_id": ctx.request_id}),
    );
    if let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn binding<'a>(ctx: &'a RequestContext) -> Option<ClientBinding<'a>> {
    Some(ClientBinding {
        ip: ctx.client_ip,
        device_id: ctx.device.as_deref()?,
    })
}

fn challenge(
    trust: &ClientTrust,
    ctx: &mut RequestContext,
    req: &PortalRequest<'_>,
    extra_bits: u8,
) -> Response<ProxyBody> {
    let Some(client) = binding(ctx) else {
        return error(ctx, 403, "invalid_device");
    };
    if req.risk >= trust.refuse_at {
        return error(ctx, 403, "captcha_required");
    }
    let policy = &trust.issuer.policy;
    let difficulty = policy
        .difficulty(req.risk, req.load)
        .saturating_add(extra_bits)
        .min(policy.max);
    let issued = trust
        .issuer
        .issue_with(&client, req.risk, difficulty, now_ms(), &mut rand::rng());
    match issued {
        Ok(challenge) => {
            let evidence = format!("difficulty {difficulty} (+{extra_bits} for the address)");
            ctx.add("portal_issued", evidence, Demand::Tag);
            json_response(ctx, 200, &challenge)
        }
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
                remember_denied(state, trust, client.device_id).await;
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
    let fingerprint = input.report.fingerprint();
    remember_env(state, trust, &minted, &flags, &fingerprint).await;
    let evidence = format!("risk {risk}, environment {fingerprint}");
    ctx.add("portal_solved", evidence, Demand::Tag);
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

/// A device refused at the check keeps that failure on the calls it makes
/// without a clearance (`challenge_failed` in the risk rank), for a
/// clearance's lifetime: not passing the check must not cost less than
/// failing it.
async fn remember_denied(state: &dyn StateStore, trust: &ClientTrust, device: &str) {
    let ttl = Duration::from_millis(trust.authority.ttl_ms.max(1));
    let key = portcullis_risk::features::denied_key(device);
    if let Err(e) = state.put(&key, b"1", ttl).await {
        tracing::warn!(error = %e, "cannot record a device refused at the check");
    }
}

/// Records what the check learnt of the clearance's environment for the
/// risk engine of later requests: its flags, and how many device ids have
/// presented the same fingerprint from the same network within about ten
/// minutes (this one included; a set per half-window, as the risk features
/// count). Per network, because a popular phone model shares one
/// fingerprint across a whole app's users, while a farm rotating device ids
/// sits in one place.
async fn remember_env(
    state: &dyn StateStore,
    trust: &ClientTrust,
    minted: &MintedClearance,
    flags: &[&str],
    fingerprint: &str,
) {
    let window_ms = FINGERPRINT_WINDOW.as_millis() as u64;
    let half = now_ms() / (window_ms / 2);
    let adds: Vec<Op> = [half, half + 1]
        .map(|bucket| Op::SetAdd {
            key: format!("pc:fpd:{bucket}:{}:{fingerprint}", minted.claims.ip_prefix),
            member: minted.claims.device_id.clone(),
            ttl: FINGERPRINT_WINDOW,
        })
        .into();
    let devices = match state.batch(&adds).await {
        Ok(replies) => match replies.first() {
            Some(Reply::SetLen(n)) => *n,
            _ => 0,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot count the devices of an environment");
            0
        }
    };
    let ttl = Duration::from_millis(trust.authority.ttl_ms.max(1));
    let key = EnvRecord::key(&minted.claims.cid.to_string());
    let record = EnvRecord::encode(flags, devices);
    if let Err(e) = state.put(&key, record.as_bytes(), ttl).await {
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

fn captcha(trust: &ClientTrust, ctx: &mut RequestContext) -> Response<ProxyBody> {
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
    ctx: &mut RequestContext,
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

fn sdk_file(ctx: &mut RequestContext, name: &str) -> Response<ProxyBody> {
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

/// A refused call, recorded with its code (`challenge_failed`).
fn error(ctx: &mut RequestContext, status: u16, code: &'static str) -> Response<ProxyBody> {
    ctx.add("portal_failed", code, Demand::Refuse { status, code });
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
        let mut ctx = RequestContext::new("r".into(), ip, ip);
        assert_eq!(sdk_file(&mut ctx, "index.js").status(), 200);
        assert_eq!(sdk_file(&mut ctx, "../index.js").status(), 404);
        assert_eq!(sdk_file(&mut ctx, "").status(), 404);
    }

    #[test]
    fn the_work_rises_with_the_address_challenge_rate() {
        let limits = PortalLimits::new(&ChallengeConfig::default());
        // A campus NAT starting its apps together: 150 in a minute, 1 bit.
        assert_eq!(limits.extra_bits(0), 0);
        assert_eq!(limits.extra_bits(119), 0);
        assert_eq!(limits.extra_bits(150), 1);
        assert_eq!(limits.extra_bits(480), 3);
        assert_eq!(limits.extra_bits(1_000_000), 6);
    }

    #[test]
    fn the_interstitial_carries_the_request_id() {
        let page = interstitial("abc123");
        let text = std::str::from_utf8(&page).unwrap();
        assert!(text.contains("abc123"));
        assert!(text.contains("/.portcullis/sdk/index.js"));
    }
}
