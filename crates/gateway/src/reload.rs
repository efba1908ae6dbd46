//! Hot reload: the configuration file (and the feeds and certificates it
//! names) is polled for changes and re-read on SIGHUP. A new configuration is
//! compiled whole and swapped in atomically; an invalid one is refused with
//! its errors logged, and the running one stays.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metrics::OutcomeLabel;
use crate::runtime::{Runtime, modified};
use crate::{ConfigSource, Overrides, Shared};

/// How often files are checked; a change applies within twice this.
const POLL: Duration = Duration::from_millis(500);

pub async fn watch(source: ConfigSource, overrides: Overrides, shared: Arc<Shared>) {
    let ConfigSource::File(path) = &source else {
        return;
    };
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP reload unavailable");
            None
        }
    };
    let mut stamp = stamp_of(path);
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp_of(path);
        let changed = now != stamp || shared.runtime.load().files_changed();
        if by_signal || changed {
            stamp = now;
            reload(
                &source,
                &overrides,
                &shared,
                if by_signal { "sighup" } else { "file change" },
            );
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

/// Loads, compiles and swaps in the configuration; keeps the old one on error.
pub fn reload(
    source: &ConfigSource,
    overrides: &Overrides,
    shared: &Shared,
    trigger: &str,
) -> bool {
    let version = shared.runtime.load().version + 1;
    let outcome = source
        .load(overrides)
        .and_then(|config| Runtime::build(config, version));
    match outcome {
        Ok(runtime) => {
            let old = shared.runtime.load();
            if runtime.config.server != old.config.server {
                tracing::warn!(
                    "listener addresses and TLS listener changes need a restart; other settings applied"
                );
            }
            shared.runtime.store(Arc::new(runtime));
            shared.metrics.config_version.set(version as i64);
            shared
                .metrics
                .config_reloads
                .get_or_create(&OutcomeLabel { outcome: "applied" })
                .inc();
            tracing::info!(version, trigger, "configuration applied");
            true
        }
        Err(e) => {
            shared
                .metrics
                .config_reloads
                .get_or_create(&OutcomeLabel { outcome: "refused" })
                .inc();
            tracing::error!(trigger, error = %format!("{e:#}"), "new configuration refused; the running one stays");
            false
        }
    }
}
