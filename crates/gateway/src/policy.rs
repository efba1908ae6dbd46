//! Layer 3: the policies of core URLs. A request on a core URL gets its
//! client checked (clearance, signature), a risk rank from all signals, and
//! the action of the policy's band for that rank; the origin receives the
//! rank in risk headers. URLs that no policy names pass untouched.

use http::HeaderMap;
use http::header;
use portcullis_config::{PolicyConfig, PolicyMode};
use portcullis_limits::RouteMatcher;

use crate::context::{ChallengeState, Demand, RequestContext};

/// One compiled policy.
pub struct Policy {
    pub config: PolicyConfig,
    route: RouteMatcher,
}

/// The policies of a runtime, in file order.
#[derive(Default)]
pub struct Policies(Vec<Policy>);

impl Policies {
    pub fn new(configs: &[PolicyConfig]) -> Policies {
        Policies(
            configs
                .iter()
                .map(|config| Policy {
                    route: RouteMatcher::new(
                        &config.hosts,
                        &config.path,
                        &config.methods,
                        config.path_case,
                    ),
                    config: config.clone(),
                })
                .collect(),
        )
    }

    /// The index of the first policy for this request.
    pub fn find(&self, host: &str, method: &str, path: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|p| p.route.matches(host, method, path))
    }

    pub fn get(&self, index: usize) -> Option<&Policy> {
        self.0.get(index)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The action of the policy's band for the request's rank, as a signal.
pub fn apply_bands(policy: &PolicyConfig, ctx: &mut RequestContext) {
    let Some(risk) = &ctx.risk else {
        return;
    };
    let rank = risk.rank;
    let reached = |band: Option<u8>| band.is_some_and(|b| rank >= b);
    let cleared = matches!(ctx.challenge, ChallengeState::Passed { .. });
    let (name, demand, would) = if reached(policy.intercept_at) {
        ("risk_intercept", Demand::Intercept, "intercept")
    } else if reached(policy.challenge_at) && !cleared {
        // A client that already passed the check is not sent round again:
        // its rank reaches the origin, which decides.
        let demand = Demand::Challenge {
            code: "challenge_required",
        };
        ("risk_challenge", demand, "challenge")
    } else {
        return;
    };
    let evidence = format!("rank {rank}: {}", risk.reasons.join(", "));
    match policy.mode {
        PolicyMode::Enforce => ctx.add(name, evidence, demand),
        PolicyMode::LogOnly => {
            ctx.would = Some(would);
            ctx.add("policy_trial", evidence, Demand::Tag);
        }
    }
}

/// Whether the request is a top-level browser navigation (which gets the
/// interstitial page rather than a JSON challenge).
pub fn is_navigation(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-mode") {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => header(header::ACCEPT.as_str()).is_some_and(|a| a.contains("text/html")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::RiskVerdict;
    use http::HeaderValue;
    use portcullis_config::Config;

    fn policies(toml: &str) -> Vec<PolicyConfig> {
        Config::parse(toml).expect("valid").policies
    }

    fn ctx(rank: u8) -> RequestContext {
        let ip = std::net::IpAddr::from([192, 0, 2, 1]);
        let mut ctx = RequestContext::new("r".into(), ip, ip);
        ctx.risk = Some(RiskVerdict {
            rank,
            device_rank: 0,
            reasons: vec!["datacenter_ip".into()],
        });
        ctx
    }

    #[test]
    fn first_matching_policy_wins() {
        let p = Policies::new(&policies(
            r#"
            [[policies]]
            name = "vote"
            path = "/api/*/vote$"
            methods = ["POST"]
            [[policies]]
            name = "api"
            path = "/api/"
            "#,
        ));
        assert_eq!(p.find("h", "POST", "/api/42/vote"), Some(0));
        assert_eq!(p.find("h", "GET", "/api/42/vote"), Some(1));
        assert_eq!(p.find("h", "GET", "/static/a.js"), None);
    }

    #[test]
    fn bands_pick_the_action_and_trial_mode_only_records_it() {
        let [enforce, trial] = [r#"mode = "enforce""#, r#"mode = "log-only""#].map(|mode| {
            policies(&format!(
                "[[policies]]\nname = \"p\"\npath = \"/\"\nchallenge_at = 3\nintercept_at = 4\n{mode}\n"
            ))
            .remove(0)
        });
        let mut c = ctx(4);
        apply_bands(&enforce, &mut c);
        assert_eq!(c.signals[0].demand, Demand::Intercept);
        let mut c = ctx(3);
        apply_bands(&enforce, &mut c);
        assert!(matches!(c.signals[0].demand, Demand::Challenge { .. }));
        let mut c = ctx(2);
        apply_bands(&enforce, &mut c);
        assert!(c.signals.is_empty());
        let mut c = ctx(4);
        apply_bands(&trial, &mut c);
        assert_eq!(c.would, Some("intercept"));
        assert!(!c.is_stopped());
    }

    #[test]
    fn a_cleared_client_is_not_challenged_again() {
        let policy =
            policies("[[policies]]\nname = \"p\"\npath = \"/\"\nchallenge_at = 3\n").remove(0);
        let mut c = ctx(3);
        c.challenge = ChallengeState::Passed { age_s: 5 };
        apply_bands(&policy, &mut c);
        assert!(c.signals.is_empty());
    }

    #[test]
    fn navigations_are_told_apart_from_api_calls() {
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!is_navigation(&h));
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_navigation(&h));
    }
}
