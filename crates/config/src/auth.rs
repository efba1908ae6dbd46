//! Layer 2 permission checks: the JWT issuers whose tokens routes may require
//! (`[[policies]] jwt = { ... }`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Issuers of JSON Web Tokens (`Authorization: Bearer`) the gateway verifies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// One entry per issuer; a token is matched to the entry whose `issuer`
    /// equals its `iss` claim.
    pub jwt: Vec<JwtIssuerConfig>,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    /// Tokens remembered after verification (by hash), so a client's
    /// repeated token costs no signature check; `exp` is still checked on
    /// every request. 0 turns the cache off.
    pub cache_tokens: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt: Vec::new(),
            max_token_bytes: 8 * 1024,
            cache_tokens: 8192,
        }
    }
}

/// One trusted issuer and where its keys come from. Exactly one key source
/// (`secret_env`, `public_key_pem`, `public_key_file`, `jwks_file`) is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// Name that policies use in `jwt.issuers`.
    pub name: String,
    /// Expected `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values (one must be present); empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms accepted from this issuer.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Environment variable holding the HS256 secret (at least 32 bytes).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256 / ES256 public key, PEM text (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// RS256 / ES256 public key, PEM file; reloaded when it changes.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A local JWKS file (`{"keys": [...]}`), keys chosen by `kid`; reloaded
    /// when it changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
}

fn default_leeway() -> u64 {
    60
}

impl JwtIssuerConfig {
    /// How many key sources are set (valid configurations have exactly one).
    pub fn key_sources(&self) -> usize {
        [
            self.secret_env.is_some(),
            self.public_key_pem.is_some(),
            self.public_key_file.is_some(),
            self.jwks_file.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }
}

/// Signature algorithms a token may use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (a shared secret).
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

#[cfg(test)]
mod tests {
    use crate::{Config, JwtAlgorithm};

    fn fields(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn issuer_with_jwks_parses_with_defaults() {
        let config = Config::parse(
            r#"
            [identity]
            account_claim = "sub"
            [[auth.jwt]]
            name = "main"
            issuer = "https://id.example.com"
            audiences = ["api"]
            algorithms = ["RS256", "ES256"]
            jwks_file = "/etc/portcullis/jwks.json"
            [[policies]]
            name = "orders"
            path = "/api/users/"
            jwt = { issuers = ["main"], scopes = ["orders:read"], subject_in = "path:3" }
            "#,
        )
        .expect("valid");
        let issuer = &config.auth.jwt[0];
        assert_eq!(issuer.leeway_s, 60);
        assert_eq!(
            issuer.algorithms,
            [JwtAlgorithm::RS256, JwtAlgorithm::ES256]
        );
        assert_eq!(config.auth.max_token_bytes, 8192);
        assert_eq!(config.identity.account_claim.as_deref(), Some("sub"));
    }

    #[test]
    fn policy_must_name_a_configured_issuer() {
        let text = r#"
            [[auth.jwt]]
            name = "main"
            issuer = "i"
            algorithms = ["HS256"]
            secret_env = "JWT_SECRET"
            [[policies]]
            name = "p"
            path = "/api/"
            jwt = { issuers = ["other"] }
        "#;
        assert_eq!(fields(text), ["policies[0].jwt.issuers"]);
        let without_auth = "[[policies]]\nname = \"p\"\npath = \"/api/\"\njwt = {}\n";
        assert_eq!(fields(without_auth), ["policies[0].jwt"]);
    }

    #[test]
    fn key_sources_and_algorithms_must_agree() {
        let two_sources = r#"
            [[auth.jwt]]
            name = "a"
            issuer = "i"
            algorithms = ["RS256"]
            public_key_file = "k.pem"
            jwks_file = "k.json"
        "#;
        assert_eq!(fields(two_sources), ["auth.jwt[0].secret_env"]);
        let hmac_with_public_key = r#"
            [[auth.jwt]]
            name = "a"
            issuer = "i"
            algorithms = ["HS256", "RS256"]
            public_key_file = "k.pem"
        "#;
        assert_eq!(fields(hmac_with_public_key), ["auth.jwt[0].algorithms"]);
        let secret_for_rsa = r#"
            [[auth.jwt]]
            name = "a"
            issuer = "i"
            algorithms = ["RS256"]
            secret_env = "S"
        "#;
        assert_eq!(fields(secret_for_rsa), ["auth.jwt[0].algorithms"]);
        let no_key = "[[auth.jwt]]\nname = \"a\"\nissuer = \"i\"\nalgorithms = []\n";
        assert_eq!(
            fields(no_key),
            ["auth.jwt[0].algorithms", "auth.jwt[0].secret_env"]
        );
        let unknown_alg = "[[auth.jwt]]\nname = \"a\"\nissuer = \"i\"\nalgorithms = [\"none\"]\nsecret_env = \"S\"\n";
        assert_eq!(fields(unknown_alg), [""]);
    }

    #[test]
    fn account_claim_needs_an_issuer() {
        assert_eq!(
            fields("[identity]\naccount_claim = \"sub\"\n"),
            ["identity.account_claim"]
        );
    }
}
