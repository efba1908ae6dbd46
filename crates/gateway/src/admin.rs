//! The admin listener: metrics, health, and ban management.
//!
//! It runs on its own address. When `PORTCULLIS_ADMIN_TOKEN` is set, every
//! endpoint but `/healthz` needs `Authorization: Bearer <token>`, compared in
//! constant time; without it the listener should stay on loopback (the default).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::Shared;
use crate::proxy::gateway_response;
use crate::runtime::ProxyBody;

const JSON: &str = "application/json";

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    if shared.admin_token.is_none() && !listener.local_addr().is_ok_and(|a| a.ip().is_loopback()) {
        tracing::warn!(
            "the admin listener is not on loopback and PORTCULLIS_ADMIN_TOKEN is not set"
        );
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    gateway_response(status.as_u16(), content_type, body.into(), "")
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    reply(status, JSON, body)
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json(status, &serde_json::json!({ "error": message }))
}

fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    token_matches(shared.admin_token.as_deref(), authorization)
}

/// Whether an `Authorization` header carries the expected bearer token
/// (compared in constant time); anything goes when no token is configured.
fn token_matches(expected: Option<&str>, authorization: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        let version = shared.runtime.load().version;
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok", "config_version": version }),
        ));
    }
    if !authorized(&shared, &req) {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => metrics(&shared),
        (Method::GET, "/bans") => json(StatusCode::OK, &shared.bans.list()),
        (Method::POST, "/bans") => add_ban(&shared, req).await,
        (Method::DELETE, p) if p.starts_with("/bans/") => {
            lift_ban(&shared, &p["/bans/".len()..]).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    })
}

fn metrics(shared: &Shared) -> Response<ProxyBody> {
    let stats = shared.state.stats();
    shared.metrics.state_entries.set(stats.entries as i64);
    shared.metrics.state_evictions.set(stats.evictions as i64);
    reply(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        shared.metrics.encode(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    ip: IpAddr,
    ttl_s: u64,
    #[serde(default)]
    reason: String,
}

async fn add_ban(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let Ok(body) = Limited::new(req.into_body(), 64 * 1024).collect().await else {
        return error(StatusCode::BAD_REQUEST, "body unreadable or over 64 KiB");
    };
    let ban: NewBan = match serde_json::from_slice(&body.to_bytes()) {
        Ok(ban) => ban,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{ip, ttl_s, reason}}: {e}"),
            );
        }
    };
    if ban.ttl_s == 0 || ban.ttl_s > 366 * 24 * 3600 {
        return error(
            StatusCode::BAD_REQUEST,
            "ttl_s must be between 1 and one year",
        );
    }
    let reason = if ban.reason.is_empty() {
        "manual ban"
    } else {
        ban.reason.as_str()
    };
    match shared
        .bans
        .ban(ban.ip, Duration::from_secs(ban.ttl_s), reason)
        .await
    {
        Ok(ban) => {
            tracing::info!(ip = %ban.ip, until = ban.until, reason = %ban.reason, "ban added");
            json(StatusCode::CREATED, &ban)
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn lift_ban(shared: &Shared, ip: &str) -> Response<ProxyBody> {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return error(StatusCode::BAD_REQUEST, "not an IP address");
    };
    match shared.bans.lift(ip).await {
        Ok(true) => {
            tracing::info!(%ip, "ban lifted");
            json(StatusCode::OK, &serde_json::json!({ "lifted": ip }))
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no ban on this address"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn bearer_token_check() {
        assert!(token_matches(None, None), "no token configured");
        assert!(token_matches(Some("s3cret"), Some("Bearer s3cret")));
        assert!(!token_matches(Some("s3cret"), Some("Bearer s3cre")));
        assert!(
            !token_matches(Some("s3cret"), Some("s3cret")),
            "scheme required"
        );
        assert!(!token_matches(Some("s3cret"), None));
        assert!(!token_matches(Some("s3cret"), Some("Bearer ")));
    }
}
