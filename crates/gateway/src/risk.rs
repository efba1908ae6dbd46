//! The risk rank of a request on a core URL: its features from the shared
//! state, the engine's assessment of all signals (`portcullis-risk`), and the
//! risk headers for the origin.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use http::HeaderMap;
use portcullis_config::RiskConfig;
use portcullis_risk::{
    AsSignal, ChallengeState as RiskChallenge, DeviceFacts, DeviceFlags, FeatureKeys, Features,
    HeaderFacts, IpType, RiskEngine, RiskHeaders, RiskInput, Windows,
};
use portcullis_state::StateStore;

use crate::context::{ChallengeState, RequestContext, RiskHeaderList, RiskVerdict, Signal};
use crate::edge::ipset::IpSet;
use crate::files::modified;
use crate::trust::portal::env_key;

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

/// Gathers the request's features, ranks it and prepares the risk headers.
/// A state outage costs the features, not the request.
pub async fn assess(
    risk: &Risk,
    state: &dyn StateStore,
    ctx: &RequestContext,
    route: &str,
    debug: bool,
    parts: &http::request::Parts,
) -> (RiskVerdict, RiskHeaderList) {
    let now = SystemTime::now();
    let keys = FeatureKeys {
        ip: ctx.client_ip,
        device: ctx.device.as_deref(),
        account: ctx.account.as_deref(),
        route,
    };
    let features = match portcullis_risk::gather(state, &keys, now).await {
        Ok(features) => features,
        Err(e) => {
            tracing::warn!(error = %e, "cannot gather risk features");
            Features::default()
        }
    };
    let cid = ctx.clearance.as_ref().map(|c| c.cid.to_string());
    let env = match &cid {
        Some(cid) => device_flags(state, cid).await,
        None => DeviceFlags::default(),
    };
    let device = ctx.clearance.as_ref().map(|claims| DeviceFacts {
        platform: claims.platform.as_str(),
        flags: env,
        risk_at_issue: claims.risk,
    });
    let window = risk.engine.new_entity_window();
    let input = RiskInput {
        signals: &ctx.signals,
        ip_type: risk.ip_type(ctx.client_ip),
        velocity: features.velocity,
        device,
        accounts_per_device: features.accounts_per_device,
        devices_per_account: features.devices_per_account,
        new_device: ctx.device.is_some() && features.new_device(window),
        new_account: ctx.account.is_some() && features.new_account(window),
        challenge: challenge_state(ctx),
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
        debug,
        now,
    };
    let headers = risk.headers.build(&assessment, &facts);
    (verdict(&assessment), headers)
}

/// The device flags the SDK reported when the clearance was minted.
async fn device_flags(state: &dyn StateStore, cid: &str) -> DeviceFlags {
    match state.get(&env_key(cid)).await {
        Ok(Some(bytes)) => {
            DeviceFlags::from_names(std::str::from_utf8(&bytes).unwrap_or("").split(','))
        }
        Ok(None) => DeviceFlags::default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the device flags of a clearance");
            DeviceFlags::default()
        }
    }
}

/// Removes client copies of every risk header, then writes the gateway's.
pub fn write_headers(risk: &Risk, list: &RiskHeaderList, headers: &mut HeaderMap) {
    risk.headers.strip(headers);
    for (name, value) in list {
        headers.insert(name.clone(), value.clone());
    }
}
