//! Logging in and out.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};

use super::{Change, J, Reply, audit, audit_as, ok};
use crate::AppState;
use crate::auth::{Caller, ClientIp, Via, cleared_cookie, session_cookie};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::secret::{digest, random_secret, verify_nobody, verify_password};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

/// The session as the UI needs it.
#[derive(Serialize)]
pub struct SessionInfo {
    user: String,
    via: &'static str,
    /// Send it back in `X-CSRF-Token` with every change (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_ms: Option<i64>,
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    J(login): J<Login>,
) -> Result<Response, ApiError> {
    // Reserved before anything else, so that concurrent attempts cannot all
    // reach the password hash; only a success gives it back.
    let attempt = match state.limiter.reserve(ip, Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            return Err(ApiError {
                retry_after_s: Some(wait.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins; wait",
                )
            });
        }
    };
    if state.db(|db| db.user_count()).await? == 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no console user yet: run `portcullis console set-password`",
        ));
    }
    let user = login.username.clone();
    let hash = state.db(move |db| db.password_hash(&user)).await?;
    let password = login.password;
    let verified = state
        .blocking(move |_| match hash {
            Some(hash) => verify_password(&password, &hash),
            None => {
                verify_nobody(&password);
                false
            }
        })
        .await?;
    if !verified {
        tracing::warn!(%ip, user = %login.username, "console login failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    }
    attempt.refund();
    let id = random_secret();
    let csrf = random_secret();
    let ttl_s = state.config.session_ttl_s;
    let expires_ms = now_ms() + i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (user, id_hash, token) = (login.username.clone(), digest(&id), csrf.clone());
    state
        .db(move |db| db.create_session(&user, &id_hash, &token, expires_ms))
        .await?;
    let change = Change {
        action: "login",
        target: &login.username,
        summary: "logged in",
        ..Change::default()
    };
    audit_as(&state, &login.username, ip, change).await?;
    let info = SessionInfo {
        user: login.username,
        via: "session",
        csrf_token: Some(csrf),
        expires_ms: Some(expires_ms),
    };
    let cookie = session_cookie(&id, ttl_s, state.config.secure_cookie);
    Ok(([(header::SET_COOKIE, cookie)], Json(info)).into_response())
}

pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Via::Session { id_hash, .. } = &caller.via {
        let id_hash = id_hash.clone();
        state.db(move |db| db.delete_session(&id_hash)).await?;
        let change = Change {
            action: "logout",
            target: &caller.actor,
            summary: "logged out",
            ..Change::default()
        };
        audit(&state, &caller, change).await?;
    }
    let cookie = cleared_cookie(state.config.secure_cookie);
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

pub async fn current(caller: Caller) -> Reply<SessionInfo> {
    let (csrf_token, expires_ms) = match &caller.via {
        Via::Session {
            csrf, expires_ms, ..
        } => (Some(csrf.clone()), Some(*expires_ms)),
        _ => (None, None),
    };
    ok(SessionInfo {
        via: caller.via.name(),
        user: caller.actor,
        csrf_token,
        expires_ms,
    })
}
