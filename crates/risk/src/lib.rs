//! The risk engine (layer 3): turns the signals of the other layers and the
//! request's features into a risk rank 0-4 with its reasons, and writes the
//! risk headers the origin reads.
//!
//! - [`score`]: pure, no I/O: [`RiskEngine::assess`] over a [`RiskInput`],
//!   a transparent weighted sum configured by `[risk]`.
//! - [`features`]: the per-request counts kept in the shared state
//!   (velocity, accounts per device, first-seen ages), gathered in one batch.
//! - [`headers`]: pure: `x-wx-risk-rank` and its companions, optionally
//!   signed with HMAC-SHA256 so an origin can tell them from forged ones.

pub mod features;
pub mod headers;
pub mod score;

#[cfg(test)]
mod readme_vector;

pub use features::{FeatureKeys, Features, gather};
pub use headers::{HeaderFacts, RiskHeaders, VerifyError, signing_secret, verify_signature};
pub use score::{
    AsSignal, ChallengeState, DeviceFacts, DeviceFlags, Evidence, IpType, Reason, Reasons,
    RiskAssessment, RiskEngine, RiskInput, SignalRef, Velocity, Windows,
};

/// Why the risk engine or its headers cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskError {
    #[error("invalid [risk] configuration: {0}")]
    Config(String),
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error(
        "risk.sign_headers is on but the environment variable {0} is not set (or empty, or not UTF-8)"
    )]
    MissingSecret(String),
    #[error(
        "the risk header signing secret must be at least {} bytes",
        headers::MIN_SECRET_BYTES
    )]
    WeakSecret,
}
