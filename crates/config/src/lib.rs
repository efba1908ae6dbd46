//! Typed configuration of the Portcullis gateway.
//!
//! Owns the TOML schema (every section, its defaults and its documentation),
//! parsing, and validation with errors that name the field and, where the
//! text allows, the line. It knows nothing of sockets or of the other crates:
//! the gateway compiles a validated [`Config`] into its runtime tables.

mod alerts;
mod auth;
mod overlay;
mod policy;
pub mod risk;
pub mod signals;
mod state;
mod store;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use alerts::{AlertKind, AlertRule, AlertsConfig, BaselineStat, WebhookConfig, WebhookFormat};
pub use auth::{AuthConfig, JwtAlgorithm, JwtIssuerConfig};
pub use overlay::{Overlay, OverlayLists};
pub use policy::{
    ChallengeConfig, ClearanceRequirement, CustomResponse, EncodedSlash, JwtRequirement, PathCase,
    PolicyConfig, PolicyMode,
};
pub use risk::{IpTypesConfig, RiskConfig, RiskHeaderNames, RiskLimits, RiskModel};
pub use state::{NonceFallback, RedisConfig, RedisMode, StateBackend, StateConfig, TierCapacities};
pub use store::{ConsoleConfig, StoreBackend, StoreConfig};
pub use validate::FieldError;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_errors(.0))]
    Invalid(Vec<FieldError>),
}

fn render_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The individual problems, for callers that print them one per line.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Read { path, source } => vec![FieldError {
                field: String::new(),
                line: None,
                message: format!("cannot read {}: {source}", path.display()),
            }],
            ConfigError::Invalid(errors) => errors.clone(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// Origins, chosen by host and path prefix (longest prefix wins).
    pub upstreams: Vec<UpstreamConfig>,
    pub client_ip: ClientIpConfig,
    pub limits: LimitsConfig,
    pub ip_lists: IpListsConfig,
    pub protocol: ProtocolConfig,
    /// Headers the gateway owns on the way to the origin.
    pub headers: HeadersConfig,
    pub traffic: TrafficConfig,
    pub quota: QuotaConfig,
    pub block: BlockResponses,
    pub events: EventsConfig,
    pub detect: DetectConfig,
    pub identity: IdentityConfig,
    /// Rate limits, each for the requests its route matches.
    pub rate_limits: Vec<RateLimitRule>,
    /// Core URLs (layer 3); the first matching policy applies.
    pub policies: Vec<PolicyConfig>,
    pub challenge: ChallengeConfig,
    /// JWT issuers for routes that require a verified token.
    pub auth: AuthConfig,
    /// The risk engine (layer 3) and the risk headers for the origin.
    pub risk: RiskConfig,
    /// Where decision events and minute rollups are kept.
    pub store: StoreConfig,
    /// The admin console (web UI and API on the admin listener).
    pub console: ConsoleConfig,
    /// Webhook notifications on spikes of intercepts and origin errors.
    pub alerts: AlertsConfig,
    /// Counters, rate-limit cells, bans and nonces: in memory or in Redis.
    pub state: StateConfig,
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid(vec![validate::from_toml_error(text, &e)]))?;
        let errors = validate::validate(&config, text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain-text data listener (HTTP/1.1 and h2c).
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, health, later the console. Keep it private.
    pub admin: Option<SocketAddr>,
    /// TLS data listener (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<TlsConfig>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Run the worker threads under Linux's `SCHED_BATCH` policy: a worker
    /// woken by a readable socket does not preempt the task running on its
    /// core, so it wakes less often and finds more ready requests each time
    /// (see `docs/PERFORMANCE.md`). Turn it off when the gateway shares its
    /// cores with latency-sensitive work of higher priority.
    pub batch_scheduling: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
            tls: None,
            workers: 0,
            batch_scheduling: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain; re-read on every reload.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` of the origin.
    pub url: String,
    /// Host names this origin serves; empty means any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix this origin serves.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the origin's response head.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Idle keep-alive connections kept per origin.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// An idle pooled connection is closed after this long: below common
    /// origins' keep-alive (Node's is 5 s), so the gateway, not the origin,
    /// ends it.
    #[serde(default = "default_pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: u64,
}

fn default_pool_idle_timeout_ms() -> u64 {
    4_000
}

fn default_prefix() -> String {
    "/".into()
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_response_timeout_ms() -> u64 {
    30_000
}
fn default_pool_idle() -> usize {
    256
}

impl UpstreamConfig {
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamConfig {
            url: url.into(),
            hosts: Vec::new(),
            path_prefix: default_prefix(),
            connect_timeout_ms: default_connect_timeout_ms(),
            response_timeout_ms: default_response_timeout_ms(),
            pool_max_idle: default_pool_idle(),
            pool_idle_timeout_ms: default_pool_idle_timeout_ms(),
        }
    }
}

/// Where the client address comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpConfig {
    /// Peers allowed to tell us the client address. Requests from any other
    /// peer use the socket address, whatever headers they carry.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `x-forwarded-for`, `forwarded`, or a single-address header such as `x-real-ip`.
    pub header: String,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        ClientIpConfig {
            trusted_proxies: Vec::new(),
            header: "x-forwarded-for".into(),
        }
    }
}

/// Sizes and timeouts enforced before anything else looks at a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Whole request head (request line and headers).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    /// The part of a body that is buffered and inspected before it is forwarded.
    pub inspect_body_bytes: usize,
    /// Time to receive a request head; also closes idle keep-alive connections.
    pub header_timeout_ms: u64,
    /// Time to receive the inspected part of a body.
    pub body_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 20_000,
            max_connections_per_ip: 512,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 32 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            inspect_body_bytes: 256 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpListsConfig {
    /// Trusted clients: skip IP reputation, traffic classes and attack detection.
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    /// Files of addresses or CIDRs, one per line (`#` comments), reloaded when they change.
    pub feeds: Vec<ThreatFeed>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThreatFeed {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_feed_action")]
    pub action: ClassAction,
}

fn default_feed_action() -> ClassAction {
    ClassAction::Block
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Methods accepted; anything else gets a 400 (405 semantics, but before routing).
    pub allowed_methods: Vec<String>,
    /// Reject percent-encoding that does not decode (`%zz`, a lone `%`);
    /// off, such a `%` is a literal, as nginx and most origins read it.
    pub reject_bad_percent: bool,
    /// Reject malformed or overlong UTF-8 in path, query, form and JSON bodies.
    pub reject_bad_utf8: bool,
    /// Reject NUL bytes in the target, headers and forms (a `\u0000`
    /// escape inside a JSON string is data).
    pub reject_nul: bool,
    /// Reject bodies declared as JSON that do not parse; off, they are
    /// inspected as text.
    pub reject_bad_json: bool,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            reject_bad_percent: false,
            reject_bad_utf8: true,
            reject_nul: true,
            reject_bad_json: false,
        }
    }
}

/// Headers the gateway owns on the way to the origin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Client-address and forwarding headers removed from every request
    /// (`_` and `-` alike); the gateway sets `X-Forwarded-For`,
    /// `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host` itself.
    pub remove: Vec<String>,
    /// `Upgrade` protocols tunnelled to the origin; any other upgrade
    /// request is forwarded as a plain request.
    pub upgrades: Vec<String>,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            remove: [
                "x-real-ip",
                "forwarded",
                "true-client-ip",
                "x-client-ip",
                "x-cluster-client-ip",
                "cf-connecting-ip",
                "fastly-client-ip",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-forwarded-port",
                "x-forwarded-server",
                "x-original-url",
                "x-rewrite-url",
                "x-original-host",
                "x-host",
                // Other spellings of the client's address, scheme and
                // original target that frameworks and proxies read.
                "client-ip",
                "x-originating-ip",
                "x-remote-ip",
                "x-remote-addr",
                "x-forwarded",
                "forwarded-for",
                "x-proxyuser-ip",
                "x-forwarded-scheme",
                "x-forwarded-ssl",
                "front-end-https",
                "x-url-scheme",
                "x-scheme",
                "x-forwarded-prefix",
                "x-original-uri",
                "x-envoy-original-path",
                "x-envoy-external-address",
            ]
            .map(String::from)
            .to_vec(),
            upgrades: vec!["websocket".into()],
        }
    }
}

/// What to do with one traffic class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClassAction {
    /// Let through and skip further classification penalties.
    Allow,
    /// Let through at the class's rate per client IP; 429 beyond it.
    Throttle,
    /// Answer with the block response.
    Block,
    /// Let through, marked in events and signals for the risk engine.
    Tag,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    pub crawler: CrawlerClass,
    pub automation: AutomationClass,
    pub scanner: ScannerClass,
}

/// Declared search-engine crawlers (matched on the User-Agent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlerClass {
    pub action: ClassAction,
    pub user_agents: Vec<String>,
}

impl Default for CrawlerClass {
    fn default() -> Self {
        CrawlerClass {
            action: ClassAction::Tag,
            user_agents: [
                "Googlebot",
                "bingbot",
                "Baiduspider",
                "YandexBot",
                "DuckDuckBot",
                "Applebot",
                "Sogou web spider",
                "360Spider",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// HTTP libraries, headless browsers and requests missing what every browser sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutomationClass {
    pub action: ClassAction,
    pub user_agents: Vec<String>,
    /// Requests per second per client IP when the action is `throttle`.
    pub throttle_rps: f64,
}

impl Default for AutomationClass {
    fn default() -> Self {
        AutomationClass {
            action: ClassAction::Tag,
            user_agents: [
                "curl/",
                "Wget/",
                "python-requests",
                "python-urllib",
                "aiohttp",
                "httpx",
                "Go-http-client",
                "HeadlessChrome",
                "PhantomJS",
                "Selenium",
                "puppeteer",
                "Playwright",
                "libwww-perl",
                "Scrapy",
                "Apache-HttpClient",
                "node-fetch",
                "axios/",
            ]
            .map(String::from)
            .to_vec(),
            throttle_rps: 5.0,
        }
    }
}

/// Platform review scanners, such as the WeChat review scanner of the incident report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerClass {
    pub action: ClassAction,
    /// Substrings looked for in any header value.
    pub header_markers: Vec<String>,
    pub ips: Vec<ipnet::IpNet>,
    pub throttle_rps: f64,
    /// Scanner traffic never counts toward alerts unless this is set.
    pub alert: bool,
}

impl Default for ScannerClass {
    fn default() -> Self {
        ScannerClass {
            action: ClassAction::Throttle,
            header_markers: vec!["Tencent Security Team".into()],
            ips: [
                "106.55.202.118/32",
                "113.96.223.69/32",
                "125.39.132.125/32",
                "43.139.209.119/32",
            ]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
            throttle_rps: 1.0,
            alert: false,
        }
    }
}

/// The package quota: QPS x bandwidth, as the original product sells it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Requests per second for the whole gateway; unset means unlimited.
    pub qps: Option<f64>,
    /// Megabits per second of request and response bodies; unset means unlimited.
    pub bandwidth_mbps: Option<f64>,
    /// 429 or 503.
    pub status: Option<u16>,
    pub routes: Vec<RouteQuota>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteQuota {
    pub path_prefix: String,
    pub qps: f64,
}

/// Answers given when the gateway stops a request. The body is a template:
/// `{{request_id}}` and `{{status}}` are replaced. Rule internals never appear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlockResponses {
    pub blocked: BlockResponse,
    pub bad_request: BlockResponse,
    pub too_many: BlockResponse,
    /// Extra named responses that route policies may refer to.
    pub custom: BTreeMap<String, BlockResponse>,
}

impl Default for BlockResponses {
    fn default() -> Self {
        BlockResponses {
            blocked: BlockResponse::json(403, "blocked"),
            bad_request: BlockResponse::json(400, "bad request"),
            too_many: BlockResponse::json(429, "too many requests"),
            custom: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlockResponse {
    pub status: u16,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    pub body: String,
}

fn default_content_type() -> String {
    "application/json".into()
}

impl BlockResponse {
    fn json(status: u16, error: &str) -> Self {
        BlockResponse {
            status,
            content_type: default_content_type(),
            body: format!(r#"{{"error":"{error}","request_id":"{{{{request_id}}}}"}}"#),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Write events as JSON lines to standard output.
    pub log: bool,
    /// Also log events of requests that passed with no signal (one line per request).
    pub log_passed: bool,
    /// The fraction (0 to 1) of requests that passed with no signal, on no
    /// core URL, written one by one (a JSON line, and a row in the store
    /// with `[store] record_passed`); the others are only counted (the
    /// store's minute rollups and top lists count them all). `log_passed`
    /// is a fraction of 1.
    pub pass_sample: f64,
    /// Events waiting to be written; beyond it they are dropped and counted.
    pub queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            log: true,
            log_passed: false,
            pass_sample: 0.01,
            queue: 65_536,
        }
    }
}

/// Where the device and account of a request are read from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Header carrying the SDK's device id.
    pub device_header: String,
    /// Header carrying the account id, if the app sends one.
    pub account_header: Option<String>,
    /// Cookie carrying the account id, if any.
    pub account_cookie: Option<String>,
    /// Claim of a verified JWT (see `[auth]`) that is the account id, e.g. `sub`.
    pub account_claim: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            device_header: "x-pc-device".into(),
            account_header: None,
            account_cookie: None,
            account_claim: None,
        }
    }
}

/// One rate limit: the requests of a route, counted per key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    pub name: String,
    /// Host names; empty means any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path pattern: a prefix (`/api/`), or a pattern where `*` matches any
    /// run of characters (`/api/*/vote`). An exact path ends with `$`.
    pub path: String,
    /// Methods; empty means any. GET covers HEAD (origins answer HEAD
    /// with their GET handler).
    #[serde(default)]
    pub methods: Vec<String>,
    /// How the path pattern compares with the canonical path.
    #[serde(default)]
    pub path_case: PathCase,
    /// What is counted: one cell per distinct combination of these parts.
    #[serde(default = "default_key")]
    pub key: Vec<KeyPart>,
    /// Requests per second, sustained.
    pub rate: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    #[serde(default = "default_limit_action")]
    pub action: LimitAction,
    /// Repeated violations turn into a temporary ban of the client address.
    pub escalate: Option<Escalation>,
}

fn default_key() -> Vec<KeyPart> {
    vec![KeyPart::Ip]
}

fn default_limit_action() -> LimitAction {
    LimitAction::Reject
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The client address.
    Ip,
    /// The client's /24 (IPv4) or /64 (IPv6) network.
    IpPrefix,
    /// The device id (see `[identity]`); requests without one share one cell.
    Device,
    /// The account id (see `[identity]`); requests without one share one cell.
    Account,
    /// The rule itself: one cell for the whole route.
    Route,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// 429 with `Retry-After`.
    Reject,
    /// Let through, with a signal for the risk engine.
    Tag,
}

/// After `violations` refusals within `within_s`, ban the client address for
/// `ban_s`, doubling with every ban of the same address in a day, up to `max_ban_s`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub violations: u32,
    pub within_s: u64,
    pub ban_s: u64,
    #[serde(default = "default_max_ban")]
    pub max_ban_s: u64,
}

fn default_max_ban() -> u64 {
    24 * 3600
}

/// Attack detection (layer 2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    pub enabled: bool,
    pub mode: DetectMode,
    pub sensitivity: Sensitivity,
    /// A request is an attack when the scores of its findings add up to this.
    pub threshold: u32,
    /// Locations never inspected (`json.token`, `cookie.`, `header.x-sign*`).
    pub excluded: Vec<String>,
    /// Locations holding prose or code: only strong structures count there.
    pub free_text: Vec<String>,
    /// A request carrying more than the engine reads (pairs, cookies, parts,
    /// nesting, a body beyond `inspect_body_bytes`, stacked encodings,
    /// ambiguous multipart headers): `refuse` it (403), or inspect what fits
    /// and raise the `inspection_incomplete` signal.
    pub on_incomplete: OnIncomplete,
    /// Replace origin error pages that leak internals (stack traces, SQL
    /// errors) with a generic error carrying the request id.
    pub mask_error_pages: bool,
    /// Per-route settings; the longest matching prefix wins.
    pub routes: Vec<DetectRoute>,
    /// Custom rules: expressions over request fields (see crates/rules/README.md).
    pub rules: Vec<CustomRule>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            mode: DetectMode::Block,
            sensitivity: Sensitivity::Medium,
            threshold: 5,
            excluded: Vec::new(),
            free_text: Vec::new(),
            on_incomplete: OnIncomplete::Refuse,
            mask_error_pages: true,
            routes: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// One custom rule: when its expression matches a request under one of its
/// paths, the rule's action applies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Unique; it is the evidence of the signal a match adds.
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// The expression, e.g. `method == "POST" && path starts_with "/api/admin"`.
    pub when: String,
    pub action: RuleAction,
    /// Weight of the signal in the risk score.
    #[serde(default = "default_rule_score")]
    pub score: u32,
    /// Path prefixes the rule applies to; empty means every path.
    #[serde(default)]
    pub paths: Vec<String>,
}

fn default_rule_score() -> u32 {
    10
}

/// What a matching custom rule does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Stop the request with the block response (pass under a `log-only` route).
    Block,
    /// Record the match in the request's event and pass; not weighed in the risk score.
    Log,
    /// Record the match and weigh its score in the risk score.
    Tag,
}

/// Detection settings for the paths under one prefix; unset fields inherit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectRoute {
    pub path_prefix: String,
    pub enabled: Option<bool>,
    pub mode: Option<DetectMode>,
    pub sensitivity: Option<Sensitivity>,
    pub on_incomplete: Option<OnIncomplete>,
    /// Added to the global lists.
    #[serde(default)]
    pub excluded: Vec<String>,
    #[serde(default)]
    pub free_text: Vec<String>,
}

/// What detection does with a request it cannot read whole.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnIncomplete {
    #[default]
    Refuse,
    Signal,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DetectMode {
    /// Stop the request with the block response.
    Block,
    /// Detect and tag, but pass.
    LogOnly,
}

/// How eager detection is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Only structures that practically never occur in normal traffic
    /// (a `<script>` tag, `UNION SELECT`, `${jndi:`): fewest false alarms.
    Low,
    /// Also structures that are very rare in normal traffic, such as a shell
    /// separator followed by a command name. The recommended balance.
    Medium,
    /// Also weak hints (a lone SQL keyword after a quote): catches more, at
    /// the price of false alarms on forms where people write prose or code.
    High,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("").expect("empty config is valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.traffic.scanner.ips.len(), 4);
    }

    #[test]
    fn unknown_field_is_reported_with_line() {
        let err = Config::parse("[limits]\nmax_headers = 10\nmax_hedaers = 3\n").unwrap_err();
        let errors = err.field_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(3));
        assert!(errors[0].message.contains("max_hedaers"), "{}", errors[0]);
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
            [server]
            listen = "0.0.0.0:8080"
            [[upstreams]]
            url = "http://127.0.0.1:3000"
            hosts = ["api.example.com"]
            path_prefix = "/api/"
            [client_ip]
            trusted_proxies = ["10.0.0.0/8", "::1/128"]
            [ip_lists]
            deny = ["203.0.113.0/24"]
            [[ip_lists.feeds]]
            name = "spamhaus-drop"
            path = "/var/lib/feeds/drop.txt"
            [traffic.automation]
            action = "block"
            [quota]
            qps = 1000
            bandwidth_mbps = 20
            [block.blocked]
            status = 451
            content_type = "text/plain"
            body = "no ({{request_id}})"
        "#;
        let config = Config::parse(text).expect("valid");
        assert_eq!(config.upstreams[0].path_prefix, "/api/");
        assert_eq!(config.traffic.automation.action, ClassAction::Block);
        assert_eq!(config.block.blocked.status, 451);
        assert_eq!(config.quota.qps, Some(1000.0));
    }
}

#[cfg(test)]
mod example_files {
    use super::Config;

    /// Every shipped example must pass `portcullis check`.
    #[test]
    fn shipped_examples_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Err(e) = Config::load(&path) {
                    panic!("{}: {e}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 1);
    }

    #[test]
    fn reference_example_spells_out_the_defaults() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let reference = Config::load(&dir.join("portcullis.toml")).expect("valid");
        let defaults = Config {
            upstreams: reference.upstreams.clone(),
            ..Config::default()
        };
        assert_eq!(reference, defaults);
    }
}
