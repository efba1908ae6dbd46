//! What the console needs from the running gateway. The gateway implements
//! [`Gateway`], so this crate does not depend on it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use portcullis_config::{Config, FieldError, Overlay};
use portcullis_store::WriterStats;
use serde::Serialize;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The running gateway, as the console sees it.
pub trait Gateway: Send + Sync + 'static {
    /// The configuration in force: the file with the overlay applied.
    fn effective_config(&self) -> Config;

    /// The file's configuration alone.
    fn file_config(&self) -> Config;

    /// The overlay in force.
    fn overlay(&self) -> Overlay;

    /// Validates `overlay` over the file, without applying it.
    fn check_overlay(&self, overlay: &Overlay) -> Result<(), Vec<FieldError>>;

    /// Validates, compiles and swaps in the file with `overlay`; the
    /// running configuration stays on error. Returns the new configuration
    /// version. Blocking: call it off the async runtime.
    fn apply_overlay(&self, overlay: Overlay) -> Result<u64, ApplyFailure>;

    /// Increases by one with every configuration applied.
    fn config_version(&self) -> u64;

    fn bans(&self) -> Vec<BanInfo>;

    fn ban(
        &self,
        ip: IpAddr,
        ttl: Duration,
        reason: String,
    ) -> BoxFuture<'_, Result<BanInfo, String>>;

    /// `true` when there was a ban to lift.
    fn lift_ban(&self, ip: IpAddr) -> BoxFuture<'_, Result<bool, String>>;

    /// Revokes the clearance `cid` on every gateway sharing the state: its
    /// requests are challenged again.
    fn revoke_clearance(&self, cid: String) -> BoxFuture<'_, Result<(), String>>;

    /// The Prometheus text exposition of the gateway's metrics.
    fn metrics_text(&self) -> String;

    /// The event store writer's counters, when events are stored.
    fn store_stats(&self) -> Option<WriterStats>;
}

/// Why an overlay was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyFailure {
    /// It does not validate; every problem names its field.
    #[error("the configuration does not validate")]
    Invalid(Vec<FieldError>),
    /// It validates but cannot be compiled (a feed file is unreadable, ...).
    #[error("{0}")]
    Refused(String),
}

/// A temporary ban on a client address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanInfo {
    pub ip: IpAddr,
    pub reason: String,
    /// Unix seconds when the ban ends.
    pub until: u64,
}
