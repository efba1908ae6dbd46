//! The request context every stage reads and adds signals to, the actions
//! the policy step chooses from, and the event written for each decision.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Serialize;

/// The risk headers for the origin, as the risk stage wrote them.
pub type RiskHeaderList = Vec<(HeaderName, HeaderValue)>;

/// The layer a signal comes from (DESIGN.md: edge, clean, policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Edge,
    Clean,
    Policy,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Edge => "edge",
            Layer::Clean => "clean",
            Layer::Policy => "policy",
        }
    }
}

/// What a signal asks of the policy step. The strongest demand wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Demand {
    /// Evidence only: the risk engine weighs it.
    Tag,
    /// Prove a real client first: the challenge (JSON for API clients, the
    /// interstitial for browser navigations), with `x-pc-error: code`.
    Challenge { code: &'static str },
    /// Too fast: 429 (or the quota's 503) with `Retry-After`.
    TooMany { retry_after_s: u64, status: u16 },
    /// A request that breaks the client protocol (signature, replay,
    /// digest): this status with the block response and `x-pc-error: code`.
    Refuse { status: u16, code: &'static str },
    /// The risk rank reached the policy's intercept band: its own response.
    Intercept,
    /// Stop with the block response.
    Block,
    /// Malformed or oversized: this status (400, 413, 414, 431) with the request id.
    BadRequest { status: u16 },
}

/// One observation about a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    pub name: &'static str,
    pub layer: Layer,
    pub weight: u32,
    pub evidence: String,
    pub demand: Demand,
}

/// Traffic class of a client (layer 1 classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrafficClass {
    #[default]
    Normal,
    Crawler,
    Automation,
    Scanner,
    /// On the allow list.
    Trusted,
}

impl TrafficClass {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficClass::Normal => "normal",
            TrafficClass::Crawler => "crawler",
            TrafficClass::Automation => "automation",
            TrafficClass::Scanner => "scanner",
            TrafficClass::Trusted => "trusted",
        }
    }
}

/// What the gateway does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    Pass,
    /// Answer from the gateway with one of the configured responses.
    Intercept(Answer),
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Intercept(Answer::Blocked) => "block",
            Action::Intercept(Answer::BadRequest { .. }) => "bad_request",
            Action::Intercept(Answer::TooMany { .. }) => "throttle",
            Action::Intercept(Answer::Challenge { .. }) => "challenge",
            Action::Intercept(Answer::Refuse { .. }) => "refuse",
            Action::Intercept(Answer::Custom) => "intercept",
        }
    }
}

/// Which configured response answers an intercepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Blocked,
    BadRequest {
        status: u16,
    },
    TooMany {
        retry_after_s: u64,
        status: u16,
    },
    Challenge {
        code: &'static str,
    },
    Refuse {
        status: u16,
        code: &'static str,
    },
    /// The matching policy's own intercept response.
    Custom,
}

/// Everything the pipeline knows about one request.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: IpAddr,
    pub peer_ip: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers are believed.
    pub via_trusted_proxy: bool,
    pub class: TrafficClass,
    pub signals: Vec<Signal>,
    /// The device id the client sent (`x-pc-device` or the device cookie).
    pub device: Option<String>,
    /// The account id (header, cookie or verified JWT claim).
    pub account: Option<String>,
    /// The clearance the client proved, if any.
    pub clearance: Option<portcullis_challenge::ClearanceClaims>,
    /// The outcome of verifying the request's bearer token, once verified
    /// (so that a token is verified once per request, valid or not).
    pub jwt: Option<Result<portcullis_authz::VerifiedToken, portcullis_authz::TokenError>>,
    pub challenge: ChallengeState,
    /// Index of the matching policy (core URL) in the runtime.
    pub policy: Option<usize>,
    /// The risk rank, on core URLs.
    pub risk: Option<RiskVerdict>,
    /// The risk headers for the origin, on core URLs that send them.
    pub risk_headers: RiskHeaderList,
    /// Under a `log-only` policy: what it would have done.
    pub would: Option<&'static str>,
}

/// What the client proved with the challenge service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeState {
    /// No clearance presented.
    #[default]
    None,
    /// A valid clearance, issued this long ago.
    Passed {
        age_s: u64,
    },
    /// A clearance that failed its checks (forged, another device or network, revoked).
    Failed,
    Expired,
}

/// A risk rank with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskVerdict {
    pub rank: u8,
    pub device_rank: u8,
    /// The top reasons, most important first.
    pub reasons: Vec<String>,
}

impl RequestContext {
    pub fn new(request_id: String, client_ip: IpAddr, peer_ip: IpAddr) -> Self {
        RequestContext {
            request_id,
            client_ip,
            peer_ip,
            via_trusted_proxy: false,
            class: TrafficClass::Normal,
            signals: Vec::new(),
            device: None,
            account: None,
            clearance: None,
            jwt: None,
            challenge: ChallengeState::None,
            policy: None,
            risk: None,
            risk_headers: Vec::new(),
            would: None,
        }
    }

    /// Raises the signal `name` of the catalogue
    /// (`portcullis_config::signals`), which gives its layer and weight.
    pub fn add(&mut self, name: &'static str, evidence: impl Into<String>, demand: Demand) {
        let (layer, weight) = catalogued(name);
        self.push(name, layer, weight.unwrap_or(0), evidence.into(), demand);
    }

    /// Raises `name` with a weight of its own (a custom rule's score).
    pub fn add_weighted(
        &mut self,
        name: &'static str,
        weight: u32,
        evidence: impl Into<String>,
        demand: Demand,
    ) {
        let (layer, _) = catalogued(name);
        self.push(name, layer, weight, evidence.into(), demand);
    }

    /// A refusal of a malformed or oversized request.
    pub fn refuse(&mut self, name: &'static str, evidence: impl Into<String>, status: u16) {
        self.add(name, evidence, Demand::BadRequest { status });
    }

    fn push(
        &mut self,
        name: &'static str,
        layer: Layer,
        weight: u32,
        evidence: String,
        demand: Demand,
    ) {
        self.signals.push(Signal {
            name,
            layer,
            weight,
            evidence,
            demand,
        });
    }

    /// Whether a stage has already decided the request must stop; later
    /// stages are skipped then.
    pub fn is_stopped(&self) -> bool {
        self.signals.iter().any(|s| s.demand > Demand::Tag)
    }

    /// The policy step: the strongest demand of all signals picks the action.
    pub fn decide(&self) -> (Action, Option<Layer>) {
        let strongest = self.signals.iter().max_by_key(|s| s.demand);
        match strongest {
            Some(s) => {
                let action = match s.demand {
                    Demand::Tag => return (Action::Pass, None),
                    Demand::TooMany {
                        retry_after_s,
                        status,
                    } => Action::Intercept(Answer::TooMany {
                        retry_after_s,
                        status,
                    }),
                    Demand::Challenge { code } => Action::Intercept(Answer::Challenge { code }),
                    Demand::Refuse { status, code } => {
                        Action::Intercept(Answer::Refuse { status, code })
                    }
                    Demand::Intercept => Action::Intercept(Answer::Custom),
                    Demand::Block => Action::Intercept(Answer::Blocked),
                    Demand::BadRequest { status } => {
                        Action::Intercept(Answer::BadRequest { status })
                    }
                };
                (action, Some(s.layer))
            }
            None => (Action::Pass, None),
        }
    }
}

/// The layer and default weight of a catalogued signal. A name missing
/// from the catalogue is a bug (`tests/signals.rs` keeps every emitted name
/// in it); it is kept as a clean-layer signal without weight.
fn catalogued(name: &str) -> (Layer, Option<u32>) {
    use portcullis_config::signals::{SignalLayer, signal_spec};
    match signal_spec(name) {
        Some(spec) => {
            let layer = match spec.layer {
                SignalLayer::Edge => Layer::Edge,
                SignalLayer::Clean => Layer::Clean,
                SignalLayer::Policy => Layer::Policy,
            };
            (layer, spec.weight.map(|w| u32::try_from(w).unwrap_or(0)))
        }
        None => {
            tracing::warn!(signal = name, "a signal missing from the catalogue");
            (Layer::Clean, None)
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds to announce in `Retry-After`, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// One decision, as written to the log and, later, the event store.
#[derive(Debug, Serialize)]
pub struct Event {
    pub ts_ms: u64,
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: String,
    pub host: String,
    pub path: String,
    pub action: &'static str,
    pub layer: Option<Layer>,
    pub status: u16,
    pub class: TrafficClass,
    pub signals: Vec<Signal>,
    pub duration_us: u64,
    /// The clearance id of the client, when it presented a valid clearance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The policy (core URL) that matched the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_rank: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_risk_rank: Option<u8>,
    /// The top reasons of the risk rank.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Under a `log-only` policy: what the policy would have done
    /// (`intercept`, `challenge`), while the request passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        let ip = IpAddr::from([127, 0, 0, 1]);
        RequestContext::new("r1".into(), ip, ip)
    }

    #[test]
    fn no_signal_passes() {
        assert_eq!(ctx().decide(), (Action::Pass, None));
    }

    #[test]
    fn strongest_demand_wins() {
        let mut c = ctx();
        c.add("automation", "curl/8", Demand::Tag);
        assert!(!c.is_stopped());
        c.add(
            "quota",
            "",
            Demand::TooMany {
                retry_after_s: 1,
                status: 429,
            },
        );
        c.add("bad_utf8", "query", Demand::BadRequest { status: 400 });
        assert!(c.is_stopped());
        assert_eq!(
            c.decide(),
            (
                Action::Intercept(Answer::BadRequest { status: 400 }),
                Some(Layer::Edge)
            )
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
