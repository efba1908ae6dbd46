//! Client trust: the challenge service under `/.portcullis/` (proof of work,
//! captcha, clearance minting) and the per-request checks of clearances and
//! request signatures. The cryptography is `portcullis-challenge`; this
//! module adds the HTTP surface and the shared state (single use, replay,
//! revocation).

pub mod check;
pub mod portal;

use std::sync::OnceLock;

use anyhow::Context as _;
use base64::Engine as _;
use portcullis_challenge::{
    ChallengeIssuer, ClearanceAuthority, DifficultyPolicy, Keyring, NetworkBinding,
    SignatureVerifier, SliderCaptcha,
};
use portcullis_config::ChallengeConfig;

/// The compiled `[challenge]` section.
pub struct ClientTrust {
    pub issuer: ChallengeIssuer,
    pub authority: ClearanceAuthority,
    pub verifier: SignatureVerifier,
    pub captcha: SliderCaptcha,
    /// Clients assessed at this rank or above get no clearance (5: never).
    pub refuse_at: u8,
    pub interstitial: bool,
    pub cookie: String,
    /// Whether clearances are checked against the client's network.
    pub bind_network: bool,
    /// Web origins whose pages may use the SDK across origins.
    pub cors_origins: Vec<String>,
    pub limits: portal::PortalLimits,
}

/// Cookie carrying the device id of a browser that passed the interstitial.
pub const DEVICE_COOKIE: &str = "pc_device";

impl ClientTrust {
    pub fn new(config: &ChallengeConfig) -> anyhow::Result<ClientTrust> {
        let keys = keyring(&config.secret_env)?;
        let network = NetworkBinding::default();
        let mut issuer = ChallengeIssuer::new(keys.clone());
        issuer.ttl_ms = config.challenge_ttl_s.saturating_mul(1000);
        issuer.policy = DifficultyPolicy {
            base: config.difficulty,
            min: config.difficulty.min(DifficultyPolicy::default().min),
            ..DifficultyPolicy::default()
        };
        issuer.network = network;
        issuer.bind_network = config.bind_network;
        let mut authority = ClearanceAuthority::new(keys.clone());
        authority.ttl_ms = config.clearance_ttl_s.saturating_mul(1000);
        authority.network = network;
        let verifier = SignatureVerifier {
            max_age_s: config.signature_max_age_s,
            // Nonces of signatures made before this process started may
            // have been used already: with in-memory state they are gone.
            not_before_s: process_started_s(),
            ..SignatureVerifier::default()
        };
        Ok(ClientTrust {
            issuer,
            authority,
            verifier,
            captcha: SliderCaptcha::new(keys),
            refuse_at: config.refuse_at,
            interstitial: config.interstitial,
            cookie: config.cookie.clone(),
            bind_network: config.bind_network,
            cors_origins: config.cors_origins.clone(),
            limits: portal::PortalLimits::new(config),
        })
    }
}

/// The signing secret: from the environment variable when set (hex or
/// base64, at least 32 bytes), else one random secret for the life of the
/// process, so that a reload keeps the clearances already handed out.
fn keyring(env: &str) -> anyhow::Result<Keyring> {
    let secret = match std::env::var(env).ok().filter(|s| !s.trim().is_empty()) {
        Some(text) => decode_secret(text.trim())
            .with_context(|| format!("{env} must hold at least 32 bytes, hex or base64"))?,
        None => process_secret().to_vec(),
    };
    Keyring::new(1, &secret).map_err(|e| anyhow::anyhow!("{env}: {e}"))
}

fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let bytes = hex_decode(text)
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok()
        })?;
    (bytes.len() >= 32).then_some(bytes)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn process_started_s() -> u64 {
    static STARTED: OnceLock<u64> = OnceLock::new();
    *STARTED.get_or_init(|| crate::context::now_ms() / 1000)
}

fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_decode_from_hex_or_base64_and_must_be_long_enough() {
        let hex = "00".repeat(32);
        assert_eq!(decode_secret(&hex).map(|s| s.len()), Some(32));
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 40]);
        assert_eq!(decode_secret(&b64).map(|s| s.len()), Some(40));
        assert!(decode_secret("short").is_none());
        assert!(decode_secret(&"ab".repeat(16)[..30]).is_none());
    }
}
