//! The signal catalogue: every signal a stage of the gateway may raise, the
//! layer it belongs to and its default points in the risk score. Stages emit
//! a name and evidence; the gateway takes the layer and weight from here,
//! the risk engine's `[risk.weights]` defaults come from here, and
//! `portcullis check` accepts only names found here.

/// The layer a signal comes from (edge, clean, policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalLayer {
    Edge,
    Clean,
    Policy,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSpec {
    pub name: &'static str,
    pub layer: SignalLayer,
    /// Default points in the risk score (`[risk.weights]` may change them);
    /// `None` for signals whose every event carries its own weight (a
    /// custom rule's `score`).
    pub weight: Option<i32>,
}

const fn spec(name: &'static str, layer: SignalLayer, weight: i32) -> SignalSpec {
    SignalSpec {
        name,
        layer,
        weight: Some(weight),
    }
}

use SignalLayer::{Clean, Edge, Policy};

/// Every signal, by layer.
pub const SIGNALS: &[SignalSpec] = &[
    // Edge: addresses, protocol sanity, the canonical request, classes, quota.
    spec("ip_denied", Edge, 100),
    spec("ip_banned", Edge, 100),
    spec("threat_feed", Edge, 50),
    spec("cl_te_conflict", Edge, 100),
    spec("te_obfuscated", Edge, 100),
    spec("cl_repeated", Edge, 100),
    spec("cl_invalid", Edge, 100),
    spec("unknown_method", Edge, 100),
    spec("uri_too_long", Edge, 100),
    spec("nul_byte", Edge, 100),
    spec("bad_percent_encoding", Edge, 100),
    spec("bad_utf8", Edge, 100),
    spec("utf8_evasion", Edge, 100),
    spec("bad_json", Edge, 100),
    spec("body_too_large", Edge, 100),
    spec("body_timeout", Edge, 100),
    spec("body_malformed", Edge, 100),
    spec("bad_target", Edge, 100),
    spec("bad_authority", Edge, 100),
    spec("host_mismatch", Edge, 100),
    spec("host_repeated", Edge, 100),
    spec("host_missing", Edge, 100),
    spec("connect_method", Edge, 100),
    spec("encoded_slash", Edge, 100),
    spec("route_confusion", Edge, 100),
    spec("scanner", Edge, 40),
    spec("automation", Edge, 40),
    spec("crawler", Edge, 10),
    spec("browser_headers_missing", Edge, 10),
    spec("quota_exceeded", Edge, 0),
    // Clean: attack detection (the families of portcullis-detect: one
    // finding is enough for rank 4), custom rules, rate limits.
    spec("sqli", Clean, 100),
    spec("xss", Clean, 100),
    spec("rce", Clean, 100),
    spec("code_injection", Clean, 100),
    spec("path_traversal", Clean, 100),
    spec("ssrf", Clean, 100),
    spec("xxe", Clean, 100),
    spec("ssti", Clean, 100),
    spec("jndi", Clean, 100),
    spec("crlf", Clean, 100),
    spec("deserialization", Clean, 100),
    spec("nosql", Clean, 100),
    spec("ldap", Clean, 100),
    spec("mail_injection", Clean, 100),
    spec("ssi", Clean, 100),
    spec("webshell", Clean, 100),
    spec("scanner_path", Clean, 60),
    // Detection's protocol findings: more than the engine reads, and the like.
    spec("protocol", Clean, 40),
    SignalSpec {
        name: "custom_rule",
        layer: Clean,
        weight: None,
    },
    spec("rate_limit", Clean, 25),
    spec("rate_limit_ban", Clean, 100),
    // Clean: the client protocol (clearance, signature) and permissions.
    spec("clearance_missing", Clean, 25),
    spec("clearance_malformed", Clean, 60),
    spec("clearance_bad_signature", Clean, 60),
    spec("clearance_expired", Clean, 10),
    spec("clearance_revoked", Clean, 80),
    spec("clearance_wrong_device", Clean, 60),
    spec("clearance_wrong_network", Clean, 20),
    spec("signature_missing", Clean, 30),
    spec("signature_invalid", Clean, 60),
    spec("signature_replayed", Clean, 60),
    spec("signature_stale", Clean, 15),
    spec("digest_mismatch", Clean, 60),
    spec("digest_unverifiable", Clean, 30),
    // The state could not record a nonce: says nothing about the client.
    spec("state_unavailable", Clean, 0),
    spec("jwt_missing", Clean, 20),
    spec("jwt_malformed", Clean, 50),
    spec("jwt_bad_algorithm", Clean, 60),
    spec("jwt_bad_signature", Clean, 60),
    spec("jwt_expired", Clean, 10),
    spec("jwt_not_yet_valid", Clean, 10),
    spec("jwt_wrong_audience", Clean, 50),
    spec("jwt_wrong_issuer", Clean, 50),
    spec("jwt_issuer_not_allowed", Clean, 50),
    spec("jwt_unknown_key", Clean, 50),
    spec("over_privileged", Clean, 60),
    // The challenge service's decisions: recorded, weighed by the risk
    // factors of challenges (`challenge_passed`, `challenge_failed` ...)
    // rather than here.
    spec("portal_issued", Clean, 0),
    spec("portal_solved", Clean, 0),
    spec("portal_failed", Clean, 0),
    spec("portal_limited", Clean, 0),
    // Policy: the band's action, a trial's record, the response side.
    spec("risk_challenge", Policy, 0),
    spec("risk_intercept", Policy, 0),
    spec("policy_trial", Policy, 0),
    spec("error_page_leak", Clean, 0),
];

/// The catalogue entry of `name`.
pub fn signal_spec(name: &str) -> Option<&'static SignalSpec> {
    SIGNALS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_signal_shares_a_name_with_a_risk_factor() {
        for (factor, _) in crate::risk::DEFAULT_FACTOR_WEIGHTS {
            assert!(
                signal_spec(factor).is_none(),
                "{factor} is a factor and a signal"
            );
        }
    }

    #[test]
    fn names_are_unique_and_snake_case() {
        for (i, s) in SIGNALS.iter().enumerate() {
            assert!(
                s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                s.name
            );
            assert!(
                !SIGNALS[..i].iter().any(|t| t.name == s.name),
                "{} listed twice",
                s.name
            );
        }
    }
}
