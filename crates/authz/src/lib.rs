//! `portcullis-authz` owns permission checks (layer 2): verifying the JSON
//! Web Token a request carries (`Authorization: Bearer`, HS256 / RS256 /
//! ES256, keys from the configuration, a PEM file or a local JWKS file;
//! `exp`, `nbf`, `aud` and `iss` checked) and checking it against a route's
//! [`JwtRequirement`](portcullis_config::JwtRequirement): issuers, scopes,
//! claim values, and that the account a request acts on is the token's
//! subject.
//!
//! Key material is read once, in [`JwtVerifier::new`] (environment variables
//! and files: the only I/O here); verification and checks are pure, take the
//! time as a parameter, and never panic. Each failure is a typed reason with
//! a signal name (`as_str`) for the gateway's events; a [`Denial`] is an
//! over-privileged request and carries its evidence. Verified tokens are
//! remembered by hash in a bounded cache, because an RS256 / ES256
//! signature costs a few hundred microseconds and clients repeat their
//! token on every request.

mod check;
mod keys;
mod token;

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use check::{Denial, RequestView};
pub use token::{TokenError, VerifiedToken, bearer_token};

use keys::Issuer;
use portcullis_config::{AuthConfig, JwtRequirement};

/// Why the configured issuers could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("auth.jwt {issuer:?}: environment variable {var} is not set or empty")]
    MissingSecret { issuer: String, var: String },
    #[error("auth.jwt {issuer:?}: the secret in {var} must be at least 32 bytes for HS256")]
    ShortSecret { issuer: String, var: String },
    #[error("auth.jwt {issuer:?}: cannot read {}: {source}", path.display())]
    Read {
        issuer: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth.jwt {issuer:?}: {reason}")]
    BadKey { issuer: String, reason: String },
}

/// The configured issuers with their keys, ready to verify tokens.
///
/// Immutable: when the configuration or one of [`JwtVerifier::files`]
/// changes, the gateway builds a new one and swaps it in.
pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    max_token_bytes: usize,
    files: Vec<PathBuf>,
    cache: Option<TokenCache>,
}

/// SHA-256 of a token -> the verified token and its issuer's leeway.
type TokenCache = quick_cache::sync::Cache<[u8; 32], (Arc<VerifiedToken>, u64)>;

impl JwtVerifier {
    /// Loads every issuer's keys: secrets from the environment, PEM and JWKS
    /// files from disk.
    pub fn new(config: &AuthConfig) -> Result<JwtVerifier, AuthzError> {
        let issuers = config
            .jwt
            .iter()
            .map(Issuer::load)
            .collect::<Result<Vec<_>, _>>()?;
        let files = config
            .jwt
            .iter()
            .filter_map(|i| i.jwks_file.clone().or_else(|| i.public_key_file.clone()))
            .collect();
        Ok(JwtVerifier {
            issuers,
            max_token_bytes: config.max_token_bytes,
            files,
            cache: (config.cache_tokens > 0)
                .then(|| quick_cache::sync::Cache::new(config.cache_tokens)),
        })
    }

    /// Key files (JWKS and PEM) whose change should rebuild the verifier;
    /// the gateway adds them to the files its reload watches.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Verifies a bearer token (the part after `Bearer `) at `now_s` (unix
    /// seconds): size, structure, issuer, key, signature, then `exp`, `nbf`
    /// and `aud`. A token verified before is only checked for its time.
    pub fn verify(&self, bearer_token: &str, now_s: u64) -> Result<VerifiedToken, TokenError> {
        if bearer_token.is_empty() {
            return Err(TokenError::Missing);
        }
        if bearer_token.len() > self.max_token_bytes {
            return Err(TokenError::Malformed);
        }
        let Some(cache) = &self.cache else {
            return token::verify(&self.issuers, bearer_token, now_s).map(|(t, _)| t);
        };
        let key: [u8; 32] = Sha256::digest(bearer_token.as_bytes()).into();
        if let Some((verified, leeway_s)) = cache.get(&key) {
            token::check_time(&verified.claims, leeway_s, now_s)?;
            return Ok(VerifiedToken::clone(&verified));
        }
        let (verified, leeway_s) = token::verify(&self.issuers, bearer_token, now_s)?;
        cache.insert(key, (Arc::new(verified.clone()), leeway_s));
        Ok(verified)
    }

    /// Tokens remembered now (a gauge for the metrics).
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// Checks a verified token against a route's requirement; a denial is an
    /// over-privileged request.
    pub fn check(
        &self,
        token: &VerifiedToken,
        requirement: &JwtRequirement,
        view: &RequestView<'_>,
    ) -> Result<(), Denial> {
        check::check(token, requirement, view)
    }
}

impl std::fmt::Debug for JwtVerifier {
    // Hand-written so that no key material can reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| (i.name.as_str(), i.keys.len()))
                    .collect::<Vec<_>>(),
            )
            .field("max_token_bytes", &self.max_token_bytes)
            .field("files", &self.files)
            .finish()
    }
}
