//! Rate limits of the gateway (layer 2).
//!
//! Owns which rules apply to a request (host, path pattern, method), the key
//! each rule counts by (client address, its /24 or /64, device, account, the
//! route), spending from GCRA cells in the shared state, and escalation of
//! repeated violations into temporary bans whose length doubles. Storage is
//! the [`StateStore`]'s; the gateway applies the bans this crate decides.

mod pattern;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use portcullis_config::{Escalation, KeyPart, LimitAction, RateLimitRule};
use portcullis_state::{Gcra, Op, Reply, StateError, StateResult, StateStore};

pub use pattern::{PathPattern, RouteMatcher};

/// What the rules look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a str,
    pub ip: IpAddr,
    pub device: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// A rule ready to match requests.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    route: RouteMatcher,
    key: Vec<KeyPart>,
    limit: Gcra,
    action: LimitAction,
    escalate: Option<Escalation>,
}

/// A refusal (or, for `tag` rules, an excess) by one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded<'r> {
    pub rule: &'r str,
    pub action: LimitAction,
    pub retry_after: Duration,
    /// Set when this refusal escalated into a ban of the client address.
    pub ban: Option<Duration>,
}

impl Rule {
    pub fn new(config: &RateLimitRule) -> Self {
        Rule {
            name: config.name.clone(),
            route: RouteMatcher::new(
                &config.hosts,
                &config.path,
                &config.methods,
                config.path_case,
            ),
            key: config.key.clone(),
            limit: Gcra::per_second(config.rate, config.burst),
            action: config.action,
            escalate: config.escalate.clone(),
        }
    }

    pub fn applies(&self, facts: &RequestFacts) -> bool {
        self.route.matches(facts.host, facts.method, facts.path)
    }

    /// The state key of this request's cell.
    pub fn key(&self, facts: &RequestFacts) -> String {
        let mut key = String::with_capacity(48);
        key.push_str("rl:");
        key.push_str(&self.name);
        for part in &self.key {
            key.push(':');
            match part {
                KeyPart::Ip => {
                    let _ = write!(key, "{}", facts.ip);
                }
                KeyPart::IpPrefix => {
                    let _ = write!(key, "{}", ip_prefix(facts.ip));
                }
                KeyPart::Device => key.push_str(facts.device.unwrap_or("-")),
                KeyPart::Account => key.push_str(facts.account.unwrap_or("-")),
                KeyPart::Route => key.push('*'),
            }
        }
        key
    }

    async fn escalate(&self, state: &dyn StateStore, ip: IpAddr) -> StateResult<Option<Duration>> {
        let Some(e) = &self.escalate else {
            return Ok(None);
        };
        let violations_key = format!("rlv:{}:{ip}", self.name);
        let violations = state
            .incr(&violations_key, 1, Duration::from_secs(e.within_s))
            .await?;
        if violations < i64::from(e.violations) {
            return Ok(None);
        }
        state.delete(&violations_key).await?;
        let bans_today = state
            .incr(&format!("rlb:{ip}"), 1, Duration::from_secs(24 * 3600))
            .await?;
        Ok(Some(ban_length(e, bans_today)))
    }
}

/// `ban_s`, doubled for every earlier ban of the day, capped at `max_ban_s`.
pub fn ban_length(e: &Escalation, bans_today: i64) -> Duration {
    let doublings = u32::try_from(bans_today.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    let secs = e.ban_s.saturating_mul(1u64 << doublings).min(e.max_ban_s);
    Duration::from_secs(secs)
}

/// The network a client address belongs to for `ip_prefix` keys.
pub fn ip_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// All the rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    rules: Vec<Rule>,
}

impl RateLimits {
    pub fn new(rules: &[RateLimitRule]) -> Self {
        RateLimits {
            rules: rules.iter().map(Rule::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The names of the rules whose route covers this request.
    pub fn routed<'a>(
        &'a self,
        host: &'a str,
        method: &'a str,
        path: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.route.matches(host, method, path))
            .map(|r| r.name.as_str())
    }

    /// Spends one request from every rule that applies (one state batch, so
    /// one round trip on a network backend); returns the rules whose limit
    /// was exceeded. Escalation, on refusals only, takes more calls.
    pub async fn check(
        &self,
        state: &dyn StateStore,
        facts: &RequestFacts<'_>,
    ) -> StateResult<Vec<Exceeded<'_>>> {
        let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.applies(facts)).collect();
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = rules
            .iter()
            .map(|rule| Op::RateLimit {
                key: rule.key(facts),
                limit: rule.limit,
                cost: 1,
            })
            .collect();
        let replies = state.batch(&ops).await?;
        let mut exceeded = Vec::new();
        for (rule, reply) in rules.into_iter().zip(replies) {
            let Reply::Rate(decision) = reply else {
                return Err(StateError::Unavailable(format!(
                    "unexpected reply {reply:?} to a rate limit"
                )));
            };
            if decision.allowed {
                continue;
            }
            let ban = match rule.action {
                LimitAction::Reject => rule.escalate(state, facts.ip).await?,
                LimitAction::Tag => None,
            };
            exceeded.push(Exceeded {
                rule: &rule.name,
                action: rule.action,
                retry_after: decision.retry_after,
                ban,
            });
        }
        Ok(exceeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_state::{MemoryStore, MemoryStoreOptions};

    fn rule(text: &str) -> RateLimits {
        let config = portcullis_config::Config::parse(text).expect("valid");
        RateLimits::new(&config.rate_limits)
    }

    fn facts<'a>(path: &'a str, ip: &str, device: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts {
            host: "api.example.com",
            path,
            method: "POST",
            ip: ip.parse().unwrap(),
            device,
            account: None,
        }
    }

    #[tokio::test]
    async fn per_ip_limit_with_burst() {
        let limits =
            rule("[[rate_limits]]\nname = \"api\"\npath = \"/api/\"\nrate = 10\nburst = 10\n");
        let state = MemoryStore::new(MemoryStoreOptions::default());
        let mut refused = 0;
        for _ in 0..15 {
            refused += limits
                .check(&state, &facts("/api/x", "1.2.3.4", None))
                .await
                .unwrap()
                .len();
        }
        assert_eq!(refused, 5);
        let other = limits
            .check(&state, &facts("/api/x", "1.2.3.5", None))
            .await
            .unwrap();
        assert!(other.is_empty(), "another address has its own cell");
        let unrelated = limits
            .check(&state, &facts("/static/x", "1.2.3.4", None))
            .await
            .unwrap();
        assert!(unrelated.is_empty(), "rule does not apply");
    }

    #[tokio::test]
    async fn device_keys_and_method_filter() {
        let limits = rule(
            "[[rate_limits]]\nname = \"vote\"\npath = \"/api/*/vote\"\nmethods = [\"POST\"]\nkey = [\"device\"]\nrate = 1\nburst = 2\n",
        );
        let state = MemoryStore::new(MemoryStoreOptions::default());
        for ip in ["10.0.0.1", "10.0.0.2"] {
            assert!(
                limits
                    .check(&state, &facts("/api/42/vote", ip, Some("dev-a")))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        let third = limits
            .check(&state, &facts("/api/42/vote", "10.0.0.3", Some("dev-a")))
            .await
            .unwrap();
        assert_eq!(third.len(), 1, "same device across addresses");
        assert!(third[0].retry_after > Duration::ZERO);
        let get = RequestFacts {
            method: "GET",
            ..facts("/api/42/vote", "10.0.0.3", Some("dev-a"))
        };
        assert!(limits.check(&state, &get).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn repeated_violations_escalate_to_growing_bans() {
        let limits = rule(
            "[[rate_limits]]\nname = \"login\"\npath = \"/login$\"\nrate = 1\nburst = 1\nescalate = { violations = 3, within_s = 60, ban_s = 10, max_ban_s = 25 }\n",
        );
        let state = MemoryStore::new(MemoryStoreOptions::default());
        let mut bans = Vec::new();
        for _ in 0..10 {
            for exceeded in limits
                .check(&state, &facts("/login", "7.7.7.7", None))
                .await
                .unwrap()
            {
                bans.extend(exceeded.ban);
            }
        }
        assert_eq!(
            bans,
            [
                Duration::from_secs(10),
                Duration::from_secs(20),
                Duration::from_secs(25)
            ]
        );
    }

    #[test]
    fn keys_and_prefixes() {
        let limits = rule(
            "[[rate_limits]]\nname = \"r\"\npath = \"/\"\nkey = [\"ip_prefix\", \"account\"]\nrate = 1\nburst = 1\n",
        );
        let f = RequestFacts {
            account: Some("u1"),
            ..facts("/", "203.0.113.77", None)
        };
        assert_eq!(limits.rules[0].key(&f), "rl:r:203.0.113.0/24:u1");
        assert_eq!(
            ip_prefix("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
