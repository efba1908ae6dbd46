//! Hot reload and the console overlay.
//!
//! The configuration in force is the file's (with the command-line
//! overrides) with the console overlay's sections replacing the file's (see
//! [`portcullis_config::Overlay`]). The file (and the feeds and certificates
//! it names) is polled for changes and re-read on SIGHUP; the console applies
//! a new overlay. Either way the whole configuration is validated, compiled
//! into a new [`Runtime`] and swapped in atomically; an invalid one is
//! refused with its errors, and the running one stays. Both paths hold one
//! lock, so a file reload and a console change never undo each other.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_config::{Config, ConfigError, Overlay};

use crate::control::{ConfigSource, merge};
use crate::files::modified;
use crate::metrics::OutcomeLabel;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// How often files are checked; a change applies within twice this.
const POLL: Duration = Duration::from_millis(500);

/// Why a configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// It does not validate; every problem names its field.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// It validates but cannot be compiled (a feed or certificate file is
    /// unreadable, ...).
    #[error("{0:#}")]
    Refused(anyhow::Error),
}

pub async fn watch(shared: Arc<Shared>) {
    let ConfigSource::File(path) = &shared.control.source else {
        return;
    };
    let path = path.clone();
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP reload unavailable");
            None
        }
    };
    let mut stamp = stamp_of(&path);
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp_of(&path);
        let changed = now != stamp || shared.runtime.load().files_changed();
        if by_signal || changed {
            stamp = now;
            reload(&shared, if by_signal { "sighup" } else { "file change" });
        }
    }
}

/// Modification time and length: editors that rewrite in place within the
/// same second still change the length most of the time.
fn stamp_of(path: &std::path::Path) -> (Option<SystemTime>, Option<u64>) {
    (
        modified(path),
        std::fs::metadata(path).ok().map(|m| m.len()),
    )
}

/// Re-reads the file and applies it with the overlay in force; keeps the
/// running configuration on error.
pub fn reload(shared: &Shared, trigger: &str) -> bool {
    let control = &shared.control;
    let mut parts = control.parts.lock();
    let outcome = control
        .source
        .load(&control.overrides)
        .map_err(ApplyError::Refused)
        .and_then(|file| {
            let merged = merge(&file, &parts.overlay)?;
            install(shared, merged, trigger)?;
            Ok(file)
        });
    match outcome {
        Ok(file) => {
            if let Some(db) = &shared.console_db {
                crate::control::sync_admin_password(db, &file.console);
            }
            parts.file = file;
            true
        }
        Err(e) => {
            refused(shared, trigger, &e);
            false
        }
    }
}

/// Applies `overlay` over the current file: validated, compiled and swapped
/// in, or refused with the running configuration left as it is. Returns
/// the new configuration version.
pub fn apply_overlay(shared: &Shared, overlay: Overlay) -> Result<u64, ApplyError> {
    let mut parts = shared.control.parts.lock();
    let outcome = merge(&parts.file, &overlay)
        .map_err(ApplyError::from)
        .and_then(|merged| install(shared, merged, "console"));
    match outcome {
        Ok(version) => {
            parts.overlay = overlay;
            Ok(version)
        }
        Err(e) => {
            refused(shared, "console", &e);
            Err(e)
        }
    }
}

/// Compiles and swaps in a validated configuration.
fn install(shared: &Shared, config: Config, trigger: &str) -> Result<u64, ApplyError> {
    let version = shared.runtime.load().version + 1;
    let runtime = Runtime::build(config, version).map_err(ApplyError::Refused)?;
    let old = shared.runtime.load();
    if runtime.config.server != old.config.server {
        tracing::warn!(
            "listener addresses and TLS listener changes need a restart; other settings applied"
        );
    }
    if let Some(alerts) = &shared.alerts {
        alerts.reload(&runtime.config);
    }
    shared.runtime.store(Arc::new(runtime));
    shared.metrics.config_version.set(version as i64);
    shared
        .metrics
        .config_reloads
        .get_or_create(&OutcomeLabel { outcome: "applied" })
        .inc();
    tracing::info!(version, trigger, "configuration applied");
    Ok(version)
}

fn refused(shared: &Shared, trigger: &str, error: &ApplyError) {
    shared
        .metrics
        .config_reloads
        .get_or_create(&OutcomeLabel { outcome: "refused" })
        .inc();
    tracing::error!(trigger, error = %error, "new configuration refused; the running one stays");
}

/// Applies the console overlays other nodes save (PostgreSQL LISTEN/NOTIFY),
/// so that a policy applied on one node's console reaches every node.
pub async fn follow_overlays(shared: Arc<Shared>, mut watch: portcullis_console::OverlayWatch) {
    while watch.changed().await.is_some() {
        let shared = Arc::clone(&shared);
        let applied = tokio::task::spawn_blocking(move || {
            let Some(db) = shared.console_db.as_deref() else {
                return;
            };
            match db.latest_overlay() {
                // The node that saved it has it in force already.
                Ok(Some(latest)) if latest.document != shared.control.overlay() => {
                    if let Err(e) = apply_overlay(&shared, latest.document) {
                        tracing::warn!(error = %e, version = latest.version, "an overlay saved on another node was refused");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the latest console overlay"),
            }
        })
        .await;
        if let Err(e) = applied {
            tracing::error!(error = %e, "the overlay follower failed");
        }
    }
}
