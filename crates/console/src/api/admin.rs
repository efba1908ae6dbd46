//! API tokens for automation, and the audit log.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Change, J, Q, Reply, audit, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::db::{AuditEntry, TokenInfo};
use crate::error::ApiError;
use crate::secret::{digest, new_api_token};

pub async fn tokens(State(state): State<AppState>, _caller: Caller) -> Reply<Vec<TokenInfo>> {
    ok(state.db(|db| db.tokens()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
}

#[derive(Serialize)]
pub struct CreatedToken {
    /// Shown once: only its digest is kept.
    token: String,
    info: TokenInfo,
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    J(request): J<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "a token needs a name of 1 to 64 characters",
        ));
    }
    let token = new_api_token();
    let (token_hash, actor, token_name) = (digest(&token), caller.actor.clone(), name.clone());
    let info = state
        .db(move |db| db.create_token(&token_name, &token_hash, &actor))
        .await?;
    let change = Change {
        action: "token.create",
        target: &format!("token {} ({name})", info.id),
        summary: &format!("API token {name:?} created"),
        ..Change::default()
    };
    audit(&state, &caller, change).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Reply<TokenInfo> {
    let revoked = state
        .db(move |db| db.revoke_token(id))
        .await?
        .ok_or_else(|| ApiError::not_found("unrevoked token"))?;
    let change = Change {
        action: "token.revoke",
        target: &format!("token {} ({})", revoked.id, revoked.name),
        summary: &format!("API token {:?} revoked", revoked.name),
        ..Change::default()
    };
    audit(&state, &caller, change).await?;
    ok(revoked)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    before_id: Option<i64>,
    limit: Option<u32>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<AuditQuery>,
) -> Reply<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    ok(state.db(move |db| db.audit_log(q.before_id, limit)).await?)
}
