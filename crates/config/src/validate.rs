//! Semantic checks that serde cannot express, each reported against its field.

use std::fmt;

use crate::{BlockResponse, Config};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `upstreams[0].url`; empty for syntax errors.
    pub field: String,
    /// 1-based line in the file, when it can be found.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: {}: {}", self.field, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.field, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

pub(crate) fn from_toml_error(text: &str, error: &toml::de::Error) -> FieldError {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    FieldError {
        field: String::new(),
        line,
        message: error.message().trim().to_string(),
    }
}

pub(crate) struct Checker<'a> {
    text: &'a str,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    pub(crate) fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            let field = field.into();
            let line = line_of(self.text, &field);
            self.errors.push(FieldError {
                field,
                line,
                message: message.into(),
            });
        }
    }
}

/// Best-effort line of a field: the first `key =` whose key is the field's last segment.
fn line_of(text: &str, field: &str) -> Option<usize> {
    let key = field
        .rsplit('.')
        .next()?
        .split('[')
        .next()
        .filter(|k| !k.is_empty())?;
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

pub(crate) fn validate(config: &Config, text: &str) -> Vec<FieldError> {
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    check_upstreams(config, &mut c);
    check_limits(config, &mut c);
    check_protocol(config, &mut c);
    check_traffic(config, &mut c);
    check_quota(config, &mut c);
    check_block(config, &mut c);
    c.check(
        !config.client_ip.header.trim().is_empty(),
        "client_ip.header",
        "must name a header",
    );
    c.check(
        config.events.queue > 0,
        "events.queue",
        "must be at least 1",
    );
    c.check(
        (0.0..=1.0).contains(&config.events.pass_sample),
        "events.pass_sample",
        "must be between 0 and 1",
    );
    c.check(
        config.detect.threshold > 0,
        "detect.threshold",
        "must be at least 1",
    );
    for (i, route) in config.detect.routes.iter().enumerate() {
        c.check(
            route.path_prefix.starts_with('/'),
            format!("detect.routes[{i}].path_prefix"),
            "must start with '/'",
        );
    }
    check_custom_rules(config, &mut c);
    check_rate_limits(config, &mut c);
    crate::store::check_store(&config.store, &mut c);
    crate::store::check_console(&config.console, &mut c);
    crate::state::check_state(&config.state, &mut c);
    crate::alerts::check_alerts(config, &mut c);
    for (field, message) in crate::risk::validate_risk(&config.risk) {
        c.check(false, field, message);
    }
    check_policies(config, &mut c);
    check_auth(config, &mut c);
    check_challenge(config, &mut c);
    let mut names = std::collections::HashSet::new();
    for (i, feed) in config.ip_lists.feeds.iter().enumerate() {
        c.check(
            names.insert(feed.name.as_str()),
            format!("ip_lists.feeds[{i}].name"),
            format!("feed name {:?} is used twice", feed.name),
        );
    }
    c.errors
}

fn check_upstreams(config: &Config, c: &mut Checker) {
    for (i, upstream) in config.upstreams.iter().enumerate() {
        let field = format!("upstreams[{i}].url");
        match upstream.url.parse::<http_uri::Uri>() {
            Ok(uri) => {
                c.check(
                    uri.scheme == "http",
                    &field,
                    "only http:// origins are supported (terminate TLS at the gateway)",
                );
                c.check(!uri.authority.is_empty(), &field, "needs a host");
            }
            Err(message) => c.check(false, &field, message),
        }
        c.check(
            upstream.path_prefix.starts_with('/'),
            format!("upstreams[{i}].path_prefix"),
            "must start with '/'",
        );
        c.check(
            upstream.connect_timeout_ms > 0 && upstream.response_timeout_ms > 0,
            format!("upstreams[{i}].connect_timeout_ms"),
            "timeouts must be positive",
        );
    }
}

fn check_limits(config: &Config, c: &mut Checker) {
    let limits = &config.limits;
    c.check(
        limits.max_connections > 0,
        "limits.max_connections",
        "must be at least 1",
    );
    c.check(
        limits.max_connections_per_ip > 0,
        "limits.max_connections_per_ip",
        "must be at least 1",
    );
    c.check(
        limits.max_header_bytes >= 8192,
        "limits.max_header_bytes",
        "must be at least 8192",
    );
    c.check(
        (1..=10_000).contains(&limits.max_headers),
        "limits.max_headers",
        "must be between 1 and 10000",
    );
    c.check(
        limits.max_uri_bytes >= 64,
        "limits.max_uri_bytes",
        "must be at least 64",
    );
    c.check(
        limits.inspect_body_bytes as u64 <= limits.max_body_bytes,
        "limits.inspect_body_bytes",
        "must not exceed limits.max_body_bytes",
    );
    c.check(
        limits.inspect_body_bytes <= 16 * 1024 * 1024,
        "limits.inspect_body_bytes",
        "must not exceed 16 MiB (it is buffered per request)",
    );
    c.check(
        limits.header_timeout_ms > 0 && limits.body_timeout_ms > 0,
        "limits.header_timeout_ms",
        "timeouts must be positive",
    );
}

fn check_protocol(config: &Config, c: &mut Checker) {
    let methods = &config.protocol.allowed_methods;
    c.check(
        !methods.is_empty(),
        "protocol.allowed_methods",
        "must list at least one method",
    );
    for method in methods {
        c.check(
            !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()),
            "protocol.allowed_methods",
            format!("{method:?} is not an upper-case method name"),
        );
    }
}

fn check_traffic(config: &Config, c: &mut Checker) {
    let traffic = &config.traffic;
    c.check(
        traffic.automation.throttle_rps > 0.0,
        "traffic.automation.throttle_rps",
        "must be positive",
    );
    c.check(
        traffic.scanner.throttle_rps > 0.0,
        "traffic.scanner.throttle_rps",
        "must be positive",
    );
    c.check(
        traffic.scanner.header_markers.iter().all(|m| !m.is_empty()),
        "traffic.scanner.header_markers",
        "markers must not be empty strings",
    );
}

fn check_quota(config: &Config, c: &mut Checker) {
    let quota = &config.quota;
    c.check(
        quota.qps.is_none_or(|q| q > 0.0),
        "quota.qps",
        "must be positive",
    );
    c.check(
        quota.bandwidth_mbps.is_none_or(|b| b > 0.0),
        "quota.bandwidth_mbps",
        "must be positive",
    );
    c.check(
        quota.status.is_none_or(|s| s == 429 || s == 503),
        "quota.status",
        "must be 429 or 503",
    );
    for (i, route) in quota.routes.iter().enumerate() {
        c.check(
            route.path_prefix.starts_with('/'),
            format!("quota.routes[{i}].path_prefix"),
            "must start with '/'",
        );
        c.check(
            route.qps > 0.0,
            format!("quota.routes[{i}].qps"),
            "must be positive",
        );
    }
}

fn check_custom_rules(config: &Config, c: &mut Checker) {
    let mut ids = std::collections::HashSet::new();
    for (i, rule) in config.detect.rules.iter().enumerate() {
        let mut report = |key: &str, message: String| {
            c.errors.push(FieldError {
                field: format!("detect.rules[{i}].{key}"),
                line: line_in_table_array(c.text, "detect.rules", i, key),
                message,
            });
        };
        if rule.id.trim().is_empty() || !ids.insert(rule.id.as_str()) {
            report(
                "id",
                format!("rule id {:?} is empty or used twice", rule.id),
            );
        }
        if let Err(e) = portcullis_rules::Expr::compile(&rule.when) {
            report("when", e.to_string());
        }
        if let Some(bad) = rule.paths.iter().find(|p| !p.starts_with('/')) {
            report("paths", format!("{bad:?} must start with '/'"));
        }
    }
}

/// Line of `key =` inside the `index`-th `[[table]]` block, falling back to
/// the first `key =` anywhere (inline tables).
fn line_in_table_array(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let start = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with(&header))
        .nth(index)
        .map(|(n, _)| n);
    let Some(start) = start else {
        return line_of(text, key);
    };
    text.lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, line)| !line.trim_start().starts_with('['))
        .find(|(_, line)| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(n, _)| n + 1)
}

fn check_rate_limits(config: &Config, c: &mut Checker) {
    let mut names = std::collections::HashSet::new();
    for (i, rule) in config.rate_limits.iter().enumerate() {
        let field = |name: &str| format!("rate_limits[{i}].{name}");
        c.check(
            names.insert(rule.name.as_str()) && !rule.name.is_empty(),
            field("name"),
            format!("rule name {:?} is empty or used twice", rule.name),
        );
        c.check(
            rule.path.starts_with('/'),
            field("path"),
            "must start with '/'",
        );
        c.check(
            rule.rate > 0.0 && rule.rate.is_finite(),
            field("rate"),
            "must be positive",
        );
        c.check(rule.burst >= 1, field("burst"), "must be at least 1");
        c.check(
            !rule.key.is_empty(),
            field("key"),
            "must name at least one key part",
        );
        if let Some(e) = &rule.escalate {
            c.check(
                e.violations >= 1 && e.within_s >= 1 && e.ban_s >= 1 && e.max_ban_s >= e.ban_s,
                field("escalate"),
                "violations, within_s and ban_s must be at least 1, max_ban_s at least ban_s",
            );
        }
    }
}

fn check_policies(config: &Config, c: &mut Checker) {
    let mut names = std::collections::HashSet::new();
    for (i, policy) in config.policies.iter().enumerate() {
        let field = |name: &str| format!("policies[{i}].{name}");
        c.check(
            names.insert(policy.name.as_str()) && !policy.name.is_empty(),
            field("name"),
            format!("policy name {:?} is empty or used twice", policy.name),
        );
        c.check(
            policy.path.starts_with('/'),
            field("path"),
            "must start with '/'",
        );
        for (band, rank) in [
            ("challenge_at", policy.challenge_at),
            ("intercept_at", policy.intercept_at),
        ] {
            c.check(
                rank.is_none_or(|r| r <= 4),
                field(band),
                "must be a risk rank from 0 to 4",
            );
        }
        c.check(
            !policy.signature || policy.clearance != crate::ClearanceRequirement::Off,
            field("signature"),
            "signatures are made with the clearance's key: set clearance too",
        );
        if let Some(response) = &policy.intercept {
            c.check(
                (200..=599).contains(&response.status),
                field("intercept.status"),
                "must be an HTTP status between 200 and 599",
            );
            c.check(
                response.content_type.parse_is_header_value()
                    && response.headers.values().all(|v| v.parse_is_header_value())
                    && response.headers.keys().all(|k| http_token(k)),
                field("intercept.headers"),
                "must be valid header names and values",
            );
        }
        if let Some(subject) = policy.jwt.as_ref().and_then(|j| j.subject_in.as_deref()) {
            let valid = match subject.split_once(':') {
                Some(("path", n)) => n.parse::<usize>().is_ok_and(|n| n >= 1),
                Some(("query" | "json", name)) => !name.is_empty(),
                _ => false,
            };
            c.check(
                valid,
                field("jwt.subject_in"),
                "must be path:N, query:NAME or json:FIELD",
            );
        }
    }
}

fn check_auth(config: &Config, c: &mut Checker) {
    use crate::JwtAlgorithm;
    let auth = &config.auth;
    c.check(
        (512..=64 * 1024).contains(&auth.max_token_bytes),
        "auth.max_token_bytes",
        "must be between 512 and 65536",
    );
    c.check(
        auth.cache_tokens <= 1_000_000,
        "auth.cache_tokens",
        "must be at most 1000000",
    );
    let mut names = std::collections::HashSet::new();
    for (i, issuer) in auth.jwt.iter().enumerate() {
        let field = |name: &str| format!("auth.jwt[{i}].{name}");
        c.check(
            names.insert(issuer.name.as_str()) && !issuer.name.is_empty(),
            field("name"),
            format!("issuer name {:?} is empty or used twice", issuer.name),
        );
        c.check(
            !issuer.issuer.is_empty(),
            field("issuer"),
            "must be the expected `iss` claim",
        );
        c.check(
            !issuer.algorithms.is_empty(),
            field("algorithms"),
            "must list at least one of HS256, RS256, ES256",
        );
        c.check(
            issuer.key_sources() == 1,
            field("secret_env"),
            "set exactly one of secret_env, public_key_pem, public_key_file, jwks_file",
        );
        let hmac = issuer.algorithms.contains(&JwtAlgorithm::HS256);
        let public = issuer.public_key_pem.is_some() || issuer.public_key_file.is_some();
        // A public key accepted as an HMAC secret lets anyone forge tokens.
        c.check(
            !(public && hmac),
            field("algorithms"),
            "HS256 needs secret_env (or a JWKS), not a public key",
        );
        c.check(
            issuer.secret_env.is_none() || issuer.algorithms == [JwtAlgorithm::HS256],
            field("algorithms"),
            "secret_env keys are for HS256 only",
        );
        c.check(
            issuer.secret_env.as_ref().is_none_or(|v| !v.is_empty()),
            field("secret_env"),
            "must name an environment variable",
        );
        c.check(
            issuer.leeway_s <= 3600,
            field("leeway_s"),
            "must be at most 3600 seconds",
        );
    }
    for (i, policy) in config.policies.iter().enumerate() {
        let Some(jwt) = &policy.jwt else { continue };
        c.check(
            !auth.jwt.is_empty(),
            format!("policies[{i}].jwt"),
            "needs at least one [[auth.jwt]] issuer",
        );
        for name in &jwt.issuers {
            c.check(
                auth.jwt.iter().any(|issuer| &issuer.name == name),
                format!("policies[{i}].jwt.issuers"),
                format!("no [[auth.jwt]] is named {name:?}"),
            );
        }
    }
    if let Some(claim) = &config.identity.account_claim {
        c.check(
            !claim.is_empty() && !auth.jwt.is_empty(),
            "identity.account_claim",
            "must name a claim, and [[auth.jwt]] must be configured",
        );
    }
}

fn http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_challenge(config: &Config, c: &mut Checker) {
    let challenge = &config.challenge;
    c.check(
        challenge.difficulty <= 28,
        "challenge.difficulty",
        "must be at most 28 bits (each bit doubles the client's work)",
    );
    c.check(
        challenge.refuse_at <= 5,
        "challenge.refuse_at",
        "must be a risk rank from 0 to 4, or 5 for never",
    );
    for (field, value) in [
        ("challenge.challenge_ttl_s", challenge.challenge_ttl_s),
        ("challenge.clearance_ttl_s", challenge.clearance_ttl_s),
        (
            "challenge.signature_max_age_s",
            challenge.signature_max_age_s,
        ),
        (
            "challenge.device_per_minute",
            u64::from(challenge.device_per_minute),
        ),
        ("challenge.device_burst", u64::from(challenge.device_burst)),
        ("challenge.ip_per_s", u64::from(challenge.ip_per_s)),
        ("challenge.ip_burst", u64::from(challenge.ip_burst)),
        (
            "challenge.ip_quiet_per_minute",
            u64::from(challenge.ip_quiet_per_minute),
        ),
    ] {
        c.check(value >= 1, field, "must be at least 1");
    }
    c.check(
        challenge.ip_max_extra_bits <= 16,
        "challenge.ip_max_extra_bits",
        "must be at most 16 bits",
    );
    c.check(
        http_token(&challenge.cookie),
        "challenge.cookie",
        "must be a valid cookie name",
    );
}

fn check_block(config: &Config, c: &mut Checker) {
    let block = &config.block;
    let mut all: Vec<(String, &BlockResponse)> = vec![
        ("block.blocked".into(), &block.blocked),
        ("block.bad_request".into(), &block.bad_request),
        ("block.too_many".into(), &block.too_many),
    ];
    all.extend(
        block
            .custom
            .iter()
            .map(|(name, response)| (format!("block.custom.{name}"), response)),
    );
    for (field, response) in all {
        c.check(
            (200..=599).contains(&response.status),
            format!("{field}.status"),
            "must be an HTTP status between 200 and 599",
        );
        c.check(
            response.content_type.parse_is_header_value(),
            format!("{field}.content_type"),
            "must be a valid header value",
        );
    }
}

trait HeaderValueCheck {
    fn parse_is_header_value(&self) -> bool;
}

impl HeaderValueCheck for String {
    fn parse_is_header_value(&self) -> bool {
        !self.is_empty()
            && self
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    }
}

/// Just enough URI parsing to validate an origin address without an HTTP dependency.
mod http_uri {
    pub struct Uri {
        pub scheme: String,
        pub authority: String,
    }

    impl std::str::FromStr for Uri {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let (scheme, rest) = s
                .split_once("://")
                .ok_or_else(|| format!("{s:?} is not a URL (expected http://host:port)"))?;
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains(['@', ' ']) {
                return Err(format!("{s:?} has an invalid host"));
            }
            Ok(Uri {
                scheme: scheme.to_ascii_lowercase(),
                authority: authority.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn every_error_is_listed_with_field_and_line() {
        let text =
            "[[upstreams]]\nurl = \"ftp://x\"\npath_prefix = \"api\"\n\n[quota]\nstatus = 418\n";
        let errors = Config::parse(text).unwrap_err().field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "upstreams[0].url",
                "upstreams[0].path_prefix",
                "quota.status"
            ]
        );
        assert_eq!(errors[0].line, Some(2));
        assert_eq!(errors[1].line, Some(3));
        assert_eq!(errors[2].line, Some(6));
    }

    #[test]
    fn custom_rule_errors_name_the_rule_and_line() {
        let text = r#"
[[detect.rules]]
id = "admin"
when = 'path starts_with "/admin"'
action = "block"

[[detect.rules]]
id = "ua"
when = 'user_agent icontains "sqlmap"'
action = "tag"
paths = ["/api/"]

[[detect.rules]]
id = "admin"
description = "a typo in the operator"
when = 'path startswith "/x"'
action = "log"
paths = ["api"]
"#;
        let errors = Config::parse(text).unwrap_err().field_errors();
        let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("detect.rules[2].id", Some(14)),
                ("detect.rules[2].when", Some(16)),
                ("detect.rules[2].paths", Some(18)),
            ]
        );
        assert!(errors[1].message.contains("column 6"), "{}", errors[1]);
        let good = text
            .replace("startswith", "starts_with")
            .replace("id = \"admin\"\ndescription", "id = \"other\"\ndescription");
        let good = good.replace("paths = [\"api\"]", "paths = [\"/api\"]");
        let config = Config::parse(&good).expect("valid");
        assert_eq!(config.detect.rules.len(), 3);
        assert_eq!(config.detect.rules[0].score, 10);
        assert_eq!(config.detect.rules[1].action, crate::RuleAction::Tag);
    }

    #[test]
    fn inspect_limit_cannot_exceed_body_limit() {
        let text = "[limits]\nmax_body_bytes = 1000\ninspect_body_bytes = 2000\n";
        let errors = Config::parse(text).unwrap_err().field_errors();
        assert_eq!(errors[0].field, "limits.inspect_body_bytes");
    }

    #[test]
    fn bad_cidr_is_a_syntax_error_with_line() {
        let errors = Config::parse("[ip_lists]\ndeny = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .field_errors();
        assert_eq!(errors[0].line, Some(2), "{errors:?}");
    }
}
