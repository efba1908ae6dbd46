//! The `[risk]` section: how the risk engine (layer 3) turns signals and
//! request features into a rank 0-4, which IP ranges count as datacenter,
//! proxy or Tor, and the risk headers written for the origin.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// Points of the engine's own factors, by default. The engine owns their
/// meaning (crates/risk); graded factors (`velocity_*`, `accounts_per_device_*`,
/// `devices_per_account_*`) give their points once above the limit, twice
/// from twice the limit, three times from four times; `device_risk_at_issue`
/// gives its points once per rank of the clearance. Negative points lower risk.
pub const DEFAULT_FACTOR_WEIGHTS: &[(&str, i32)] = &[
    ("ip_datacenter", 25),
    ("ip_proxy", 30),
    ("ip_tor", 45),
    ("velocity_ip", 15),
    ("velocity_device", 15),
    ("velocity_account", 15),
    ("velocity_route", 5),
    ("device_emulator", 40),
    ("device_root", 20),
    ("device_hook", 40),
    ("device_debugger", 20),
    ("device_automation", 60),
    ("device_headless", 40),
    ("platform_devtools", 10),
    ("device_risk_at_issue", 20),
    ("accounts_per_device_1d", 20),
    ("accounts_per_device_7d", 10),
    ("accounts_per_device_30d", 5),
    ("device_farm", 40),
    ("devices_per_account_1d", 15),
    ("devices_per_account_7d", 8),
    ("devices_per_account_30d", 4),
    ("new_device", 5),
    ("new_account", 10),
    ("networks_per_device_1h", 30),
    ("accounts_per_device_session", 60),
    ("devices_per_account_session", 20),
    ("route_new_identities", 30),
    ("fingerprint_devices", 20),
    ("challenge_passed", -10),
    ("challenge_failed", 30),
    ("challenge_expired", 10),
    ("device_unproven", 10),
    ("class_trusted", -40),
];

/// The risk engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub model: RiskModel,
    /// Scores from which ranks 1, 2, 3 and 4 start (strictly ascending).
    pub thresholds: [u32; 4],
    /// The same for the device rank, scored on device factors only.
    pub device_thresholds: [u32; 4],
    /// Factor or signal name -> points. Entries given in the file replace
    /// the default of that name; the others keep their default.
    #[serde(deserialize_with = "merge_weights")]
    pub weights: BTreeMap<String, i32>,
    pub limits: RiskLimits,
    /// A device or account first seen less than this long ago is new.
    pub new_entity_minutes: u32,
    /// "New" weighs only for an id first seen at least this long after
    /// the state's history began (a restart with in-memory state, a new
    /// Redis): before that, the store cannot tell new from unseen.
    pub history_minutes: u32,
    /// The same for the new ids counted per route (`route_new_identities`):
    /// the launch burst after a restart is not a wave of new accounts.
    pub route_history_s: u32,
    pub ip_types: IpTypesConfig,
    pub headers: RiskHeaderNames,
    /// Add `x-wx-risk-signature` (HMAC-SHA256, see crates/risk/README.md).
    pub sign_headers: bool,
    /// Environment variable holding the signing secret (at least 32 bytes).
    pub signing_secret_env: String,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            model: RiskModel::Weighted,
            thresholds: [20, 40, 60, 80],
            device_thresholds: [20, 40, 60, 80],
            weights: default_weights(),
            limits: RiskLimits::default(),
            new_entity_minutes: 10,
            history_minutes: 1440,
            route_history_s: 10,
            ip_types: IpTypesConfig::default(),
            headers: RiskHeaderNames::default(),
            sign_headers: false,
            signing_secret_env: "PORTCULLIS_RISK_HEADER_SECRET".into(),
        }
    }
}

impl RiskConfig {
    /// The points of a factor or signal, `None` when the table does not name it.
    pub fn weight(&self, name: &str) -> Option<i32> {
        self.weights.get(name).copied()
    }
}

/// How a score is computed. Only the transparent weighted sum exists; a
/// model trained offline would be another variant with its parameters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RiskModel {
    #[default]
    Weighted,
}

/// The factors' points and the signals' points of the catalogue
/// ([`crate::signals::SIGNALS`]); a signal without default points gives the
/// weight its event carries.
fn default_weights() -> BTreeMap<String, i32> {
    let signals = crate::signals::SIGNALS
        .iter()
        .filter_map(|s| Some((s.name, s.weight?)));
    DEFAULT_FACTOR_WEIGHTS
        .iter()
        .copied()
        .chain(signals)
        .map(|(name, points)| (name.to_string(), points))
        .collect()
}

/// A partial table in the file overrides the defaults instead of replacing them all.
fn merge_weights<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i32>, D::Error> {
    let mut weights = default_weights();
    weights.extend(BTreeMap::<String, i32>::deserialize(d)?);
    Ok(weights)
}

/// Counts above which the graded factors give points. 0 turns a factor off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// Requests per minute from one client address.
    pub ip_per_minute: u32,
    pub device_per_minute: u32,
    pub account_per_minute: u32,
    /// Requests per minute on the route from everyone (a wave on one endpoint).
    pub route_per_minute: u32,
    /// Accounts seen on one device.
    pub accounts_per_device_1d: u32,
    pub accounts_per_device_7d: u32,
    pub accounts_per_device_30d: u32,
    /// Devices one account was seen on.
    pub devices_per_account_1d: u32,
    pub devices_per_account_7d: u32,
    pub devices_per_account_30d: u32,
    /// A new device with at least this many accounts in a day looks like a farm.
    pub farm_accounts: u32,
    /// Networks (distinct IPv4 /16s, IPv6 /48s) one device was seen on in
    /// an hour: Wi-Fi, carrier, office and a move or two cost nothing.
    pub networks_per_device_1h: u32,
    /// Accounts seen on one device, and devices one account was seen on,
    /// within a clearance's lifetime (`challenge.clearance_ttl_s`).
    pub accounts_per_device_session: u32,
    pub devices_per_account_session: u32,
    /// New ids (an account or device first seen, under a clearance) on one
    /// route (method and path, numbers folded) per minute: a wave of new
    /// accounts claiming a coupon.
    pub route_new_identities_per_minute: u32,
    /// ... when they are at least this share (percent) of the route's
    /// requests in the same window: the route's own traffic is its baseline.
    pub route_new_share_percent: u32,
    /// Device ids that presented one environment fingerprint at the
    /// check within about 10 minutes.
    pub fingerprint_devices: u32,
    /// A challenge passed this recently lowers the score (`challenge_passed`).
    pub challenge_fresh_s: u64,
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            ip_per_minute: 120,
            device_per_minute: 60,
            account_per_minute: 60,
            route_per_minute: 0,
            accounts_per_device_1d: 3,
            accounts_per_device_7d: 5,
            accounts_per_device_30d: 10,
            devices_per_account_1d: 3,
            devices_per_account_7d: 5,
            devices_per_account_30d: 10,
            farm_accounts: 3,
            networks_per_device_1h: 4,
            accounts_per_device_session: 2,
            devices_per_account_session: 3,
            route_new_identities_per_minute: 120,
            route_new_share_percent: 50,
            fingerprint_devices: 100,
            challenge_fresh_s: 1800,
        }
    }
}

/// Address ranges that give the `ip_*` factors. Files hold one address or
/// CIDR per line (`#` comments), like the threat feeds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpTypesConfig {
    pub datacenter: Vec<ipnet::IpNet>,
    pub datacenter_files: Vec<PathBuf>,
    pub proxy: Vec<ipnet::IpNet>,
    pub proxy_files: Vec<PathBuf>,
    pub tor: Vec<ipnet::IpNet>,
    pub tor_files: Vec<PathBuf>,
}

/// Names of the headers written for the origin; client copies of every one
/// of them are removed first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskHeaderNames {
    pub risk_rank: String,
    pub device_risk_rank: String,
    pub platform: String,
    pub device_security_status: String,
    pub device: String,
    pub device_uv_1d: String,
    pub device_uv_7d: String,
    pub device_uv_30d: String,
    pub sub_session: String,
    pub client_ip: String,
    pub call_id: String,
    /// Only on debug routes: the top reasons, `name:points` joined by commas.
    pub risk_reasons: String,
    pub risk_signature: String,
}

impl Default for RiskHeaderNames {
    fn default() -> Self {
        RiskHeaderNames {
            risk_rank: "x-wx-risk-rank".into(),
            device_risk_rank: "x-wx-device-risk-rank".into(),
            platform: "x-wx-platform".into(),
            device_security_status: "x-wx-device-security-status".into(),
            device: "x-wx-device".into(),
            device_uv_1d: "x-wx-device-uv-1d".into(),
            device_uv_7d: "x-wx-device-uv-7d".into(),
            device_uv_30d: "x-wx-device-uv-30d".into(),
            sub_session: "x-wx-sub-session".into(),
            client_ip: "x-wx-client-ip".into(),
            call_id: "x-wx-call-id".into(),
            risk_reasons: "x-wx-risk-reasons".into(),
            risk_signature: "x-wx-risk-signature".into(),
        }
    }
}

impl RiskHeaderNames {
    /// `(field, name)` of every header, in the order they are written.
    pub fn all(&self) -> [(&'static str, &str); 13] {
        [
            ("risk_rank", &self.risk_rank),
            ("device_risk_rank", &self.device_risk_rank),
            ("platform", &self.platform),
            ("device_security_status", &self.device_security_status),
            ("device", &self.device),
            ("device_uv_1d", &self.device_uv_1d),
            ("device_uv_7d", &self.device_uv_7d),
            ("device_uv_30d", &self.device_uv_30d),
            ("sub_session", &self.sub_session),
            ("client_ip", &self.client_ip),
            ("call_id", &self.call_id),
            ("risk_reasons", &self.risk_reasons),
            ("risk_signature", &self.risk_signature),
        ]
    }
}

/// Whether a name may be given points in `[risk.weights]`: a factor, or a
/// signal of the catalogue.
pub fn is_known_weight_name(name: &str) -> bool {
    DEFAULT_FACTOR_WEIGHTS
        .iter()
        .any(|&(known, _)| known == name)
        || crate::signals::signal_spec(name).is_some()
}

/// Problems of the `[risk]` section as `(field, message)`.
pub fn validate_risk(risk: &RiskConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, field: String, message: String| {
        if !ok {
            errors.push((field, message));
        }
    };
    for (field, t) in [
        ("thresholds", &risk.thresholds),
        ("device_thresholds", &risk.device_thresholds),
    ] {
        check(
            t[0] > 0 && t.windows(2).all(|w| w[0] < w[1]),
            format!("risk.{field}"),
            "must be four strictly ascending scores above 0".into(),
        );
    }
    for (name, points) in &risk.weights {
        check(
            is_known_weight_name(name),
            format!("risk.weights.{name}"),
            format!("{name:?} is neither a risk factor nor a known signal"),
        );
        check(
            (-1000..=1000).contains(points),
            format!("risk.weights.{name}"),
            "must be between -1000 and 1000".into(),
        );
    }
    check(
        risk.new_entity_minutes > 0,
        "risk.new_entity_minutes".into(),
        "must be at least 1".into(),
    );
    check(
        risk.limits.route_new_share_percent <= 100,
        "risk.limits.route_new_share_percent".into(),
        "must be a percentage (0-100)".into(),
    );
    let files = [
        ("datacenter_files", &risk.ip_types.datacenter_files),
        ("proxy_files", &risk.ip_types.proxy_files),
        ("tor_files", &risk.ip_types.tor_files),
    ];
    for (field, paths) in files {
        check(
            paths.iter().all(|p| !p.as_os_str().is_empty()),
            format!("risk.ip_types.{field}"),
            "paths must not be empty".into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (field, name) in risk.headers.all() {
        check(
            is_lowercase_token(name),
            format!("risk.headers.{field}"),
            format!("{name:?} is not a lower-case header name"),
        );
        check(
            seen.insert(name),
            format!("risk.headers.{field}"),
            format!("{name:?} is used for two headers"),
        );
    }
    check(
        !risk.sign_headers || is_env_name(&risk.signing_secret_env),
        "risk.signing_secret_env".into(),
        "must name an environment variable ([A-Z0-9_])".into(),
    );
    errors
}

/// An HTTP field name (RFC 9110 token) as HTTP/2 requires it: lower case.
fn is_lowercase_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn partial_weights_table_keeps_other_defaults() {
        let config = Config::parse("[risk.weights]\nsqli = 70\nip_tor = 0\n").expect("valid");
        assert_eq!(config.risk.weight("sqli"), Some(70));
        assert_eq!(config.risk.weight("ip_tor"), Some(0));
        assert_eq!(config.risk.weight("xss"), Some(100));
        assert_eq!(config.risk.weight("cl_te_conflict"), Some(100));
        assert_eq!(
            config.risk.weight("custom_rule"),
            None,
            "each rule has its score"
        );
    }

    #[test]
    fn unknown_weight_name_is_an_error_with_line() {
        let errors = Config::parse("[risk.weights]\nsqli = 70\nsqll = 70\n")
            .unwrap_err()
            .field_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "risk.weights.sqll");
        assert_eq!(errors[0].line, Some(3));
    }

    #[test]
    fn thresholds_must_ascend() {
        let errors = Config::parse("[risk]\nthresholds = [20, 40, 40, 80]\n")
            .unwrap_err()
            .field_errors();
        assert_eq!(errors[0].field, "risk.thresholds");
        assert_eq!(errors[0].line, Some(2));
        assert!(Config::parse("[risk]\ndevice_thresholds = [0, 1, 2, 3]\n").is_err());
        assert!(Config::parse("[risk]\nthresholds = [1, 2, 3]\n").is_err());
    }

    #[test]
    fn header_names_must_be_distinct_lowercase_tokens() {
        let errors =
            Config::parse("[risk.headers]\nrisk_rank = \"X-Risk\"\nplatform = \"x-wx-device\"\n")
                .unwrap_err()
                .field_errors();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["risk.headers.risk_rank", "risk.headers.device"]);
    }

    #[test]
    fn signing_needs_a_valid_variable_name() {
        assert!(Config::parse("[risk]\nsign_headers = true\n").is_ok());
        let errors =
            Config::parse("[risk]\nsign_headers = true\nsigning_secret_env = \"my secret\"\n")
                .unwrap_err()
                .field_errors();
        assert_eq!(errors[0].field, "risk.signing_secret_env");
    }

    #[test]
    fn ip_types_take_cidrs_and_files() {
        let config = Config::parse(
            "[risk.ip_types]\ndatacenter = [\"203.0.113.0/24\"]\ntor_files = [\"/var/lib/tor.txt\"]\n",
        )
        .expect("valid");
        assert_eq!(config.risk.ip_types.datacenter.len(), 1);
        assert_eq!(config.risk.ip_types.tor_files.len(), 1);
        assert!(Config::parse("[risk.ip_types]\nproxy = [\"300.1.1.1/32\"]\n").is_err());
    }
}
