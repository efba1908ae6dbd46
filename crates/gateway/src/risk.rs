//! The risk rank of a request on a core URL: its features from the shared
//! state, the engine's assessment of all signals (`portcullis-risk`), and the
//! risk headers for the origin.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use portcullis_config::RiskConfig;
use portcullis_risk::{
    AsSignal, ChallengeState as RiskChallenge, DeviceFacts, FeatureKeys, Features, HeaderFacts,
    IpType, RiskEngine, RiskHeaders, RiskInput, Windows,
};
use portcullis_state::{Op, StateStore};

use crate::context::{ChallengeState, RequestContext, RiskHeaderList, RiskVerdict, Signal};
use crate::edge::ipset::IpSet;
use crate::files::modified;

impl AsSignal for Signal {
    fn name(&self) -> &str {
        self.name
    }

    fn weight(&self) -> u32 {
        self.weight
    }

    fn evidence(&self) -> &str {
        &self.evidence
    }
}

/// The compiled `[risk]` section.
pub struct Risk {
    pub engine: RiskEngine,
    pub headers: RiskHeaders,
    datacenter: IpSet,
    proxy: IpSet,
    tor: IpSet,
}

impl Risk {
    /// Builds the engine, the header writer and the IP type lists; the list
    /// files are added to `watched` so that a change reloads them.
    pub fn new(
        config: &RiskConfig,
        watched: &mut Vec<(PathBuf, Option<SystemTime>)>,
    ) -> anyhow::Result<Risk> {
        let types = &config.ip_types;
        let mut list = |nets: &[ipnet::IpNet], files: &[PathBuf]| -> anyhow::Result<IpSet> {
            let mut all = nets.to_vec();
            for file in files {
                watched.push((file.clone(), modified(file)));
                all.extend(read_list(file)?);
            }
            Ok(IpSet::from_nets(&all))
        };
        let datacenter = list(&types.datacenter, &types.datacenter_files)?;
        let proxy = list(&types.proxy, &types.proxy_files)?;
        let tor = list(&types.tor, &types.tor_files)?;
        let secret = portcullis_risk::signing_secret(config)?;
        Ok(Risk {
            engine: RiskEngine::new(config)?,
            headers: RiskHeaders::new(config, secret.as_deref())?,
            datacenter,
            proxy,
            tor,
        })
    }

    pub fn ip_type(&self, ip: std::net::IpAddr) -> IpType {
        if self.tor.contains(ip) {
            IpType::Tor
        } else if self.proxy.contains(ip) {
            IpType::Proxy
        } else if self.datacenter.contains(ip) {
            IpType::Datacenter
        } else {
            IpType::Residential
        }
    }

    /// A rank from what the request shows by itself (signals, address type,
    /// clearance), without the shared state: the challenge endpoints use it
    /// to set the difficulty.
    pub fn quick(&self, ctx: &RequestContext) -> RiskVerdict {
        let input = RiskInput {
            signals: &ctx.signals,
            ip_type: self.ip_type(ctx.client_ip),
            traffic_class: ctx.class.as_str(),
            challenge: challenge_state(ctx),
            ..RiskInput::default()
        };
        verdict(&self.engine.assess(&input))
    }
}

fn read_list(path: &Path) -> anyhow::Result<Vec<ipnet::IpNet>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("risk.ip_types: cannot read {}", path.display()))?;
    let (nets, bad) = crate::edge::ipset::parse_feed_nets(&text);
    if bad > 0 {
        tracing::warn!(file = %path.display(), bad_lines = bad, "risk IP list has lines that are not addresses");
    }
    Ok(nets)
}

fn challenge_state(ctx: &RequestContext) -> RiskChallenge {
    match ctx.challenge {
        ChallengeState::None => RiskChallenge::None,
        ChallengeState::Passed { age_s } => RiskChallenge::Passed { age_s },
        ChallengeState::Failed => RiskChallenge::Failed,
        ChallengeState::Expired => RiskChallenge::Expired,
    }
}

fn verdict(a: &portcullis_risk::RiskAssessment<'_>) -> RiskVerdict {
    RiskVerdict {
        rank: a.rank,
        device_rank: a.device_rank,
        reasons: a
            .reasons
            .iter()
            .map(|r| format!("{} {:+}", r.name, r.points))
            .collect(),
    }
}

/// What the policy of a core URL says about assessing one of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Assessing<'a> {
    /// The policy's name: its requests are counted together.
    pub route: &'a str,
    /// A clearance's lifetime (the window of the per-session id sets).
    pub session: Duration,
    /// Reasons are written in the headers.
    pub debug: bool,
    /// The policy checks clearances, and the request names a device in the
    /// SDK's header: without a clearance, that is the SDK's id without its proof.
    pub sdk_device: bool,
}

/// Gathers the request's features (one batch; the writes that follow from
/// it are applied off the request's path), ranks it and prepares the risk
/// headers. A state outage costs the features, not the request.
pub async fn assess(
    risk: &Risk,
    state: &Arc<dyn StateStore>,
    ctx: &RequestContext,
    how: Assessing<'_>,
    parts: &http::request::Parts,
) -> (RiskVerdict, RiskHeaderList) {
    let now = SystemTime::now();
    let cid = ctx.clearance.as_ref().map(|c| c.cid.to_string());
    let path = portcullis_risk::features::path_key(parts.method.as_str(), parts.uri.path());
    let keys = FeatureKeys {
        ip: ctx.client_ip,
        device: ctx.device.as_deref(),
        account: ctx.account.as_deref(),
        route: how.route,
        path: &path,
        cid: cid.as_deref(),
        // The clearance was verified against this device id.
        proven_device: ctx.clearance.is_some(),
        // A refused request (replayed, forged) says nothing about the
        // identities it names; counting it would raise the victim's risk.
        count: !ctx.is_stopped(),
        session: how.session,
        route_history: risk.engine.route_history(),
        clearance_issued_ms: ctx.clearance.as_ref().map(|c| c.issued_ms),
    };
    let features = match portcullis_risk::gather(state.as_ref(), &keys, now).await {
        Ok(gathered) => {
            apply_later(state, gathered.writes);
            gathered.features
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot gather risk features");
            Features::default()
        }
    };
    let device = ctx.clearance.as_ref().map(|claims| DeviceFacts {
        platform: claims.platform.as_str(),
        flags: features.env.flags,
        risk_at_issue: claims.risk,
    });
    let (window, history) = (risk.engine.new_entity_window(), risk.engine.history());
    let input = RiskInput {
        signals: &ctx.signals,
        ip_type: risk.ip_type(ctx.client_ip),
        velocity: features.velocity,
        device,
        accounts_per_device: features.accounts_per_device,
        devices_per_account: features.devices_per_account,
        accounts_per_device_session: features.accounts_per_device_session,
        devices_per_account_session: features.devices_per_account_session,
        networks_per_device: features.networks_per_device,
        devices_on_ip: features.devices_on_ip,
        route_new_identities: if features.new_on_route {
            features.route_new_identities
        } else {
            0
        },
        route_requests: features.route_requests,
        fingerprint_devices: features.env.fingerprint_devices,
        new_device: ctx.device.is_some() && features.new_device(window, history),
        new_account: ctx.account.is_some() && features.new_account(window, history),
        established: features.device_established,
        device_unproven: how.sdk_device && ctx.clearance.is_none(),
        challenge: match challenge_state(ctx) {
            RiskChallenge::None if features.device_denied => RiskChallenge::Failed,
            state => state,
        },
        traffic_class: ctx.class.as_str(),
    };
    let assessment = risk.engine.assess(&input);
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let facts = HeaderFacts {
        device,
        device_id: ctx.device.as_deref(),
        accounts_per_device: if ctx.device.is_some() {
            features.accounts_per_device
        } else {
            Windows::default()
        },
        cid: cid.as_deref(),
        client_ip: ctx.client_ip,
        request_id: &ctx.request_id,
        method: parts.method.as_str(),
        target,
        debug: how.debug,
        now,
    };
    let headers = risk.headers.build(&assessment, &facts);
    (verdict(&assessment), headers)
}

/// Applies the writes that follow from a request's features (rare: a new
/// id counted on its route, a first-seen marker refreshed) in a task of
/// their own, so that the request waits for one round trip only.
fn apply_later(state: &Arc<dyn StateStore>, writes: Vec<Op>) {
    if writes.is_empty() {
        return;
    }
    let state = Arc::clone(state);
    tokio::spawn(async move {
        if let Err(e) = state.batch(&writes).await {
            tracing::warn!(error = %e, "cannot record risk features");
        }
    });
}

#[cfg(test)]
mod tests {
    use portcullis_state::{MemoryStore, MemoryStoreOptions};

    use super::*;
    use crate::context::Demand;

    fn assessing() -> Assessing<'static> {
        Assessing {
            route: "api",
            session: Duration::from_secs(3600),
            debug: true,
            sdk_device: false,
        }
    }

    fn request(account: &str, refused: bool) -> RequestContext {
        let ip = "27.10.1.5".parse().expect("ip");
        let mut ctx = RequestContext::new("rid".into(), ip, ip);
        ctx.account = Some(account.into());
        if refused {
            let demand = Demand::Refuse {
                status: 403,
                code: "signature_replayed",
            };
            ctx.add("signature_replayed", "nonce", demand);
        }
        ctx
    }

    /// The reasons of the victim's own next request after `replays`
    /// requests naming its account, refused or not.
    async fn victim_reasons_after(replays_refused: bool) -> Vec<String> {
        let mut config = RiskConfig::default();
        config.limits.account_per_minute = 3;
        let risk = Risk::new(&config, &mut Vec::new()).expect("risk");
        let state: Arc<dyn StateStore> = Arc::new(MemoryStore::new(MemoryStoreOptions::default()));
        let (parts, ()) = http::Request::post("/api/claim")
            .body(())
            .expect("request")
            .into_parts();
        for _ in 0..10 {
            let ctx = request("victim", replays_refused);
            assess(&risk, &state, &ctx, assessing(), &parts).await;
        }
        let (verdict, _) = assess(
            &risk,
            &state,
            &request("victim", false),
            assessing(),
            &parts,
        )
        .await;
        verdict.reasons
    }

    #[tokio::test]
    async fn refused_requests_never_count_in_the_velocity_of_the_account_they_name() {
        let after_refused = victim_reasons_after(true).await;
        assert!(
            !after_refused
                .iter()
                .any(|r| r.starts_with("velocity_account")),
            "{after_refused:?}"
        );
        // The same requests, not refused, do count.
        let after_served = victim_reasons_after(false).await;
        assert!(
            after_served
                .iter()
                .any(|r| r.starts_with("velocity_account")),
            "{after_served:?}"
        );
    }
}
