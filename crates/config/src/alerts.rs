//! `[alerts]`: webhook notifications on spikes of intercepts, origin errors
//! or requests, aggregated and capped so an attack never becomes a flood.

use serde::{Deserialize, Serialize};

use crate::Config;
use crate::validate::Checker;

/// Alerting: rules evaluated on the minute rollups of the event store, and
/// the webhooks their messages go to. Scanner traffic is left out unless
/// `traffic.scanner.alert` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// How often the rules are evaluated, in seconds.
    pub interval_s: u64,
    /// Counts are summed over this window (whole minutes), and a firing
    /// rule sends at most one message per window.
    pub window_s: u64,
    /// A rule still firing at a similar level is reminded after this long;
    /// sooner only when its count has doubled since its last message.
    pub repeat_s: u64,
    /// A rule resolves after this long without a breach, so an attack that
    /// pauses and resumes stays one incident.
    pub resolve_after_s: u64,
    /// Messages per hour across all rules and webhooks; alerts beyond it are
    /// counted and summarised in the next message.
    pub max_per_hour: u32,
    pub rules: Vec<AlertRule>,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: false,
            interval_s: 60,
            window_s: 300,
            repeat_s: 3600,
            resolve_after_s: 900,
            max_per_hour: 12,
            rules: vec![
                AlertRule::new("intercepts", AlertKind::InterceptSpike, 100),
                AlertRule::new("origin-errors", AlertKind::OriginErrors, 20),
                AlertRule {
                    factor: 3.0,
                    ..AlertRule::new("challenge-solve-rate", AlertKind::SolveRate, 50)
                },
            ],
            webhooks: Vec::new(),
        }
    }
}

/// One rule: it fires when the count of its window is at least `min_count`
/// and more than `factor` times the baseline (the trailing per-minute
/// median or mean, scaled to the window), or at least `threshold`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub kind: AlertKind,
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(default)]
    pub baseline: BaselineStat,
    /// Minutes before the window that make the baseline.
    #[serde(default = "default_baseline_minutes")]
    pub baseline_minutes: u32,
    /// Fires at this count whatever the baseline (a ceiling that a slow ramp
    /// cannot raise).
    #[serde(default)]
    pub threshold: Option<u64>,
}

fn default_min_count() -> u64 {
    100
}
fn default_factor() -> f64 {
    5.0
}
fn default_baseline_minutes() -> u32 {
    60
}

impl AlertRule {
    pub fn new(name: &str, kind: AlertKind, min_count: u64) -> Self {
        AlertRule {
            name: name.into(),
            kind,
            min_count,
            factor: default_factor(),
            baseline: BaselineStat::Median,
            baseline_minutes: default_baseline_minutes(),
            threshold: None,
        }
    }
}

/// What a rule counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Requests the gateway answered itself (block, bad request, throttle ...).
    InterceptSpike,
    /// Passed requests whose origin failed (status 500 and above, including
    /// the gateway's own 502 / 504).
    OriginErrors,
    /// Every request the store counts (clean passes are counted when
    /// `store.record_passed` is on).
    Rate,
    /// The challenge solve rate collapsing: fires when, for a route (or
    /// for the check as a whole), at least `min_count` challenges in the
    /// window were solved at less than `1 / factor` of the rate of its
    /// baseline minutes (which need `min_count` challenges too).
    /// `threshold` does not apply.
    SolveRate,
}

/// How the trailing minutes make a baseline.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStat {
    /// Robust to earlier bursts in the baseline.
    #[default]
    Median,
    Mean,
}

/// Where messages are posted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://...`; tokens in it are never logged.
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// DingTalk only: environment variable holding the robot's signing
    /// secret (`SEC...`); the URL then gets `timestamp` and `sign`.
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// The JSON body a webhook accepts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Portcullis's own schema (see crates/alerts).
    #[default]
    Generic,
    /// WeCom (WeChat Work) group robot, markdown message.
    Wecom,
    /// DingTalk custom robot, markdown message.
    Dingtalk,
    /// Slack incoming webhook, text and blocks.
    Slack,
}

pub(crate) fn check_alerts(config: &Config, c: &mut Checker) {
    let alerts = &config.alerts;
    c.check(
        (1..=3600).contains(&alerts.interval_s),
        "alerts.interval_s",
        "must be between 1 and 3600",
    );
    c.check(
        (60..=3600).contains(&alerts.window_s) && alerts.window_s.is_multiple_of(60),
        "alerts.window_s",
        "must be whole minutes between 60 and 3600",
    );
    c.check(
        alerts.repeat_s >= alerts.window_s,
        "alerts.repeat_s",
        "must be at least alerts.window_s",
    );
    c.check(
        (60..=86_400).contains(&alerts.resolve_after_s),
        "alerts.resolve_after_s",
        "must be between 60 and 86400",
    );
    c.check(
        alerts.max_per_hour >= 1,
        "alerts.max_per_hour",
        "must be at least 1",
    );
    if alerts.enabled {
        c.check(
            config.store.enabled,
            "alerts.enabled",
            "alerts read the event store: enable [store] too",
        );
        c.check(
            !alerts.webhooks.is_empty(),
            "alerts.webhooks",
            "enabled alerts need at least one webhook",
        );
        c.check(
            !alerts.rules.is_empty(),
            "alerts.rules",
            "enabled alerts need at least one rule",
        );
    }
    check_rules(&alerts.rules, c);
    for (i, hook) in alerts.webhooks.iter().enumerate() {
        check_webhook(i, hook, c);
    }
}

fn check_rules(rules: &[AlertRule], c: &mut Checker) {
    let mut names = std::collections::HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let field = |name: &str| format!("alerts.rules[{i}].{name}");
        c.check(
            names.insert(rule.name.as_str()) && !rule.name.is_empty(),
            field("name"),
            format!("rule name {:?} is empty or used twice", rule.name),
        );
        c.check(
            rule.min_count >= 1,
            field("min_count"),
            "must be at least 1",
        );
        c.check(
            rule.factor.is_finite() && rule.factor >= 1.0,
            field("factor"),
            "must be a number of at least 1",
        );
        c.check(
            (5..=1440).contains(&rule.baseline_minutes),
            field("baseline_minutes"),
            "must be between 5 and 1440",
        );
        c.check(
            rule.threshold.is_none_or(|t| t >= 1),
            field("threshold"),
            "must be at least 1",
        );
        c.check(
            rule.kind != AlertKind::SolveRate || rule.threshold.is_none(),
            field("threshold"),
            "a solve_rate rule has no threshold: it compares a rate with its baseline",
        );
    }
}

fn check_webhook(i: usize, hook: &WebhookConfig, c: &mut Checker) {
    let field = |name: &str| format!("alerts.webhooks[{i}].{name}");
    if let Err(message) = check_url(&hook.url) {
        c.check(false, field("url"), message);
    }
    if let Some(name) = &hook.secret_env {
        c.check(
            hook.format == WebhookFormat::Dingtalk,
            field("secret_env"),
            "only DingTalk robots sign their URL (format = \"dingtalk\")",
        );
        c.check(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            field("secret_env"),
            "must name an environment variable (letters, digits, '_')",
        );
    }
}

/// A webhook URL: `http` or `https`, a host, no user info, nothing a
/// request line could not carry. The message never repeats the URL, which
/// holds the robot's token.
fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("is not a URL (expected https://host/path)")?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err("needs a host".into());
    }
    if authority.contains('@') {
        return Err("must not carry user info (user:password@)".into());
    }
    if url.contains('#') || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces or a #fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{AlertKind, Config, WebhookFormat};

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_full_section_parses() {
        let text = r#"
            [alerts]
            enabled = true
            window_s = 600
            max_per_hour = 6
            [[alerts.rules]]
            name = "origin"
            kind = "origin_errors"
            min_count = 10
            factor = 3
            baseline = "mean"
            threshold = 500
            [[alerts.webhooks]]
            url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
            format = "dingtalk"
            secret_env = "DINGTALK_SECRET"
            [[alerts.webhooks]]
            url = "https://hooks.slack.com/services/T0/B0/x"
            format = "slack"
        "#;
        let config = Config::parse(text).expect("valid");
        let alerts = config.alerts;
        assert_eq!(alerts.window_s, 600);
        assert_eq!(alerts.rules.len(), 1, "rules replace the defaults");
        assert_eq!(alerts.rules[0].kind, AlertKind::OriginErrors);
        assert_eq!(alerts.rules[0].threshold, Some(500));
        assert_eq!(alerts.rules[0].baseline_minutes, 60);
        assert_eq!(alerts.webhooks[0].format, WebhookFormat::Dingtalk);
        assert_eq!(alerts.webhooks[1].secret_env, None);
    }

    #[test]
    fn enabled_alerts_need_a_webhook() {
        assert_eq!(errors("[alerts]\nenabled = true\n"), ["alerts.webhooks"]);
    }

    #[test]
    fn enabled_alerts_need_the_store() {
        let text = "[store]\nenabled = false\n[alerts]\nenabled = true\n\
                    [[alerts.webhooks]]\nurl = \"https://example.com/hook\"\n";
        assert_eq!(errors(text), ["alerts.enabled"]);
    }

    #[test]
    fn bad_webhooks_are_reported_by_field() {
        let text = r#"
            [[alerts.webhooks]]
            url = "ftp://example.com/x"
            [[alerts.webhooks]]
            url = "https://user:pw@example.com/x"
            [[alerts.webhooks]]
            url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
            format = "wecom"
            secret_env = "X"
            [[alerts.webhooks]]
            url = "https:///x"
            format = "teams"
        "#;
        // An unknown format is a syntax error, reported alone.
        let unknown = errors(text);
        assert_eq!(unknown, [""], "{unknown:?}");
        let text = text.replace("format = \"teams\"", "");
        assert_eq!(
            errors(&text),
            [
                "alerts.webhooks[0].url",
                "alerts.webhooks[1].url",
                "alerts.webhooks[2].secret_env",
                "alerts.webhooks[3].url",
            ]
        );
    }

    #[test]
    fn bad_timing_and_rules_are_reported() {
        let text = r#"
            [alerts]
            window_s = 90
            repeat_s = 60
            max_per_hour = 0
            [[alerts.rules]]
            name = "a"
            kind = "rate"
            factor = 0.5
            [[alerts.rules]]
            name = "a"
            kind = "rate"
            baseline_minutes = 2
        "#;
        assert_eq!(
            errors(text),
            [
                "alerts.window_s",
                "alerts.repeat_s",
                "alerts.max_per_hour",
                "alerts.rules[0].factor",
                "alerts.rules[1].name",
                "alerts.rules[1].baseline_minutes",
            ]
        );
    }
}
