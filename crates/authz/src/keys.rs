//! Loading an issuer's keys: the one place that reads the environment and
//! files. Every key is bound to exactly one algorithm, so a token can never
//! pick how its key is used (an RSA public key is never an HMAC secret).

use std::io::Read as _;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use portcullis_config::{JwtAlgorithm, JwtIssuerConfig};

use crate::AuthzError;

/// Key files larger than this are refused: a JWKS is a few KB.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// Keys kept per issuer; a token without `kid` is tried against one key only.
const MAX_KEYS: usize = 64;
/// RFC 7518 section 3.2: an HS256 key must be at least as long as the hash.
const MIN_SECRET_BYTES: usize = 32;

pub(crate) struct Issuer {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway_s: u64,
    pub keys: Vec<Key>,
}

pub(crate) struct Key {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl Issuer {
    pub fn load(config: &JwtIssuerConfig) -> Result<Issuer, AuthzError> {
        let bad = |reason: String| AuthzError::BadKey {
            issuer: config.name.clone(),
            reason,
        };
        let allowed: Vec<Algorithm> = config.algorithms.iter().map(|a| algorithm(*a)).collect();
        let keys = if let Some(var) = &config.secret_env {
            vec![secret_key(config, var)?]
        } else if let Some(pem) = &config.public_key_pem {
            vec![pem_key(pem.as_bytes(), &allowed).map_err(bad)?]
        } else if let Some(path) = &config.public_key_file {
            let pem = read_limited(config, path)?;
            vec![pem_key(&pem, &allowed).map_err(bad)?]
        } else if let Some(path) = &config.jwks_file {
            let text = read_limited(config, path)?;
            jwks_keys(&config.name, &text, &allowed).map_err(bad)?
        } else {
            return Err(bad("no key source".into()));
        };
        Ok(Issuer {
            name: config.name.clone(),
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            leeway_s: config.leeway_s,
            keys,
        })
    }

    /// The key for a token's `kid` and `alg`: the key with that id, else a
    /// key without an id; a token without `kid` needs exactly one candidate.
    pub fn key_for(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&Key> {
        let mut candidates = self.keys.iter().filter(|k| k.algorithm == algorithm);
        match kid {
            Some(kid) => {
                let anonymous = candidates.clone().find(|k| k.kid.is_none());
                candidates
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .or(anonymous)
            }
            None => {
                let first = candidates.next();
                if candidates.next().is_some() {
                    None
                } else {
                    first
                }
            }
        }
    }
}

pub(crate) fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

fn secret_key(config: &JwtIssuerConfig, var: &str) -> Result<Key, AuthzError> {
    let secret = std::env::var(var).unwrap_or_default();
    if secret.is_empty() {
        return Err(AuthzError::MissingSecret {
            issuer: config.name.clone(),
            var: var.into(),
        });
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthzError::ShortSecret {
            issuer: config.name.clone(),
            var: var.into(),
        });
    }
    Ok(Key {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(secret.as_bytes()),
    })
}

fn read_limited(config: &JwtIssuerConfig, path: &Path) -> Result<Vec<u8>, AuthzError> {
    let read_error = |source| AuthzError::Read {
        issuer: config.name.clone(),
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(AuthzError::BadKey {
            issuer: config.name.clone(),
            reason: format!("{} is larger than 1 MiB", path.display()),
        });
    }
    Ok(bytes)
}

/// A PEM public key (SPKI `PUBLIC KEY`, or `RSA PUBLIC KEY`) for RS256 or ES256.
fn pem_key(pem: &[u8], allowed: &[Algorithm]) -> Result<Key, String> {
    let attempts = [
        (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem as fn(&[u8]) -> _,
        ),
        (Algorithm::ES256, DecodingKey::from_ec_pem),
    ];
    attempts
        .into_iter()
        .filter(|(alg, _)| allowed.contains(alg))
        .find_map(|(algorithm, parse)| {
            parse(pem).ok().map(|key| Key {
                kid: None,
                algorithm,
                key,
            })
        })
        .ok_or_else(|| {
            format!("the public key is not a PEM key for any of the algorithms {allowed:?}")
        })
}

/// The usable keys of a JWKS document. Keys of other types, curves, uses or
/// algorithms are skipped with a warning, so one exotic key does not stop
/// the others; a set with no usable key is an error.
fn jwks_keys(issuer: &str, text: &[u8], allowed: &[Algorithm]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet =
        serde_json::from_slice(text).map_err(|e| format!("the JWKS file is not a key set: {e}"))?;
    let mut keys = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        match jwk_key(raw, allowed) {
            Ok(key) if keys.len() < MAX_KEYS => keys.push(key),
            Ok(_) => {
                tracing::warn!(
                    issuer,
                    max = MAX_KEYS,
                    "JWKS has too many keys; the rest are ignored"
                );
                break;
            }
            Err(reason) => tracing::warn!(issuer, key = i, reason, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "the JWKS file has no usable key for the algorithms {allowed:?}"
        ));
    }
    Ok(keys)
}

fn jwk_key(raw: serde_json::Value, allowed: &[Algorithm]) -> Result<Key, &'static str> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|_| "not a JWK this gateway reads")?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key");
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
        _ => return Err("a key type or curve other than RSA, P-256 or oct"),
    };
    // A key that names its algorithm is used for that algorithm only.
    if let Some(named) = jwk.common.key_algorithm
        && named.to_string().parse::<Algorithm>().ok() != Some(algorithm)
    {
        return Err("its `alg` is not RS256, ES256 or HS256 for its key type");
    }
    if !allowed.contains(&algorithm) {
        return Err("its algorithm is not accepted from this issuer");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "its parameters do not decode")?;
    Ok(Key {
        kid: jwk.common.key_id,
        algorithm,
        key,
    })
}
