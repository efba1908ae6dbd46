//! `portcullis-challenge` owns human-machine verification and the trust a
//! client earns from it, as pure logic (no sockets, no async, no storage;
//! time is always a parameter in unix milliseconds or seconds):
//!
//! - [`pow`]: stateless proof-of-work challenges (SHA-256 hashcash), HMAC-
//!   signed and bound to the client's IP prefix and device id, single-use
//!   through the caller's [`SeenStore`], difficulty from risk and load.
//! - [`env`](mod@env): the [`ClientReport`] the SDK posts with a solution and its
//!   assessment into flags and a risk rank 0-4.
//! - [`clearance`]: signed, expiring clearance tokens (key ids and a
//!   [`Keyring`] for rotation) and the per-clearance signing key.
//! - [`signature`]: request signatures per HTTP Message Signatures
//!   (RFC 9421, `hmac-sha256`) over a `Content-Digest` (RFC 9530).
//! - [`captcha`]: a stateless slider captcha for the highest risk (first cut).
//!
//! The gateway wires these into the `/.portcullis/` endpoints and layer 2;
//! the wire format is in `PROTOCOL.md` beside this crate's manifest.

pub mod captcha;
pub mod clearance;
pub mod env;
pub mod keys;
pub mod pow;
pub mod signature;

pub use captcha::{CaptchaError, CaptchaPuzzle, SliderAnswer, SliderCaptcha, TracePoint};
pub use clearance::{
    Cid, ClearanceAuthority, ClearanceCheck, ClearanceClaims, ClearanceError, MintedClearance,
    VerifyResponse,
};
pub use env::{ClientReport, EnvAssessment, Platform, assess, assess_with_work};
pub use keys::{ClientBinding, IpPrefix, KeyError, Keyring, NetworkBinding, SigningKey};
pub use pow::{Challenge, ChallengeIssuer, DifficultyPolicy, PowError, SeenStore, SolvedChallenge};
pub use signature::{
    DigestCheck, Fields, InvalidReason, RequestTarget, SignParams, SignatureError,
    SignatureHeaders, SignatureVerifier, VerifiedSignature,
};

/// The reserved path prefix of the challenge endpoints.
pub const PATH_PREFIX: &str = "/.portcullis/";
