//! The runner's counters, readable at any time through the handle.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// A snapshot of what the alerts runner has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertStats {
    /// Rule evaluations run (one per interval with fresh counts).
    pub evaluations: u64,
    /// Reads of the store that failed (the evaluation is skipped).
    pub query_errors: u64,
    /// Messages produced (each goes to every webhook).
    pub messages: u64,
    /// Alerts held back by the hourly cap.
    pub suppressed: u64,
    /// Posts accepted by a webhook.
    pub delivered: u64,
    /// Attempts retried after a transient failure.
    pub retries: u64,
    /// Posts given up after their last attempt.
    pub failed: u64,
    /// Messages dropped because a webhook's queue was full.
    pub dropped: u64,
    /// Webhooks left out because they could not be set up (missing secret).
    pub webhook_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) evaluations: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) suppressed: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) webhook_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> AlertStats {
        AlertStats {
            evaluations: self.evaluations.load(Relaxed),
            query_errors: self.query_errors.load(Relaxed),
            messages: self.messages.load(Relaxed),
            suppressed: self.suppressed.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retries: self.retries.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            webhook_errors: self.webhook_errors.load(Relaxed),
        }
    }
}
