//! The allow and deny lists (part of the versioned overlay) and temporary bans.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use http::StatusCode;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::policies::{Applied, Edit, apply_edit};
use super::{Change, J, Reply, audit, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::BanInfo;

/// The longest ban the console sets.
const MAX_BAN_S: u64 = 366 * 24 * 3600;

#[derive(Serialize)]
pub struct ListsReply {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// `console` when the overlay sets the list, `file` otherwise.
    allow_source: &'static str,
    deny_source: &'static str,
}

fn source(set: bool) -> &'static str {
    if set { "console" } else { "file" }
}

pub async fn get(State(state): State<AppState>, _caller: Caller) -> Reply<ListsReply> {
    let overlay = state.gateway.overlay();
    let lists = state.gateway.effective_config().ip_lists;
    ok(ListsReply {
        allow: lists.allow,
        deny: lists.deny,
        allow_source: source(overlay.ip_lists.allow.is_some()),
        deny_source: source(overlay.ip_lists.deny.is_some()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutLists {
    /// `null` gives the list back to the file.
    allow: Option<Vec<IpNet>>,
    deny: Option<Vec<IpNet>>,
    #[serde(default)]
    comment: String,
}

/// Replaces the lists in the overlay in force, keeping its other sections.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    J(request): J<PutLists>,
) -> Reply<Applied> {
    let mut document = state.gateway.overlay();
    document.ip_lists.allow = request.allow;
    document.ip_lists.deny = request.deny;
    let edit = Edit {
        document,
        comment: request.comment,
        base_version: None,
        rollback_of: None,
        action: "lists.update",
    };
    ok(apply_edit(&state, &caller, edit).await?)
}

pub async fn bans(State(state): State<AppState>, _caller: Caller) -> Reply<Vec<BanInfo>> {
    ok(state.gateway.bans())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    ip: IpAddr,
    ttl_s: u64,
    #[serde(default)]
    reason: String,
}

pub async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    J(ban): J<NewBan>,
) -> Result<(StatusCode, axum::Json<BanInfo>), ApiError> {
    if !(1..=MAX_BAN_S).contains(&ban.ttl_s) {
        return Err(ApiError::bad_request(
            "ttl_s must be between 1 and one year",
        ));
    }
    let reason = if ban.reason.trim().is_empty() {
        format!("manual ban by {}", caller.actor)
    } else {
        ban.reason
    };
    let added = state
        .gateway
        .ban(ban.ip, Duration::from_secs(ban.ttl_s), reason)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let change = Change {
        action: "ban.add",
        target: &added.ip.to_string(),
        summary: &format!("banned for {} s: {}", ban.ttl_s, added.reason),
        before: None,
        after: serde_json::to_string(&added).ok(),
    };
    audit(&state, &caller, change).await?;
    Ok((StatusCode::CREATED, axum::Json(added)))
}

#[derive(Serialize)]
pub struct Lifted {
    lifted: IpAddr,
}

pub async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(ip): Path<String>,
) -> Reply<Lifted> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| ApiError::bad_request("not an IP address"))?;
    let before = state.gateway.bans().into_iter().find(|b| b.ip == ip);
    let existed = state
        .gateway
        .lift_ban(ip)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    if !existed {
        return Err(ApiError::not_found("ban on this address"));
    }
    let change = Change {
        action: "ban.lift",
        target: &ip.to_string(),
        summary: "ban lifted",
        before: before.and_then(|b| serde_json::to_string(&b).ok()),
        after: None,
    };
    audit(&state, &caller, change).await?;
    ok(Lifted { lifted: ip })
}

#[derive(Serialize)]
pub struct Revoked {
    revoked: String,
}

/// Revokes one client's clearance (found by its cid in the interception log).
pub async fn revoke_clearance(
    State(state): State<AppState>,
    caller: Caller,
    Path(cid): Path<String>,
) -> Reply<Revoked> {
    let well_formed = cid.len() == 22
        && cid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::bad_request("not a cid"));
    }
    state
        .gateway
        .revoke_clearance(cid.clone())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let change = Change {
        action: "clearance.revoke",
        target: &cid,
        summary: "clearance revoked",
        before: None,
        after: None,
    };
    audit(&state, &caller, change).await?;
    ok(Revoked { revoked: cid })
}
