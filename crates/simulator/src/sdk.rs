//! A client of the challenge protocol (crates/challenge/PROTOCOL.md), as the
//! mini-program SDK on a phone runs it: fetch a challenge, solve the proof of
//! work at the pace of a JS engine, post the solution with the environment
//! report, then sign every request with the clearance's key.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, Method};
use portcullis_challenge::signature;
use portcullis_challenge::{ClientReport, SigningKey, pow};
use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::http::{Call, Gateway, ORIGIN_MARK};
use crate::identity::nonce;

/// Header carrying the device id (PROTOCOL.md section 1).
pub const DEVICE_HEADER: HeaderName = HeaderName::from_static("x-pc-device");
const CLEARANCE_HEADER: HeaderName = HeaderName::from_static("x-pc-clearance");

/// Hashes per millisecond of the SDK's JS solver on a phone (PROTOCOL.md:
/// ~2-5k/ms): a phone cannot report a faster solve than this.
const JS_HASHES_PER_MS: std::ops::Range<u64> = 2_000..5_000;

/// A clearance and the key that signs requests with it.
#[derive(Debug, Clone)]
pub struct Clearance {
    pub cid: String,
    pub token: String,
    key: SigningKey,
    /// Server clock minus ours, in milliseconds.
    offset_ms: i64,
    /// The rank the gateway gave the device at issue.
    pub risk: u8,
}

/// How a check ended.
#[derive(Debug, Clone)]
pub enum CheckOutcome {
    Cleared(Clearance),
    /// The gateway answered with an error code (`rejected`, `rate_limited` ...).
    Refused(String),
    /// No challenge service answered (or the exchange failed).
    Unavailable(String),
}

/// Who runs the check: the request context shared with the app's requests.
pub struct Client<'a> {
    pub gateway: &'a Gateway,
    pub population: &'static str,
    pub ip: std::net::IpAddr,
    pub device: &'a str,
    /// The app's usual headers (user agent, referer ...).
    pub headers: &'a [(HeaderName, String)],
}

#[derive(Deserialize)]
struct ChallengeMessage {
    token: String,
    difficulty: u8,
    nonce: String,
}

#[derive(Deserialize)]
struct VerifyMessage {
    cid: String,
    clearance: String,
    signing_key: String,
    #[serde(default)]
    risk: u8,
    server_time: u64,
}

#[derive(Deserialize)]
struct ErrorMessage {
    error: String,
}

/// Runs the silent check; `report` gets the solve time (and adds it to
/// `since_start_ms`).
pub async fn check(
    client: &Client<'_>,
    mut report: ClientReport,
    rng: &mut StdRng,
) -> CheckOutcome {
    let challenge: ChallengeMessage =
        match exchange(client, Method::GET, "/.portcullis/challenge", Bytes::new()).await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(challenge) => challenge,
                Err(e) => return CheckOutcome::Unavailable(format!("challenge: {e}")),
            },
            Err(outcome) => return outcome,
        };
    let Some(nonce) = pow::decode_nonce(&challenge.nonce) else {
        return CheckOutcome::Unavailable("challenge nonce".into());
    };
    let started = Instant::now();
    let difficulty = challenge.difficulty;
    let Ok(solution) = tokio::task::spawn_blocking(move || pow::solve(&nonce, difficulty)).await
    else {
        return CheckOutcome::Unavailable("solver task failed".into());
    };
    // A phone's JS engine is slower than this native solver: report, and
    // spend, the time the SDK would have taken.
    let js_ms = solution / rng.random_range(JS_HASHES_PER_MS);
    let solved_ms = started.elapsed().as_millis() as u64;
    if js_ms > solved_ms {
        tokio::time::sleep(Duration::from_millis(js_ms - solved_ms)).await;
    }
    report.solve_ms = js_ms.max(solved_ms).max(1);
    report.since_start_ms += report.solve_ms;
    let body = serde_json::json!({
        "token": challenge.token,
        "solution": solution,
        "report": report,
    });
    let verified: VerifyMessage = match exchange(
        client,
        Method::POST,
        "/.portcullis/verify",
        Bytes::from(body.to_string()),
    )
    .await
    {
        Ok(body) => match serde_json::from_slice(&body) {
            Ok(verified) => verified,
            Err(e) => return CheckOutcome::Unavailable(format!("verify: {e}")),
        },
        Err(outcome) => return outcome,
    };
    let mut key = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(&verified.signing_key, &mut key) {
        Ok(32) => {}
        _ => return CheckOutcome::Unavailable("signing key".into()),
    }
    CheckOutcome::Cleared(Clearance {
        cid: verified.cid,
        token: verified.clearance,
        key: SigningKey::from_bytes(key),
        offset_ms: verified.server_time as i64 - now_ms() as i64,
        risk: verified.risk,
    })
}

/// One request of the protocol; a non-200 answer ends the check.
async fn exchange(
    client: &Client<'_>,
    method: Method,
    target: &str,
    body: Bytes,
) -> Result<Bytes, CheckOutcome> {
    let mut headers = client.headers.to_vec();
    headers.push((DEVICE_HEADER, client.device.to_string()));
    if !body.is_empty() {
        headers.push((CONTENT_TYPE, "application/json".into()));
    }
    let call = Call {
        method,
        target,
        client_ip: client.ip,
        headers: &headers,
        body,
        population: client.population,
    };
    let answer = client
        .gateway
        .send(&call)
        .await
        .map_err(CheckOutcome::Unavailable)?;
    if answer.headers.contains_key(ORIGIN_MARK) {
        return Err(CheckOutcome::Unavailable(format!(
            "{target} reached the origin ({}): no challenge service",
            answer.status
        )));
    }
    if answer.status != 200 {
        let code = serde_json::from_slice::<ErrorMessage>(&answer.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| answer.status.to_string());
        return Err(CheckOutcome::Refused(code));
    }
    Ok(answer.body)
}

impl Clearance {
    /// The headers that sign a request (PROTOCOL.md section 3).
    pub fn sign(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        rng: &mut StdRng,
    ) -> Vec<(HeaderName, String)> {
        let nonce = nonce(rng);
        let call = signature::SdkCall {
            method,
            target,
            body,
            created: (now_ms() as i64 + self.offset_ms).max(0) as u64 / 1000,
            nonce: &nonce,
        };
        match signature::sdk_headers(&self.key, &self.cid, &self.token, &call) {
            Ok(headers) => headers
                .into_iter()
                .map(|(name, value)| (HeaderName::from_static(name), value))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot sign; sending unsigned");
                vec![(CLEARANCE_HEADER, self.token.clone())]
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
