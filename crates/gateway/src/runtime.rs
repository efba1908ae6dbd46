//! A configuration compiled into the tables the data path uses. A reload
//! builds a whole new [`Runtime`] and swaps it in atomically; a request keeps
//! the runtime it started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use portcullis_config::{
    BlockResponse, ClassAction, Config, DetectConfig, DetectMode, OnIncomplete, RuleAction,
    UpstreamConfig,
};
use portcullis_detect::{Detector, Profile};

use crate::client_ip::ForwardedHeader;
use crate::edge::classify::Classifier;
use crate::edge::ipset::IpSet;
use crate::edge::quota::Quota;
use crate::files::modified;
use crate::origin::OriginPool;
use crate::policy::Policies;
use crate::risk::Risk;
use crate::trust::ClientTrust;

/// One origin and the requests it serves.
pub struct Upstream {
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub authority: http::uri::Authority,
    /// One connection pool per worker thread, so that a connection and the
    /// requests using it stay on one core.
    pools: Box<[Arc<OriginPool>]>,
    pub response_timeout: Duration,
}

/// A threat feed's addresses and what to do with them.
pub struct Feed {
    pub name: String,
    pub action: ClassAction,
    pub set: IpSet,
}

/// Attack detection as it applies to one route.
pub struct Detection {
    pub detector: Detector,
    pub mode: DetectMode,
    pub threshold: u32,
}

pub struct Runtime {
    /// Increases by one with every configuration applied.
    pub version: u64,
    /// Worker threads serving the data listeners.
    pub workers: usize,
    pub config: Config,
    pub allow: IpSet,
    pub deny: IpSet,
    pub feeds: Vec<Feed>,
    pub trusted_proxies: IpSet,
    pub forwarded: ForwardedHeader,
    /// The names the origin request's headers treat apart.
    pub forwarding_names: crate::http::headers::ForwardingNames,
    pub classifier: Classifier,
    pub quota: Quota,
    pub rate_limits: portcullis_limits::RateLimits,
    /// Core URLs (layer 3).
    pub policies: Policies,
    /// The challenge service and the clearance and signature checks.
    pub trust: ClientTrust,
    /// Verifies the JWTs of routes that require one (`[auth]`).
    pub jwt: portcullis_authz::JwtVerifier,
    /// The risk engine and the risk headers (`[risk]`).
    pub risk: Risk,
    pub upstreams: Vec<Upstream>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Detection by path prefix, longest first; the empty prefix is the default.
    detection: Vec<(String, Option<Detection>)>,
    /// `[[detect.rules]]`, compiled; evaluated where detection is on.
    pub custom_rules: Vec<CustomRule>,
    /// Files whose change triggers a reload (feeds, certificates), with their stamps.
    pub watched: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Runtime {
    /// Compiles a validated configuration; fails on files that cannot be read.
    pub fn build(config: Config, version: u64) -> anyhow::Result<Runtime> {
        let mut watched = Vec::new();
        let feeds = config
            .ip_lists
            .feeds
            .iter()
            .map(|feed| {
                watched.push((feed.path.clone(), modified(&feed.path)));
                let text = std::fs::read_to_string(&feed.path)
                    .with_context(|| format!("threat feed {:?}: cannot read {}", feed.name, feed.path.display()))?;
                let (set, bad) = IpSet::parse_feed(&text);
                if bad > 0 {
                    tracing::warn!(feed = %feed.name, bad_lines = bad, "threat feed has lines that are not addresses");
                }
                Ok(Feed {
                    name: feed.name.clone(),
                    action: feed.action,
                    set,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match &config.server.tls {
            Some(tls) => {
                watched.push((tls.cert.clone(), modified(&tls.cert)));
                watched.push((tls.key.clone(), modified(&tls.key)));
                Some(Arc::new(load_tls(&tls.cert, &tls.key)?))
            }
            None => None,
        };
        let jwt = portcullis_authz::JwtVerifier::new(&config.auth)?;
        let risk = Risk::new(&config.risk, &mut watched)?;
        watched.extend(jwt.files().iter().map(|f| (f.clone(), modified(f))));
        let workers = match config.server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let mut upstreams = config
            .upstreams
            .iter()
            .map(|u| build_upstream(u, workers))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Most specific first: host-bound before any-host, then longest prefix.
        upstreams.sort_by_key(|u| (u.hosts.is_empty(), std::cmp::Reverse(u.path_prefix.len())));
        Ok(Runtime {
            version,
            workers,
            allow: IpSet::from_nets(&config.ip_lists.allow),
            deny: IpSet::from_nets(&config.ip_lists.deny),
            feeds,
            trusted_proxies: IpSet::from_nets(&config.client_ip.trusted_proxies),
            forwarded: ForwardedHeader::parse(&config.client_ip.header)
                .context("client_ip.header is not a header name")?,
            forwarding_names: crate::http::headers::ForwardingNames::new(
                &config.headers.remove,
                risk.headers.names(),
            ),
            classifier: Classifier::new(&config.traffic),
            detection: build_detection(&config.detect),
            custom_rules: build_custom_rules(&config.detect)?,
            quota: Quota::new(&config.quota),
            rate_limits: portcullis_limits::RateLimits::new(&config.rate_limits),
            policies: Policies::new(&config.policies),
            trust: ClientTrust::new(&config.challenge)?,
            jwt,
            risk,
            upstreams,
            tls,
            watched,
            config,
        })
    }

    /// The origin for a host and path: host-bound origins first, then the
    /// longest matching prefix.
    pub fn upstream(&self, host: &str, path: &str) -> Option<&Upstream> {
        let host = host.split(':').next().unwrap_or_default();
        self.upstreams.iter().find(|u| {
            (u.hosts.is_empty() || u.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
                && path.starts_with(u.path_prefix.as_str())
        })
    }

    /// The detection that applies to a path, if it is on there.
    pub fn detection(&self, path: &str) -> Option<&Detection> {
        self.detection
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .and_then(|(_, detection)| detection.as_ref())
    }

    /// Whether a watched file changed since this runtime was built.
    pub fn files_changed(&self) -> bool {
        self.watched
            .iter()
            .any(|(path, stamp)| modified(path) != *stamp)
    }

    /// A configured answer with its template filled in.
    pub fn render(&self, response: &BlockResponse, status: u16, request_id: &str) -> Bytes {
        Bytes::from(
            response
                .body
                .replace("{{request_id}}", request_id)
                .replace("{{status}}", &status.to_string()),
        )
    }
}

/// One `[[detect.rules]]` entry with its expression compiled.
pub struct CustomRule {
    pub id: String,
    pub expr: portcullis_rules::Expr,
    pub action: RuleAction,
    pub score: u32,
    /// Path prefixes; empty means every path.
    pub paths: Vec<String>,
}

impl CustomRule {
    /// Whether the rule looks at a (normalised) path.
    pub fn applies_to(&self, path: &[u8]) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_bytes()))
    }
}

/// Validation compiled every expression already; an error here means the
/// configuration did not come through `Config::parse`.
fn build_custom_rules(config: &DetectConfig) -> anyhow::Result<Vec<CustomRule>> {
    config
        .rules
        .iter()
        .map(|rule| {
            Ok(CustomRule {
                id: rule.id.clone(),
                expr: portcullis_rules::Expr::compile(&rule.when)
                    .with_context(|| format!("detect rule {:?}", rule.id))?,
                action: rule.action,
                score: rule.score,
                paths: rule.paths.clone(),
            })
        })
        .collect()
}

fn build_detection(config: &DetectConfig) -> Vec<(String, Option<Detection>)> {
    let detection = |enabled: bool,
                     mode,
                     sensitivity,
                     on_incomplete,
                     excluded: Vec<String>,
                     free_text: Vec<String>| {
        enabled.then(|| Detection {
            detector: Detector::new(Profile {
                sensitivity: match sensitivity {
                    portcullis_config::Sensitivity::Low => portcullis_detect::Sensitivity::Low,
                    portcullis_config::Sensitivity::Medium => {
                        portcullis_detect::Sensitivity::Medium
                    }
                    portcullis_config::Sensitivity::High => portcullis_detect::Sensitivity::High,
                },
                excluded,
                free_text,
                on_incomplete: match on_incomplete {
                    OnIncomplete::Refuse => portcullis_detect::OnIncomplete::Refuse,
                    OnIncomplete::Signal => portcullis_detect::OnIncomplete::Signal,
                },
                ..Profile::default()
            }),
            mode,
            threshold: config.threshold,
        })
    };
    let mut plans: Vec<(String, Option<Detection>)> = config
        .routes
        .iter()
        .map(|route| {
            let joined = |global: &[String], own: &[String]| [global, own].concat();
            (
                route.path_prefix.clone(),
                detection(
                    route.enabled.unwrap_or(config.enabled),
                    route.mode.unwrap_or(config.mode),
                    route.sensitivity.unwrap_or(config.sensitivity),
                    route.on_incomplete.unwrap_or(config.on_incomplete),
                    joined(&config.excluded, &route.excluded),
                    joined(&config.free_text, &route.free_text),
                ),
            )
        })
        .collect();
    plans.push((
        String::new(),
        detection(
            config.enabled,
            config.mode,
            config.sensitivity,
            config.on_incomplete,
            config.excluded.clone(),
            config.free_text.clone(),
        ),
    ));
    plans.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    plans
}

impl Upstream {
    /// The connection pool of the calling worker thread.
    pub fn pool(&self) -> &Arc<OriginPool> {
        &self.pools[crate::worker::worker_index() % self.pools.len()]
    }
}

fn build_upstream(config: &UpstreamConfig, workers: usize) -> anyhow::Result<Upstream> {
    let uri: http::Uri = config
        .url
        .parse()
        .with_context(|| format!("upstream url {:?}", config.url))?;
    let authority = uri
        .authority()
        .cloned()
        .with_context(|| format!("upstream url {:?} has no host", config.url))?;
    let pool = || {
        Arc::new(OriginPool::new(
            &authority,
            Duration::from_millis(config.connect_timeout_ms),
            Duration::from_millis(config.pool_idle_timeout_ms),
            config.pool_max_idle,
        ))
    };
    Ok(Upstream {
        hosts: config.hosts.clone(),
        path_prefix: config.path_prefix.clone(),
        pools: (0..workers.max(1)).map(|_| pool()).collect(),
        authority,
        response_timeout: Duration::from_millis(config.response_timeout_ms),
    })
}

fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate PEM in {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless session tickets (keys random per start, rotated by rustls):
    // a returning client resumes on any worker without a full handshake.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(text: &str) -> Runtime {
        Runtime::build(Config::parse(text).expect("valid"), 1).expect("builds")
    }

    #[test]
    fn upstream_choice_by_host_and_prefix() {
        let rt = runtime(
            r#"
            [[upstreams]]
            url = "http://127.0.0.1:1001"
            [[upstreams]]
            url = "http://127.0.0.1:1002"
            path_prefix = "/api/"
            [[upstreams]]
            url = "http://127.0.0.1:1003"
            hosts = ["admin.example.com"]
            "#,
        );
        let pick = |host, path| rt.upstream(host, path).map(|u| u.authority.to_string());
        assert_eq!(pick("x.com", "/").as_deref(), Some("127.0.0.1:1001"));
        assert_eq!(pick("x.com", "/api/v1").as_deref(), Some("127.0.0.1:1002"));
        assert_eq!(
            pick("ADMIN.example.com:8080", "/api/v1").as_deref(),
            Some("127.0.0.1:1003")
        );
    }

    #[test]
    fn detection_by_longest_prefix() {
        let rt = runtime(
            r#"
            [detect]
            mode = "block"
            [[detect.routes]]
            path_prefix = "/api/posts"
            mode = "log-only"
            [[detect.routes]]
            path_prefix = "/health"
            enabled = false
            "#,
        );
        assert_eq!(
            rt.detection("/api/x").map(|d| d.mode),
            Some(DetectMode::Block)
        );
        assert_eq!(
            rt.detection("/api/posts/1").map(|d| d.mode),
            Some(DetectMode::LogOnly)
        );
        assert!(rt.detection("/healthz").is_none());
    }

    #[test]
    fn custom_rules_are_compiled_with_their_paths() {
        let rt = runtime(
            r#"
            [[detect.rules]]
            id = "no-admin"
            when = 'path starts_with "/admin"'
            action = "block"
            paths = ["/admin", "/api/"]
            "#,
        );
        let rule = &rt.custom_rules[0];
        assert_eq!((rule.id.as_str(), rule.score), ("no-admin", 10));
        assert!(rule.applies_to(b"/admin/users"));
        assert!(!rule.applies_to(b"/public"));
    }

    #[test]
    fn missing_feed_file_is_an_error() {
        let config =
            Config::parse("[[ip_lists.feeds]]\nname = \"x\"\npath = \"/nonexistent/feed.txt\"\n")
                .expect("valid");
        let err = Runtime::build(config, 1).err().expect("fails");
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    }

    #[test]
    fn block_template_is_filled() {
        let rt = runtime("");
        let body = rt.render(&rt.config.block.blocked, 403, "abc123");
        assert_eq!(&body[..], br#"{"error":"blocked","request_id":"abc123"}"#);
    }
}
