//! Alerts: webhook messages on spikes of intercepts, origin errors or
//! requests, and on a collapse of the challenge solve rate, aggregated and
//! capped so that an attack is a handful of messages, never a flood.
//!
//! Owns three things, kept apart:
//!
//! - [`AlertEngine`], pure: fed per-minute counts ([`MinuteCounts`]), it
//!   decides when a rule fires (its window count is at least `min_count`
//!   and more than `factor` times the trailing median or mean, or at least
//!   a fixed `threshold`), freezes the baseline while it fires, sends one
//!   message when it starts, an update only when the count has doubled (at
//!   most once per window) or a reminder after `repeat_s`, one message when
//!   it resolves, puts the alerts of one evaluation in one [`Message`], and
//!   caps messages per hour (the excess is counted and reported in the next
//!   message). Time is a parameter. A `solve_rate` rule compares rates, not
//!   counts: it fires when a route (or the check as a whole) had at least
//!   `min_count` challenges in the window and in its baseline minutes, and
//!   the window's solve rate is below `1 / factor` of the baseline's (frozen
//!   while it fires); its message names the collapsed routes.
//! - [`render`], pure: the bodies for a generic JSON schema (documented on
//!   [`render`]), WeCom and DingTalk robots (markdown) and Slack incoming
//!   webhooks (text and blocks), and DingTalk's URL signature.
//! - [`spawn`], the runner: reads the minute rollups of a
//!   [`portcullis_store::EventStore`] (and, for `solve_rate` rules, its
//!   solve-rate query) every `interval_s` behind
//!   `spawn_blocking`, leaves scanner traffic out unless
//!   `traffic.scanner.alert` is set, and posts each message to every
//!   webhook through its own bounded queue (timeout, retries with backoff,
//!   failures counted, URLs logged without their tokens).
//!
//! Origin errors are passed requests answered 500 or above; the rollups
//! keep no status, so the gateway records such events with the reason
//! from [`origin_error_reason`] (`origin_502`, ...), which is what the
//! `origin_errors` rules count.

mod engine;
mod error;
mod format;
mod notify;
mod query;
mod runner;
mod stats;

pub use engine::{
    Alert, AlertEngine, AlertStatus, Count, Message, MinuteCounts, SolveRate, TOP, Tally,
};
pub use format::{SCHEMA, dingtalk_sign, dingtalk_signed_url, render, title};
pub use query::{ORIGIN_ERROR_PREFIX, origin_error_reason};
pub use runner::{AlertsHandle, spawn};
pub use stats::AlertStats;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
