//! Sending one simulated request through the gateway, and reading what came
//! back: the origin's echo (with the risk headers it received) or the
//! gateway's own answer.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Header carrying the population label to the origin.
pub const POPULATION_HEADER: &str = "x-sim-population";
/// Header the simulator's origin puts on its answers.
pub const ORIGIN_MARK: &str = "x-sim-origin";
/// Error code of the policy intercept response in `bench/simulate.toml`.
pub const INTERCEPT_CODE: &str = "risk_intercepted";

const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The gateway under test, over HTTP/1.1 with pooled connections. Every
/// request arrives from 127.0.0.1 (a trusted proxy in the simulated config)
/// and names its client in `x-forwarded-for`.
#[derive(Clone)]
pub struct Gateway {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

/// One request as a client sends it.
pub struct Call<'a> {
    pub method: Method,
    /// Origin-form target: path and query, already percent-encoded.
    pub target: &'a str,
    pub client_ip: IpAddr,
    pub headers: &'a [(HeaderName, String)],
    pub body: Bytes,
    pub population: &'static str,
}

/// A response, whoever wrote it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Gateway {
    /// `base` is `http://host:port`.
    pub fn new(base: &str, timeout: Duration) -> Gateway {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Gateway {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build(connector),
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, String> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.base, call.target))
            .header("x-forwarded-for", call.client_ip.to_string())
            .header(POPULATION_HEADER, call.population);
        for (name, value) in call.headers {
            builder = builder.header(name.clone(), value.as_str());
        }
        let request = builder
            .body(Full::new(call.body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "timeout".to_string())?
    }
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The origin answered; the ranks are those it received (none on routes
    /// without a policy, or before the gateway writes risk headers).
    Passed {
        status: u16,
        rank: Option<u8>,
        device_rank: Option<u8>,
        reasons: Vec<String>,
    },
    /// The gateway asked for the check (`x-pc-error` / `error` code).
    Challenged { code: String },
    /// The policy's intercept response.
    Intercepted,
    /// 429, or 503 with `Retry-After`.
    Throttled,
    /// Any other answer of the gateway.
    Blocked { status: u16, code: String },
    /// No answer (connection error, timeout).
    Failed { error: String },
}

#[derive(Deserialize, Default)]
struct OriginEcho {
    #[serde(default)]
    risk: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct GatewayError {
    #[serde(default)]
    error: Option<String>,
}

/// Codes with which the gateway sends a client to the check.
fn is_challenge_code(code: &str) -> bool {
    matches!(
        code,
        "challenge_required" | "captcha_required" | "signature_stale"
    ) || code.starts_with("clearance_")
}

/// Reads an answer; `risk_rank_header` and friends name the echoed headers.
pub fn classify(answer: &Answer, headers: &RiskHeaderNames) -> Verdict {
    if answer.headers.contains_key(ORIGIN_MARK) {
        let echo: OriginEcho = serde_json::from_slice(&answer.body).unwrap_or_default();
        let rank = |name: &str| {
            echo.risk
                .get(name)
                .and_then(|v| v.trim().parse::<u8>().ok())
        };
        let reasons = echo
            .risk
            .get(&headers.reasons)
            .map(|r| {
                r.split(',')
                    .map(|s| s.split(':').next().unwrap_or(s).trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        return Verdict::Passed {
            status: answer.status,
            rank: rank(&headers.rank).filter(|r| *r <= 4),
            device_rank: rank(&headers.device_rank).filter(|r| *r <= 4),
            reasons,
        };
    }
    let pc_error = answer
        .headers
        .get("x-pc-error")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body_error = serde_json::from_slice::<GatewayError>(&answer.body)
        .unwrap_or_default()
        .error;
    let code = pc_error.or(body_error);
    match (answer.status, code) {
        (_, Some(code)) if code == INTERCEPT_CODE => Verdict::Intercepted,
        (401 | 403, Some(code)) if is_challenge_code(&code) => Verdict::Challenged { code },
        (429, _) => Verdict::Throttled,
        (503, _) if answer.headers.contains_key(http::header::RETRY_AFTER) => Verdict::Throttled,
        (status, code) => Verdict::Blocked {
            status,
            code: code.unwrap_or_else(|| status.to_string()),
        },
    }
}

/// Names of the risk headers the origin echoes.
#[derive(Debug, Clone)]
pub struct RiskHeaderNames {
    pub rank: String,
    pub device_rank: String,
    pub reasons: String,
}

impl Default for RiskHeaderNames {
    fn default() -> Self {
        let names = portcullis_config::risk::RiskHeaderNames::default();
        RiskHeaderNames {
            rank: names.risk_rank,
            device_rank: names.device_risk_rank,
            reasons: names.risk_reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().expect("value"));
        }
        Answer {
            status,
            headers: map,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn origin_echo_gives_the_ranks() {
        let names = RiskHeaderNames::default();
        let body = r#"{"risk":{"x-wx-risk-rank":"3","x-wx-device-risk-rank":"1","x-wx-risk-reasons":"ip_datacenter:25,automation:40"}}"#;
        assert_eq!(
            classify(&answer(200, &[(ORIGIN_MARK, "1")], body), &names),
            Verdict::Passed {
                status: 200,
                rank: Some(3),
                device_rank: Some(1),
                reasons: vec!["ip_datacenter".into(), "automation".into()],
            }
        );
        let unranked = classify(&answer(401, &[(ORIGIN_MARK, "1")], "{}"), &names);
        assert!(matches!(
            unranked,
            Verdict::Passed {
                status: 401,
                rank: None,
                ..
            }
        ));
    }

    #[test]
    fn gateway_answers_by_status_and_code() {
        let names = RiskHeaderNames::default();
        let challenge = answer(
            401,
            &[("x-pc-error", "challenge_required")],
            r#"{"error":"challenge_required"}"#,
        );
        assert_eq!(
            classify(&challenge, &names),
            Verdict::Challenged {
                code: "challenge_required".into()
            }
        );
        let intercept = answer(403, &[], r#"{"error":"risk_intercepted","request_id":"r"}"#);
        assert_eq!(classify(&intercept, &names), Verdict::Intercepted);
        assert_eq!(
            classify(&answer(429, &[("retry-after", "1")], ""), &names),
            Verdict::Throttled
        );
        assert_eq!(
            classify(&answer(403, &[], r#"{"error":"blocked"}"#), &names),
            Verdict::Blocked {
                status: 403,
                code: "blocked".into()
            }
        );
        assert_eq!(
            classify(&answer(400, &[], "not json"), &names),
            Verdict::Blocked {
                status: 400,
                code: "400".into()
            }
        );
    }
}
