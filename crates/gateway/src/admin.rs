//! The admin listener, on its own address. It serves the console (see
//! the `console` module) when `[console]` is on; otherwise this minimal API:
//! health, metrics and ban management. Every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>`, compared in constant time: the token of
//! `PORTCULLIS_ADMIN_TOKEN`, or one generated at start and shown once.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use http::{StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::Shared;

/// Serves `router` on `listener`, each request carrying the client's
/// address (`ConnectInfo<SocketAddr>`).
pub async fn serve(listener: TcpListener, router: Router) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.oneshot(req).await.into_response()) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The minimal admin API, for a gateway without the console.
pub fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/bans", get(list_bans).post(add_ban))
        .route("/bans/{ip}", delete(lift_ban))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if token_matches(shared.admin_token.as_deref(), authorization) {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}

/// Whether an `Authorization` header carries the expected bearer token
/// (compared in constant time); nothing does when no token is configured.
fn token_matches(expected: Option<&str>, authorization: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let version = shared.runtime.load().version;
    Json(serde_json::json!({ "status": "ok", "config_version": version })).into_response()
}

/// The Prometheus text exposition, with the state's gauges refreshed.
pub fn metrics_text(shared: &Shared) -> String {
    let metrics = &shared.metrics;
    let stats = shared.state.stats();
    metrics.state_entries.set(stats.entries as i64);
    metrics.state_evictions.set(stats.evictions as i64);
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for tier in shared.state.tier_stats() {
        let label = crate::metrics::TierLabel {
            tier: tier.tier.name(),
        };
        let tiers = &metrics.state_tiers;
        tiers.entries.get_or_create(&label).set(gauge(tier.entries));
        tiers
            .capacity
            .get_or_create(&label)
            .set(gauge(tier.capacity));
        tiers
            .evictions
            .get_or_create(&label)
            .set(gauge(tier.evictions));
        tiers.refused.get_or_create(&label).set(gauge(tier.refused));
    }
    let health = shared.state.health();
    for (name, value) in [
        ("up", u64::from(health.available)),
        ("outages", health.outages),
        ("failures", health.failures),
        ("commands", health.commands),
        ("round_trips", health.round_trips),
        ("background_round_trips", health.background_round_trips),
    ] {
        let label = crate::metrics::NameLabel { name };
        metrics
            .state_backend
            .get_or_create(&label)
            .set(gauge(value));
    }
    metrics.encode()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics_text(&shared),
    )
        .into_response()
}

async fn list_bans(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.bans.list()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    ip: IpAddr,
    ttl_s: u64,
    #[serde(default)]
    reason: String,
}

async fn add_ban(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let ban: NewBan = match serde_json::from_slice(&body) {
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
            (StatusCode::CREATED, Json(ban)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn lift_ban(State(shared): State<Arc<Shared>>, Path(ip): Path<String>) -> Response {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return error(StatusCode::BAD_REQUEST, "not an IP address");
    };
    match shared.bans.lift(ip).await {
        Ok(true) => {
            tracing::info!(%ip, "ban lifted");
            Json(serde_json::json!({ "lifted": ip })).into_response()
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
        assert!(!token_matches(None, None), "no token configured: closed");
        assert!(!token_matches(None, Some("Bearer x")));
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
