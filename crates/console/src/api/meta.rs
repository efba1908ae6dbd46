//! Health, metrics and the API's own description.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Serialize;

use super::{Reply, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The OpenAPI 3 document of every route (checked against the router by a test).
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
    config_version: u64,
}

pub async fn healthz(State(state): State<AppState>) -> Reply<Health> {
    ok(Health {
        status: "ok",
        config_version: state.gateway.config_version(),
    })
}

/// Open like before the console when `PORTCULLIS_ADMIN_TOKEN` is unset (the
/// admin listener is on loopback); with it set, any valid credential.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    // Every admin route needs a credential: a session, an API token (what
    // a Prometheus scraper uses) or the admin token.
    caller?;
    let text = state.gateway.metrics_text();
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
