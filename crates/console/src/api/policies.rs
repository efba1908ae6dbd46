//! The policy editor's API: the editable sections in force, validation,
//! applying a new overlay version, its history, rollback, and the trial of
//! log-only policies.
//!
//! An overlay version is saved only once the gateway has applied it, so
//! the latest version is what is live. Changes are serialised by
//! `apply_lock`.

use axum::extract::{Path, State};
use ipnet::IpNet;
use portcullis_config::{Config, Overlay, PolicyConfig, PolicyMode, RateLimitRule};
use portcullis_store::{TrialCount, TrialQuery};
use serde::{Deserialize, Serialize};

use super::{Change, J, Q, Reply, Window, audit, ok};
use crate::AppState;
use crate::auth::Caller;
use crate::db::{NewOverlay, OverlayMeta, OverlayVersion, now_ms};
use crate::error::{ApiError, FieldIssue};
use crate::gateway::ApplyFailure;
use crate::summary::describe;

/// The sections the console edits, as they are in one configuration.
#[derive(Serialize)]
pub struct Sections {
    policies: Vec<PolicyConfig>,
    rate_limits: Vec<RateLimitRule>,
    ip_lists: Lists,
}

#[derive(Serialize)]
pub struct Lists {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Sections {
    fn of(config: Config) -> Sections {
        Sections {
            policies: config.policies,
            rate_limits: config.rate_limits,
            ip_lists: Lists {
                allow: config.ip_lists.allow,
                deny: config.ip_lists.deny,
            },
        }
    }
}

#[derive(Serialize)]
pub struct Current {
    /// The latest saved overlay version (none before the first change).
    overlay_version: Option<i64>,
    /// Whether that version is the overlay in force (it is not when it
    /// failed to validate over the file at start).
    in_force: bool,
    config_version: u64,
    /// The overlay in force: `null` sections are the file's.
    document: Overlay,
    /// The sections in force (file and overlay merged).
    effective: Sections,
    /// The file's sections alone.
    file: Sections,
}

pub async fn current(State(state): State<AppState>, _caller: Caller) -> Reply<Current> {
    let latest = state.db(|db| db.latest_overlay()).await?;
    let gateway = &state.gateway;
    let document = gateway.overlay();
    let in_force = latest
        .as_ref()
        .map_or(document.is_empty(), |l| l.document == document);
    ok(Current {
        overlay_version: latest.map(|l| l.version),
        in_force,
        config_version: gateway.config_version(),
        effective: Sections::of(gateway.effective_config()),
        file: Sections::of(gateway.file_config()),
        document,
    })
}

#[derive(Serialize)]
pub struct Validation {
    valid: bool,
    errors: Vec<FieldIssue>,
}

pub async fn validate(
    State(state): State<AppState>,
    _caller: Caller,
    J(document): J<Overlay>,
) -> Reply<Validation> {
    let errors = match state.gateway.check_overlay(&document) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(FieldIssue::from).collect(),
    };
    ok(Validation {
        valid: errors.is_empty(),
        errors,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    document: Overlay,
    #[serde(default)]
    comment: String,
    /// The version the edit started from: refused with 409 if another
    /// change was applied since.
    #[serde(default)]
    base_version: Option<i64>,
}

#[derive(Serialize)]
pub struct Applied {
    version: i64,
    config_version: u64,
    summary: String,
}

pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    J(request): J<ApplyRequest>,
) -> Reply<Applied> {
    let edit = Edit {
        document: request.document,
        comment: request.comment,
        base_version: request.base_version,
        rollback_of: None,
        action: "policy.apply",
    };
    ok(apply_edit(&state, &caller, edit).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    version: i64,
    #[serde(default)]
    comment: String,
}

pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    J(request): J<RollbackRequest>,
) -> Reply<Applied> {
    let version = request.version;
    // Version 0 is the file alone, before any console change.
    let document = if version == 0 {
        Overlay::default()
    } else {
        state
            .db(move |db| db.overlay(version))
            .await?
            .ok_or_else(|| ApiError::not_found("overlay version"))?
            .document
    };
    let comment = match (request.comment.is_empty(), version) {
        (false, _) => request.comment,
        (true, 0) => "back to the file's configuration".to_owned(),
        (true, _) => format!("rollback to version {version}"),
    };
    let edit = Edit {
        document,
        comment,
        base_version: None,
        rollback_of: Some(version),
        action: "policy.rollback",
    };
    ok(apply_edit(&state, &caller, edit).await?)
}

/// A change of the overlay.
pub struct Edit {
    pub document: Overlay,
    pub comment: String,
    pub base_version: Option<i64>,
    pub rollback_of: Option<i64>,
    /// The audit action.
    pub action: &'static str,
}

/// Applies an overlay to the gateway, then saves it as a new version and
/// records the change. If saving fails, the previous overlay is put back.
pub async fn apply_edit(
    state: &AppState,
    caller: &Caller,
    edit: Edit,
) -> Result<Applied, ApiError> {
    let _one_at_a_time = state.apply_lock.lock().await;
    let latest = state.db(|db| db.latest_overlay()).await?;
    let latest_version = latest.as_ref().map(|l| l.version);
    if let Some(base) = edit.base_version
        && Some(base) != latest_version
    {
        return Err(ApiError::new(
            http::StatusCode::CONFLICT,
            format!(
                "another change was applied since version {base} (now {}); reload and edit again",
                latest_version.unwrap_or(0)
            ),
        ));
    }
    let before = state.gateway.effective_config();
    let previous = state.gateway.overlay();
    let document = edit.document.clone();
    let applied = state
        .blocking(move |gateway| gateway.apply_overlay(document))
        .await?;
    let config_version = applied.map_err(|failure| match failure {
        ApplyFailure::Invalid(errors) => ApiError::invalid(&errors),
        ApplyFailure::Refused(message) => {
            ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, message)
        }
    })?;
    let summary = describe(&before, &state.gateway.effective_config());
    let saved = save(state, caller, &edit, &summary).await;
    let version = match saved {
        Ok(version) => version,
        Err(e) => {
            let restored = state
                .blocking(move |gateway| gateway.apply_overlay(previous))
                .await;
            if !matches!(restored, Ok(Ok(_))) {
                tracing::error!("the previous overlay could not be put back");
            }
            return Err(e);
        }
    };
    let change = Change {
        action: edit.action,
        target: &format!("overlay version {version}"),
        summary: &summary,
        before: latest_version.map(|v| format!("version {v}")),
        after: serde_json::to_string(&edit.document).ok(),
    };
    audit(state, caller, change).await?;
    tracing::info!(version, config_version, actor = %caller.actor, %summary, "console change applied");
    Ok(Applied {
        version,
        config_version,
        summary,
    })
}

async fn save(
    state: &AppState,
    caller: &Caller,
    edit: &Edit,
    summary: &str,
) -> Result<i64, ApiError> {
    let document = edit.document.clone();
    let actor = caller.actor.clone();
    let comment = edit.comment.clone();
    let summary = summary.to_owned();
    let rollback_of = edit.rollback_of;
    state
        .db(move |db| {
            db.save_overlay(&NewOverlay {
                document: &document,
                actor: &actor,
                comment: &comment,
                summary: &summary,
                rollback_of,
            })
        })
        .await
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<u32>,
}

pub async fn history(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<HistoryQuery>,
) -> Reply<Vec<OverlayMeta>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    ok(state.db(move |db| db.overlays(limit)).await?)
}

pub async fn version(
    State(state): State<AppState>,
    _caller: Caller,
    Path(version): Path<i64>,
) -> Reply<OverlayVersion> {
    let found = state.db(move |db| db.overlay(version)).await?;
    found.map_or_else(|| Err(ApiError::not_found("overlay version")), ok)
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrialParams {
    window: Window,
}

#[derive(Serialize)]
pub struct TrialPolicy {
    name: String,
    path: String,
    challenge_at: Option<u8>,
    intercept_at: Option<u8>,
}

#[derive(Serialize)]
pub struct Trial {
    window: Window,
    from_ms: i64,
    to_ms: i64,
    /// The policies in `log-only` mode now.
    policies: Vec<TrialPolicy>,
    /// What log-only policies would have stopped in the window, per route.
    counts: Vec<TrialCount>,
}

pub async fn trial(
    State(state): State<AppState>,
    _caller: Caller,
    Q(q): Q<TrialParams>,
) -> Reply<Trial> {
    let (from_ms, to_ms) = q.window.range_ms(now_ms());
    let counts = state
        .events(move |store| store.trial(&TrialQuery { from_ms, to_ms }))
        .await?;
    let policies = state
        .gateway
        .effective_config()
        .policies
        .into_iter()
        .filter(|p| p.mode == PolicyMode::LogOnly)
        .map(|p| TrialPolicy {
            name: p.name,
            path: p.path,
            challenge_at: p.challenge_at,
            intercept_at: p.intercept_at,
        })
        .collect();
    ok(Trial {
        window: q.window,
        from_ms,
        to_ms,
        policies,
        counts,
    })
}
