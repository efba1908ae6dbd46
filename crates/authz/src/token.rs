//! Verifying a compact JWS: structure, issuer, key, signature, then the time
//! and audience claims. Pure: the keys are loaded and the time is given.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::keys::Issuer;

/// Why a token was not accepted. Each reason is a signal in the gateway's
/// events ([`TokenError::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    /// Too large, not three base64url parts of JSON, a `crit` header, or an
    /// `exp` / `nbf` that is missing (`exp`) or not a number.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// An algorithm this gateway or this issuer does not accept (`none`,
    /// `HS512`, HS256 where only RS256 is configured ...).
    #[error("the token's algorithm is not accepted")]
    BadAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not for this audience")]
    WrongAudience,
    /// No configured issuer has the token's `iss` (or it has none).
    #[error("the token's issuer is not configured")]
    WrongIssuer,
    /// The issuer has no key with the token's `kid` (or, without a `kid`,
    /// more than one key could be meant).
    #[error("the token's key is not known")]
    UnknownKey,
}

impl TokenError {
    /// The signal name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "jwt_missing",
            TokenError::Malformed => "jwt_malformed",
            TokenError::BadAlgorithm => "jwt_bad_algorithm",
            TokenError::BadSignature => "jwt_bad_signature",
            TokenError::Expired => "jwt_expired",
            TokenError::NotYetValid => "jwt_not_yet_valid",
            TokenError::WrongAudience => "jwt_wrong_audience",
            TokenError::WrongIssuer => "jwt_wrong_issuer",
            TokenError::UnknownKey => "jwt_unknown_key",
        }
    }
}

/// A token whose signature and time, issuer and audience claims checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The name of the `[[auth.jwt]]` entry that verified it.
    pub issuer_name: String,
    /// The `sub` claim, when it is a string.
    pub subject: Option<String>,
    /// Every claim of the payload.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// A claim as text (a string, or a number in decimal), e.g. the account
    /// id named by `identity.account_claim`.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The token of an `Authorization` header value: `Bearer <token>`, the
/// scheme in any case. Another scheme, or no header, is a missing token.
pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, TokenError> {
    let value = authorization.ok_or(TokenError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value
        .trim()
        .split_once([' ', '\t'])
        .ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    match token.trim() {
        "" => Err(TokenError::Missing),
        token => Ok(token),
    }
}

#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the verifier must understand; this one understands none.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies a token (already checked for presence and size); also returns
/// the issuer's leeway, for re-checking the time of a remembered token.
pub(crate) fn verify(
    issuers: &[Issuer],
    token: &str,
    now_s: u64,
) -> Result<(VerifiedToken, u64), TokenError> {
    let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = message.split_once('.').ok_or(TokenError::Malformed)?;
    if payload.contains('.') {
        return Err(TokenError::Malformed);
    }
    let header: JoseHeader = decode_part(header)?;
    if header.crit.is_some() {
        return Err(TokenError::Malformed);
    }
    let algorithm = match header.alg.as_str() {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => return Err(TokenError::BadAlgorithm),
    };
    let claims: Map<String, Value> = decode_part(payload)?;
    // The issuer is chosen by the unverified `iss`; only its keys can then
    // make the signature valid.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::WrongIssuer)?;
    let candidates: Vec<&Issuer> = issuers.iter().filter(|i| i.issuer == iss).collect();
    if candidates.is_empty() {
        return Err(TokenError::WrongIssuer);
    }
    let Some((issuer, key)) = candidates.iter().find_map(|issuer| {
        issuer
            .key_for(header.kid.as_deref(), algorithm)
            .map(|key| (*issuer, key))
    }) else {
        let accepted = candidates
            .iter()
            .any(|i| i.keys.iter().any(|k| k.algorithm == algorithm));
        return Err(if accepted {
            TokenError::UnknownKey
        } else {
            TokenError::BadAlgorithm
        });
    };
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, algorithm) {
        Ok(true) => {}
        Ok(false) => return Err(TokenError::BadSignature),
        Err(e) if matches!(e.kind(), ErrorKind::Base64(_)) => return Err(TokenError::Malformed),
        Err(_) => return Err(TokenError::BadSignature),
    }
    check_time(&claims, issuer.leeway_s, now_s)?;
    check_audience(&claims, &issuer.audiences)?;
    let verified = VerifiedToken {
        issuer_name: issuer.name.clone(),
        subject: claims.get("sub").and_then(Value::as_str).map(String::from),
        claims,
    };
    Ok((verified, issuer.leeway_s))
}

fn decode_part<T: DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// `exp` is required: a token that never expires cannot be withdrawn.
pub(crate) fn check_time(
    claims: &Map<String, Value>,
    leeway_s: u64,
    now_s: u64,
) -> Result<(), TokenError> {
    let exp = numeric_date(claims.get("exp"))?.ok_or(TokenError::Malformed)?;
    if now_s >= exp.saturating_add(leeway_s) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))?
        && nbf > now_s.saturating_add(leeway_s)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// RFC 7519 NumericDate: seconds, possibly with a fraction.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, TokenError> {
    let Some(value) = value else { return Ok(None) };
    let n = value.as_number().ok_or(TokenError::Malformed)?;
    if let Some(seconds) = n.as_u64() {
        return Ok(Some(seconds));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
        _ => Err(TokenError::Malformed),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let ok = match claims.get("aud") {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| accepted.iter().any(|a| a == aud)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}
