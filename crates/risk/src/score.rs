//! The scoring: a transparent weighted sum over the signals of the other
//! layers and the request's features, with the reasons that made it.
//!
//! Pure and allocation-free per call: the input borrows the request's data,
//! the assessment borrows the input, and the reasons live in a fixed array.

use std::fmt;
use std::time::Duration;

use portcullis_config::{RiskConfig, RiskLimits, RiskModel};
use serde::{Serialize, Serializer};

use crate::RiskError;

/// What the client address is, from the `[risk.ip_types]` ranges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpType {
    /// Residential, mobile, or simply not on any list.
    #[default]
    Residential,
    Datacenter,
    Proxy,
    Tor,
}

/// Requests in the last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Velocity {
    pub ip: u32,
    pub device: u32,
    pub account: u32,
    /// Everyone's requests on the route.
    pub route: u32,
}

/// Distinct ids seen in the last day, week and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Windows {
    pub d1: u32,
    pub d7: u32,
    pub d30: u32,
}

/// Environment findings about a device, from its clearance.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DeviceFlags(u8);

impl DeviceFlags {
    pub const EMULATOR: DeviceFlags = DeviceFlags(1);
    pub const ROOT: DeviceFlags = DeviceFlags(1 << 1);
    pub const HOOK: DeviceFlags = DeviceFlags(1 << 2);
    pub const DEBUGGER: DeviceFlags = DeviceFlags(1 << 3);
    /// WebDriver, CDP or another automation runtime.
    pub const AUTOMATION: DeviceFlags = DeviceFlags(1 << 4);
    pub const HEADLESS: DeviceFlags = DeviceFlags(1 << 5);

    /// Each flag with its name, as in `x-wx-device-security-status`.
    pub const NAMED: [(DeviceFlags, &'static str); 6] = [
        (DeviceFlags::EMULATOR, "emulator"),
        (DeviceFlags::ROOT, "root"),
        (DeviceFlags::HOOK, "hook"),
        (DeviceFlags::DEBUGGER, "debugger"),
        (DeviceFlags::AUTOMATION, "automation"),
        (DeviceFlags::HEADLESS, "headless"),
    ];

    pub const fn empty() -> Self {
        DeviceFlags(0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, other: DeviceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: DeviceFlags) -> Self {
        DeviceFlags(self.0 | other.0)
    }

    /// Reads flag names: ours, the environment flags of portcullis-challenge
    /// (`webdriver`, `automation_marker`, `ua_headless`, ...) and common
    /// synonyms (`jailbreak`, `frida`, `xposed`). Unknown names are ignored.
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        names.into_iter().fold(DeviceFlags::empty(), |flags, name| {
            let flag = match name {
                "emulator" | "simulator" => DeviceFlags::EMULATOR,
                "root" | "rooted" | "jailbreak" | "jailbroken" => DeviceFlags::ROOT,
                "hook" | "frida" | "xposed" => DeviceFlags::HOOK,
                "debugger" | "debug" => DeviceFlags::DEBUGGER,
                "automation" | "webdriver" | "automation_marker" => DeviceFlags::AUTOMATION,
                "headless" | "ua_headless" => DeviceFlags::HEADLESS,
                _ => DeviceFlags::empty(),
            };
            flags.union(flag)
        })
    }

    /// Names of the flags set, in [`DeviceFlags::NAMED`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        DeviceFlags::NAMED
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

impl fmt::Debug for DeviceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// What the clearance says about the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceFacts<'a> {
    /// `ios`, `android`, `windows`, `mac`, `devtools`, `ohos`, ...
    pub platform: &'a str,
    pub flags: DeviceFlags,
    /// The risk rank (0-4) given when the clearance was issued.
    pub risk_at_issue: u8,
}

/// Where the client stands with challenges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChallengeState {
    #[default]
    None,
    Passed {
        age_s: u64,
    },
    Failed,
    Expired,
}

/// A signal of another layer, as the engine reads it. The gateway's own
/// signal type implements it, so its signals are read in place.
pub trait AsSignal {
    fn name(&self) -> &str;
    /// The weight the stage gave; used when the weights table does not name the signal.
    fn weight(&self) -> u32;
    fn evidence(&self) -> &str;
}

/// A borrowed signal, for callers without a type of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalRef<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub evidence: &'a str,
}

impl AsSignal for SignalRef<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn evidence(&self) -> &str {
        self.evidence
    }
}

impl AsSignal for (&str, u32, &str) {
    fn name(&self) -> &str {
        self.0
    }
    fn weight(&self) -> u32 {
        self.1
    }
    fn evidence(&self) -> &str {
        self.2
    }
}

/// Everything the engine weighs for one request.
#[derive(Debug, Clone, Copy)]
pub struct RiskInput<'a, S = SignalRef<'a>> {
    pub signals: &'a [S],
    pub ip_type: IpType,
    pub velocity: Velocity,
    /// From the clearance, when the request carries a valid one.
    pub device: Option<DeviceFacts<'a>>,
    pub accounts_per_device: Windows,
    pub devices_per_account: Windows,
    /// Within a clearance's lifetime: accounts on the device, devices of the account.
    pub accounts_per_device_session: u32,
    pub devices_per_account_session: u32,
    /// Networks (IPv4 /16s) the device used within an hour.
    pub networks_per_device: u32,
    /// Devices behind the client address (NAT): the address's velocity
    /// limit is per device.
    pub devices_on_ip: u32,
    /// New ids on the request's route per minute, when this request brings
    /// one of them (0 otherwise)...
    pub route_new_identities: u32,
    /// ... and the route's requests per minute over the same window: a wave
    /// of new ids weighs where they are a large share of the route's traffic.
    pub route_requests: u32,
    /// Device ids behind the clearance's environment fingerprint at issue.
    pub fingerprint_devices: u32,
    /// First seen less than `new_entity_minutes` ago, after enough history.
    pub new_device: bool,
    pub new_account: bool,
    /// The device was seen before its clearance was issued: a passed
    /// challenge lowers the risk only of an identity with a history.
    pub established: bool,
    /// The request names a device id (the SDK's header) but proves no
    /// clearance on a route that checks them: the SDK's id without its proof.
    pub device_unproven: bool,
    pub challenge: ChallengeState,
    /// The layer-1 traffic class (`normal`, `trusted`, `crawler`, ...).
    pub traffic_class: &'a str,
}

impl<S> Default for RiskInput<'_, S> {
    fn default() -> Self {
        RiskInput {
            signals: &[],
            ip_type: IpType::default(),
            velocity: Velocity::default(),
            device: None,
            accounts_per_device: Windows::default(),
            devices_per_account: Windows::default(),
            accounts_per_device_session: 0,
            devices_per_account_session: 0,
            networks_per_device: 0,
            devices_on_ip: 0,
            route_new_identities: 0,
            route_requests: 0,
            fingerprint_devices: 0,
            new_device: false,
            new_account: false,
            established: false,
            device_unproven: false,
            challenge: ChallengeState::default(),
            traffic_class: "normal",
        }
    }
}

/// The engine's own factors; their names are the keys of `[risk.weights]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    IpDatacenter,
    IpProxy,
    IpTor,
    VelocityIp,
    VelocityDevice,
    VelocityAccount,
    VelocityRoute,
    DeviceEmulator,
    DeviceRoot,
    DeviceHook,
    DeviceDebugger,
    DeviceAutomation,
    DeviceHeadless,
    PlatformDevtools,
    DeviceRiskAtIssue,
    AccountsPerDevice1d,
    AccountsPerDevice7d,
    AccountsPerDevice30d,
    DeviceFarm,
    DevicesPerAccount1d,
    DevicesPerAccount7d,
    DevicesPerAccount30d,
    NewDevice,
    NewAccount,
    NetworksPerDevice,
    AccountsPerDeviceSession,
    DevicesPerAccountSession,
    RouteNewIdentities,
    FingerprintDevices,
    ChallengePassed,
    ChallengeFailed,
    ChallengeExpired,
    DeviceUnproven,
    ClassTrusted,
}

impl Factor {
    pub const ALL: [Factor; 34] = [
        Factor::IpDatacenter,
        Factor::IpProxy,
        Factor::IpTor,
        Factor::VelocityIp,
        Factor::VelocityDevice,
        Factor::VelocityAccount,
        Factor::VelocityRoute,
        Factor::DeviceEmulator,
        Factor::DeviceRoot,
        Factor::DeviceHook,
        Factor::DeviceDebugger,
        Factor::DeviceAutomation,
        Factor::DeviceHeadless,
        Factor::PlatformDevtools,
        Factor::DeviceRiskAtIssue,
        Factor::AccountsPerDevice1d,
        Factor::AccountsPerDevice7d,
        Factor::AccountsPerDevice30d,
        Factor::DeviceFarm,
        Factor::DevicesPerAccount1d,
        Factor::DevicesPerAccount7d,
        Factor::DevicesPerAccount30d,
        Factor::NewDevice,
        Factor::NewAccount,
        Factor::NetworksPerDevice,
        Factor::AccountsPerDeviceSession,
        Factor::DevicesPerAccountSession,
        Factor::RouteNewIdentities,
        Factor::FingerprintDevices,
        Factor::ChallengePassed,
        Factor::ChallengeFailed,
        Factor::ChallengeExpired,
        Factor::DeviceUnproven,
        Factor::ClassTrusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::IpDatacenter => "ip_datacenter",
            Factor::IpProxy => "ip_proxy",
            Factor::IpTor => "ip_tor",
            Factor::VelocityIp => "velocity_ip",
            Factor::VelocityDevice => "velocity_device",
            Factor::VelocityAccount => "velocity_account",
            Factor::VelocityRoute => "velocity_route",
            Factor::DeviceEmulator => "device_emulator",
            Factor::DeviceRoot => "device_root",
            Factor::DeviceHook => "device_hook",
            Factor::DeviceDebugger => "device_debugger",
            Factor::DeviceAutomation => "device_automation",
            Factor::DeviceHeadless => "device_headless",
            Factor::PlatformDevtools => "platform_devtools",
            Factor::DeviceRiskAtIssue => "device_risk_at_issue",
            Factor::AccountsPerDevice1d => "accounts_per_device_1d",
            Factor::AccountsPerDevice7d => "accounts_per_device_7d",
            Factor::AccountsPerDevice30d => "accounts_per_device_30d",
            Factor::DeviceFarm => "device_farm",
            Factor::DevicesPerAccount1d => "devices_per_account_1d",
            Factor::DevicesPerAccount7d => "devices_per_account_7d",
            Factor::DevicesPerAccount30d => "devices_per_account_30d",
            Factor::NewDevice => "new_device",
            Factor::NewAccount => "new_account",
            Factor::NetworksPerDevice => "networks_per_device_1h",
            Factor::AccountsPerDeviceSession => "accounts_per_device_session",
            Factor::DevicesPerAccountSession => "devices_per_account_session",
            Factor::RouteNewIdentities => "route_new_identities",
            Factor::FingerprintDevices => "fingerprint_devices",
            Factor::ChallengePassed => "challenge_passed",
            Factor::ChallengeFailed => "challenge_failed",
            Factor::ChallengeExpired => "challenge_expired",
            Factor::DeviceUnproven => "device_unproven",
            Factor::ClassTrusted => "class_trusted",
        }
    }

    /// Whether the factor is about the device alone, and so counts toward
    /// the device rank as well as the request's.
    pub fn is_device(self) -> bool {
        matches!(
            self,
            Factor::DeviceEmulator
                | Factor::DeviceRoot
                | Factor::DeviceHook
                | Factor::DeviceDebugger
                | Factor::DeviceAutomation
                | Factor::DeviceHeadless
                | Factor::PlatformDevtools
                | Factor::DeviceRiskAtIssue
                | Factor::AccountsPerDevice1d
                | Factor::AccountsPerDevice7d
                | Factor::AccountsPerDevice30d
                | Factor::DeviceFarm
                | Factor::NewDevice
                | Factor::NetworksPerDevice
                | Factor::AccountsPerDeviceSession
                | Factor::FingerprintDevices
        )
    }

    /// Whether the factor is evidence about the history of the request's
    /// identities (its device, account, their relations and their route):
    /// a passed challenge lowers the risk only where none of these fired.
    fn is_history(self) -> bool {
        matches!(
            self,
            Factor::VelocityDevice
                | Factor::VelocityAccount
                | Factor::AccountsPerDevice1d
                | Factor::AccountsPerDevice7d
                | Factor::AccountsPerDevice30d
                | Factor::DeviceFarm
                | Factor::DevicesPerAccount1d
                | Factor::DevicesPerAccount7d
                | Factor::DevicesPerAccount30d
                | Factor::NewDevice
                | Factor::NewAccount
                | Factor::NetworksPerDevice
                | Factor::AccountsPerDeviceSession
                | Factor::DevicesPerAccountSession
                | Factor::RouteNewIdentities
                | Factor::FingerprintDevices
                | Factor::ChallengeFailed
                | Factor::ChallengeExpired
                | Factor::DeviceUnproven
        )
    }
}

const DEVICE_FLAG_FACTORS: [(DeviceFlags, Factor); 6] = [
    (DeviceFlags::EMULATOR, Factor::DeviceEmulator),
    (DeviceFlags::ROOT, Factor::DeviceRoot),
    (DeviceFlags::HOOK, Factor::DeviceHook),
    (DeviceFlags::DEBUGGER, Factor::DeviceDebugger),
    (DeviceFlags::AUTOMATION, Factor::DeviceAutomation),
    (DeviceFlags::HEADLESS, Factor::DeviceHeadless),
];

/// What backs a reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evidence<'a> {
    #[default]
    None,
    /// The evidence of a signal.
    Text(&'a str),
    /// A count over its limit.
    Count { value: u32, limit: u32 },
    /// A risk rank.
    Rank(u8),
    /// An age in seconds.
    AgeS(u64),
}

impl fmt::Display for Evidence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::None => Ok(()),
            Evidence::Text(text) => f.write_str(text),
            Evidence::Count { value, limit } => write!(f, "{value} > {limit}"),
            Evidence::Rank(rank) => write!(f, "rank {rank}"),
            Evidence::AgeS(age) => write!(f, "{age}s ago"),
        }
    }
}

/// One contribution to the score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reason<'a> {
    /// A factor or a signal name.
    pub name: &'a str,
    pub points: i32,
    #[serde(serialize_with = "display")]
    pub evidence: Evidence<'a>,
}

fn display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Reasons kept per assessment.
pub const MAX_REASONS: usize = 5;

/// The weightiest reasons (by absolute points), weightiest first, in a fixed array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons<'a> {
    items: [Reason<'a>; MAX_REASONS],
    len: usize,
}

impl<'a> Reasons<'a> {
    /// Keeps `reason` if it weighs more than the lightest kept; ties keep the earlier.
    fn offer(&mut self, reason: Reason<'a>) {
        let weight = reason.points.unsigned_abs();
        let at = self.items[..self.len]
            .iter()
            .position(|kept| kept.points.unsigned_abs() < weight)
            .unwrap_or(self.len);
        if at == MAX_REASONS {
            return;
        }
        let last = self.len.min(MAX_REASONS - 1);
        self.items.copy_within(at..last, at + 1);
        self.items[at] = reason;
        self.len = (self.len + 1).min(MAX_REASONS);
    }
}

impl<'a> std::ops::Deref for Reasons<'a> {
    type Target = [Reason<'a>];
    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

impl Serialize for Reasons<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RiskAssessment<'a> {
    /// 0 (no risk) to 4 (highly suspicious), as in `x-wx-risk-rank`.
    pub rank: u8,
    /// The same from device factors only, as in `x-wx-device-risk-rank`.
    pub device_rank: u8,
    pub score: u32,
    pub device_score: u32,
    pub reasons: Reasons<'a>,
}

/// Signals read per request; a request with more is already far past rank 4,
/// and the bound keeps the duplicate check cheap.
const MAX_SIGNALS: usize = 64;

/// The compiled `[risk]` section.
#[derive(Debug, Clone)]
pub struct RiskEngine {
    factor_points: [i32; Factor::ALL.len()],
    /// Points of named signals, sorted by name.
    signal_points: Vec<(Box<str>, i32)>,
    thresholds: [u32; 4],
    device_thresholds: [u32; 4],
    limits: RiskLimits,
    new_entity_window: Duration,
    history: Duration,
    route_history: Duration,
}

impl RiskEngine {
    pub fn new(config: &RiskConfig) -> Result<RiskEngine, RiskError> {
        let problems = portcullis_config::risk::validate_risk(config);
        if !problems.is_empty() {
            return Err(RiskError::Config(
                problems
                    .into_iter()
                    .map(|(field, message)| format!("{field}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        // The weighted sum is the only model; one trained offline would
        // compile its parameters here, and `assess` would dispatch on it.
        match config.model {
            RiskModel::Weighted => {}
        }
        let factor_points = Factor::ALL.map(|f| config.weight(f.as_str()).unwrap_or(0));
        // BTreeMap order is name order, which binary search needs.
        let signal_points = config
            .weights
            .iter()
            .filter(|(name, _)| !Factor::ALL.iter().any(|f| f.as_str() == name.as_str()))
            .map(|(name, &points)| (name.as_str().into(), points))
            .collect();
        Ok(RiskEngine {
            factor_points,
            signal_points,
            thresholds: config.thresholds,
            device_thresholds: config.device_thresholds,
            limits: config.limits.clone(),
            new_entity_window: Duration::from_secs(u64::from(config.new_entity_minutes) * 60),
            history: Duration::from_secs(u64::from(config.history_minutes) * 60),
            route_history: Duration::from_secs(u64::from(config.route_history_s)),
        })
    }

    /// How recently a device or account must have been first seen to be new.
    pub fn new_entity_window(&self) -> Duration {
        self.new_entity_window
    }

    /// How much history the state must have had before an id's first
    /// sighting for "new" to weigh.
    pub fn history(&self) -> Duration {
        self.history
    }

    /// The same for new ids counted per route.
    pub fn route_history(&self) -> Duration {
        self.route_history
    }

    pub fn assess<'a, S: AsSignal>(&self, input: &RiskInput<'a, S>) -> RiskAssessment<'a> {
        let mut tally = Tally::default();
        self.weigh_signals(input.signals, &mut tally);
        self.weigh_network(input, &mut tally);
        if let Some(device) = &input.device {
            self.weigh_device(device, &mut tally);
        }
        self.weigh_accounts(input, &mut tally);
        self.weigh_history(input, &mut tally);
        let score = clamp_score(tally.score);
        let device_score = clamp_score(tally.device_score);
        RiskAssessment {
            rank: rank_of(score, &self.thresholds),
            device_rank: rank_of(device_score, &self.device_thresholds),
            score,
            device_score,
            reasons: tally.reasons,
        }
    }

    /// Each signal name counts once: the table's points for it, or else the
    /// largest weight a stage gave it. The evidence is its first occurrence's.
    fn weigh_signals<'a, S: AsSignal>(&self, signals: &'a [S], tally: &mut Tally<'a>) {
        let signals = &signals[..signals.len().min(MAX_SIGNALS)];
        for (i, signal) in signals.iter().enumerate() {
            let name = signal.name();
            if signals[..i].iter().any(|earlier| earlier.name() == name) {
                continue;
            }
            let points = self.signal_points(name).unwrap_or_else(|| {
                let weight = signals[i..]
                    .iter()
                    .filter(|s| s.name() == name)
                    .map(AsSignal::weight)
                    .max()
                    .unwrap_or(0);
                i32::try_from(weight).unwrap_or(i32::MAX)
            });
            tally.add(name, points, Evidence::Text(signal.evidence()), false);
        }
    }

    fn signal_points(&self, name: &str) -> Option<i32> {
        self.signal_points
            .binary_search_by(|(known, _)| known.as_ref().cmp(name))
            .ok()
            .map(|i| self.signal_points[i].1)
    }

    fn weigh_network<S>(&self, input: &RiskInput<'_, S>, tally: &mut Tally<'_>) {
        let ip_factor = match input.ip_type {
            IpType::Residential => None,
            IpType::Datacenter => Some(Factor::IpDatacenter),
            IpType::Proxy => Some(Factor::IpProxy),
            IpType::Tor => Some(Factor::IpTor),
        };
        if let Some(factor) = ip_factor {
            self.factor(tally, factor, 1, Evidence::None);
        }
        let v = input.velocity;
        let l = &self.limits;
        // Behind NAT many phones share the address: its limit is per device.
        let ip_limit = l.ip_per_minute.saturating_mul(input.devices_on_ip.max(1));
        for (factor, value, limit) in [
            (Factor::VelocityIp, v.ip, ip_limit),
            (Factor::VelocityDevice, v.device, l.device_per_minute),
            (Factor::VelocityAccount, v.account, l.account_per_minute),
            (Factor::VelocityRoute, v.route, l.route_per_minute),
        ] {
            self.graded(tally, factor, value, limit);
        }
        if input.traffic_class == "trusted" {
            self.factor(tally, Factor::ClassTrusted, 1, Evidence::None);
        }
    }

    fn weigh_device(&self, device: &DeviceFacts<'_>, tally: &mut Tally<'_>) {
        for (flag, factor) in DEVICE_FLAG_FACTORS {
            if device.flags.contains(flag) {
                self.factor(tally, factor, 1, Evidence::None);
            }
        }
        if device.platform == "devtools" {
            self.factor(tally, Factor::PlatformDevtools, 1, Evidence::None);
        }
        let rank = device.risk_at_issue.min(4);
        if rank > 0 {
            self.factor(
                tally,
                Factor::DeviceRiskAtIssue,
                i32::from(rank),
                Evidence::Rank(rank),
            );
        }
    }

    fn weigh_accounts<S>(&self, input: &RiskInput<'_, S>, tally: &mut Tally<'_>) {
        let l = &self.limits;
        let (apd, dpa) = (input.accounts_per_device, input.devices_per_account);
        for (factor, value, limit) in [
            (
                Factor::AccountsPerDevice1d,
                apd.d1,
                l.accounts_per_device_1d,
            ),
            (
                Factor::AccountsPerDevice7d,
                apd.d7,
                l.accounts_per_device_7d,
            ),
            (
                Factor::AccountsPerDevice30d,
                apd.d30,
                l.accounts_per_device_30d,
            ),
            (
                Factor::DevicesPerAccount1d,
                dpa.d1,
                l.devices_per_account_1d,
            ),
            (
                Factor::DevicesPerAccount7d,
                dpa.d7,
                l.devices_per_account_7d,
            ),
            (
                Factor::DevicesPerAccount30d,
                dpa.d30,
                l.devices_per_account_30d,
            ),
        ] {
            self.graded(tally, factor, value, limit);
        }
        for (factor, value, limit) in [
            (
                Factor::AccountsPerDeviceSession,
                input.accounts_per_device_session,
                l.accounts_per_device_session,
            ),
            (
                Factor::DevicesPerAccountSession,
                input.devices_per_account_session,
                l.devices_per_account_session,
            ),
            (
                Factor::NetworksPerDevice,
                input.networks_per_device,
                l.networks_per_device_1h,
            ),
            (
                Factor::FingerprintDevices,
                input.fingerprint_devices,
                l.fingerprint_devices,
            ),
        ] {
            self.graded(tally, factor, value, limit);
        }
        // New ids count where they are a large share of the route's own
        // traffic: a coupon route flooded by never-seen accounts, not a
        // busy route that a few new users join.
        let share_ok = u64::from(input.route_new_identities) * 100
            >= u64::from(l.route_new_share_percent) * u64::from(input.route_requests);
        if share_ok {
            self.graded(
                tally,
                Factor::RouteNewIdentities,
                input.route_new_identities,
                l.route_new_identities_per_minute,
            );
        }
        if input.new_device && l.farm_accounts > 0 && apd.d1 >= l.farm_accounts {
            let evidence = Evidence::Count {
                value: apd.d1,
                limit: l.farm_accounts,
            };
            self.factor(tally, Factor::DeviceFarm, 1, evidence);
        }
    }

    fn weigh_history<S>(&self, input: &RiskInput<'_, S>, tally: &mut Tally<'_>) {
        if input.new_device {
            self.factor(tally, Factor::NewDevice, 1, Evidence::None);
        }
        if input.new_account {
            self.factor(tally, Factor::NewAccount, 1, Evidence::None);
        }
        if input.device_unproven {
            self.factor(tally, Factor::DeviceUnproven, 1, Evidence::None);
        }
        match input.challenge {
            ChallengeState::Passed { age_s }
                if age_s <= self.limits.challenge_fresh_s
                    && input.established
                    && !tally.history_risk =>
            {
                self.factor(tally, Factor::ChallengePassed, 1, Evidence::AgeS(age_s));
            }
            ChallengeState::Failed => {
                self.factor(tally, Factor::ChallengeFailed, 1, Evidence::None);
            }
            ChallengeState::Expired => {
                self.factor(tally, Factor::ChallengeExpired, 1, Evidence::None);
            }
            ChallengeState::Passed { .. } | ChallengeState::None => {}
        }
    }

    /// Points once above the limit, twice from twice the limit, three
    /// times from four times the limit. A limit of 0 turns the factor off.
    fn graded(&self, tally: &mut Tally<'_>, factor: Factor, value: u32, limit: u32) {
        if limit == 0 || value <= limit {
            return;
        }
        let steps = 1
            + i32::from(value >= limit.saturating_mul(2))
            + i32::from(value >= limit.saturating_mul(4));
        self.factor(tally, factor, steps, Evidence::Count { value, limit });
    }

    fn factor<'a>(
        &self,
        tally: &mut Tally<'a>,
        factor: Factor,
        times: i32,
        evidence: Evidence<'a>,
    ) {
        let points = self.factor_points[factor as usize].saturating_mul(times);
        tally.history_risk |= points > 0 && factor.is_history();
        tally.add(factor.as_str(), points, evidence, factor.is_device());
    }
}

#[derive(Default)]
struct Tally<'a> {
    score: i64,
    device_score: i64,
    reasons: Reasons<'a>,
    /// A history factor added points (see [`Factor::is_history`]).
    history_risk: bool,
}

impl<'a> Tally<'a> {
    fn add(&mut self, name: &'a str, points: i32, evidence: Evidence<'a>, device: bool) {
        if points == 0 {
            return;
        }
        self.score += i64::from(points);
        if device {
            self.device_score += i64::from(points);
        }
        self.reasons.offer(Reason {
            name,
            points,
            evidence,
        });
    }
}

fn clamp_score(score: i64) -> u32 {
    u32::try_from(score.max(0)).unwrap_or(u32::MAX)
}

/// How many thresholds the score reaches.
fn rank_of(score: u32, thresholds: &[u32; 4]) -> u8 {
    thresholds.iter().filter(|&&t| score >= t).count() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> RiskEngine {
        RiskEngine::new(&RiskConfig::default()).expect("defaults are valid")
    }

    fn names<'a>(a: &'a RiskAssessment<'_>) -> Vec<&'a str> {
        a.reasons.iter().map(|r| r.name).collect()
    }

    fn phone<'a>() -> RiskInput<'a> {
        RiskInput {
            velocity: Velocity {
                ip: 4,
                device: 3,
                account: 3,
                route: 200,
            },
            device: Some(DeviceFacts {
                platform: "ios",
                flags: DeviceFlags::empty(),
                risk_at_issue: 0,
            }),
            accounts_per_device: Windows {
                d1: 1,
                d7: 1,
                d30: 2,
            },
            devices_per_account: Windows {
                d1: 1,
                d7: 1,
                d30: 1,
            },
            challenge: ChallengeState::Passed { age_s: 120 },
            established: true,
            ..RiskInput::default()
        }
    }

    #[test]
    fn every_factor_is_a_config_factor_and_back() {
        let config_names: Vec<&str> = portcullis_config::risk::DEFAULT_FACTOR_WEIGHTS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let ours: Vec<&str> = Factor::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(ours, config_names);
        for (i, f) in Factor::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{f:?} is out of place in Factor::ALL");
        }
    }

    #[test]
    fn ordinary_phone_user_with_clearance_is_low_risk() {
        let a = engine().assess(&phone());
        assert!(a.rank <= 1, "{a:?}");
        assert_eq!(a.device_rank, 0, "{a:?}");
        // The fresh challenge is what explains the (zero) score.
        assert_eq!(names(&a), ["challenge_passed"]);
        assert_eq!(a.reasons[0].evidence.to_string(), "120s ago");
    }

    #[test]
    fn new_phone_user_signing_up_stays_low() {
        let input = RiskInput {
            new_device: true,
            new_account: true,
            challenge: ChallengeState::None,
            ..phone()
        };
        let a = engine().assess(&input);
        assert!(a.rank <= 1, "{a:?}");
        assert_eq!(names(&a), ["new_account", "new_device"]);
    }

    #[test]
    fn datacenter_with_automation_is_high_risk() {
        let signals = [
            ("automation", 30, "python-requests/2.31"),
            ("browser_headers_missing", 10, "accept-language"),
        ];
        let input = RiskInput {
            signals: &signals,
            ip_type: IpType::Datacenter,
            velocity: Velocity {
                ip: 300,
                ..Velocity::default()
            },
            traffic_class: "automation",
            ..RiskInput::default()
        };
        let a = engine().assess(&input);
        assert!(a.rank >= 3, "{a:?}");
        assert_eq!(
            names(&a),
            [
                "automation",
                "velocity_ip",
                "ip_datacenter",
                "browser_headers_missing"
            ]
        );
        assert_eq!(a.reasons[0].evidence.to_string(), "python-requests/2.31");
        // 300/min against a limit of 120 is past twice the limit: two steps.
        assert_eq!(a.reasons[1].points, 30);
        assert_eq!(a.reasons[1].evidence.to_string(), "300 > 120");
        assert_eq!(a.device_rank, 0);
    }

    #[test]
    fn device_with_thirty_accounts_a_day_is_device_rank_4() {
        let input = RiskInput {
            accounts_per_device: Windows {
                d1: 30,
                d7: 30,
                d30: 30,
            },
            ..phone()
        };
        let a = engine().assess(&input);
        assert_eq!(a.device_rank, 4, "{a:?}");
        assert_eq!(a.reasons[0].name, "accounts_per_device_1d");
        assert_eq!(a.reasons[0].evidence.to_string(), "30 > 3");
        assert!(a.rank >= 3, "{a:?}");
    }

    #[test]
    fn new_device_with_several_accounts_is_a_farm() {
        let input = RiskInput {
            new_device: true,
            accounts_per_device: Windows {
                d1: 3,
                d7: 3,
                d30: 3,
            },
            challenge: ChallengeState::None,
            ..phone()
        };
        let a = engine().assess(&input);
        assert_eq!(a.reasons[0].name, "device_farm");
        assert_eq!(a.device_score, 45);
        assert_eq!(a.device_rank, 2);
    }

    #[test]
    fn one_sqli_finding_is_rank_4_and_duplicates_count_once() {
        let signals = [
            SignalRef {
                name: "sqli",
                weight: 5,
                evidence: "942100 query.id: ' OR 1=1--",
            },
            SignalRef {
                name: "sqli",
                weight: 8,
                evidence: "942200 json.name: UNION SELECT",
            },
        ];
        let input = RiskInput {
            signals: &signals,
            ..phone()
        };
        let a = engine().assess(&input);
        assert_eq!(a.rank, 4, "{a:?}");
        assert_eq!(a.score, 90);
        assert_eq!(names(&a), ["sqli", "challenge_passed"]);
        assert_eq!(a.reasons[0].points, 100);
        assert_eq!(
            a.reasons[0].evidence.to_string(),
            "942100 query.id: ' OR 1=1--"
        );
    }

    #[test]
    fn unlisted_signal_gives_its_largest_stage_weight() {
        // Custom rules have no points in the table: each carries its score.
        let signals = [("custom_rule", 30, "rule-a"), ("custom_rule", 45, "rule-b")];
        let input = RiskInput {
            signals: &signals,
            ..RiskInput::default()
        };
        let a = engine().assess(&input);
        assert_eq!(a.score, 45);
        assert_eq!(a.rank, 2);
    }

    #[test]
    fn device_flags_and_issue_rank_raise_both_ranks() {
        let input = RiskInput {
            device: Some(DeviceFacts {
                platform: "android",
                flags: DeviceFlags::from_names(["emulator", "frida"]),
                risk_at_issue: 1,
            }),
            ..phone()
        };
        let a = engine().assess(&input);
        assert_eq!(a.device_score, 100);
        assert_eq!(a.device_rank, 4);
        assert_eq!(
            names(&a),
            [
                "device_emulator",
                "device_hook",
                "device_risk_at_issue",
                "challenge_passed"
            ]
        );
        assert_eq!(a.reasons[2].evidence.to_string(), "rank 1");
    }

    #[test]
    fn reasons_keep_the_five_weightiest() {
        let signals = [
            ("crawler", 0, ""),
            ("rate_limit", 0, "api"),
            ("threat_feed", 0, "drop"),
            ("signature_missing", 0, ""),
            ("clearance_revoked", 0, ""),
            ("browser_headers_missing", 0, ""),
            ("jwt_wrong_issuer", 0, ""),
        ];
        let input = RiskInput {
            signals: &signals,
            ..RiskInput::default()
        };
        let a = engine().assess(&input);
        let points: Vec<i32> = a.reasons.iter().map(|r| r.points).collect();
        assert_eq!(points, [80, 50, 50, 30, 25]);
        assert_eq!(a.reasons[1].name, "threat_feed", "ties keep signal order");
        assert_eq!(a.score, 10 + 25 + 50 + 30 + 80 + 10 + 50);
    }

    #[test]
    fn weights_thresholds_and_limits_come_from_config() {
        let mut config = RiskConfig::default();
        config.weights.insert("ip_tor".into(), 90);
        config.thresholds = [10, 50, 85, 95];
        config.limits.ip_per_minute = 0;
        let engine = RiskEngine::new(&config).expect("valid");
        let input: RiskInput<'_> = RiskInput {
            ip_type: IpType::Tor,
            velocity: Velocity {
                ip: 10_000,
                ..Velocity::default()
            },
            ..RiskInput::default()
        };
        let a = engine.assess(&input);
        assert_eq!((a.score, a.rank), (90, 3));
        assert_eq!(names(&a), ["ip_tor"]);
    }

    #[test]
    fn invalid_config_is_refused() {
        let config = RiskConfig {
            thresholds: [50, 40, 60, 80],
            ..RiskConfig::default()
        };
        let err = RiskEngine::new(&config).unwrap_err();
        assert!(err.to_string().contains("risk.thresholds"), "{err}");
    }

    #[test]
    fn trusted_class_and_fresh_challenge_lower_the_score_not_below_zero() {
        let signals = [("rate_limit", 30, "api")];
        let input = RiskInput {
            signals: &signals,
            traffic_class: "trusted",
            challenge: ChallengeState::Passed { age_s: 10 },
            established: true,
            ..RiskInput::default()
        };
        let a = engine().assess(&input);
        assert_eq!(a.score, 0);
        assert_eq!(
            names(&a),
            ["class_trusted", "rate_limit", "challenge_passed"]
        );
    }

    #[test]
    fn stale_pass_no_longer_helps_and_failures_add() {
        let e = engine();
        let stale = RiskInput::<SignalRef> {
            challenge: ChallengeState::Passed { age_s: 7200 },
            ..RiskInput::default()
        };
        assert!(e.assess(&stale).reasons.is_empty());
        let failed = RiskInput::<SignalRef> {
            challenge: ChallengeState::Failed,
            ..RiskInput::default()
        };
        assert_eq!(e.assess(&failed).score, 30);
    }

    #[test]
    fn a_nat_address_is_judged_per_device_behind_it() {
        let campus = RiskInput {
            velocity: Velocity {
                ip: 3000,
                device: 20,
                ..Velocity::default()
            },
            devices_on_ip: 150,
            ..phone()
        };
        assert_eq!(engine().assess(&campus).rank, 0);
        let one_client = RiskInput {
            devices_on_ip: 1,
            ..campus
        };
        assert_eq!(engine().assess(&one_client).reasons[0].name, "velocity_ip");
    }

    #[test]
    fn a_third_account_in_one_session_is_rank_3_and_two_are_a_family() {
        let family = RiskInput {
            accounts_per_device_session: 2,
            ..phone()
        };
        assert_eq!(engine().assess(&family).rank, 0);
        let takeover = RiskInput {
            accounts_per_device_session: 3,
            ..phone()
        };
        let a = engine().assess(&takeover);
        assert!(a.rank >= 3, "{a:?}");
        assert_eq!(a.reasons[0].name, "accounts_per_device_session");
        assert_eq!(a.reasons[0].evidence.to_string(), "3 > 2");
    }

    #[test]
    fn many_networks_an_hour_weigh_and_a_few_do_not() {
        let commuter = RiskInput {
            networks_per_device: 3,
            ..phone()
        };
        assert_eq!(engine().assess(&commuter).score, 0);
        let shared = RiskInput {
            networks_per_device: 20,
            ..phone()
        };
        let a = engine().assess(&shared);
        assert!(a.rank >= 3, "{a:?}");
        assert_eq!(a.reasons[0].name, "networks_per_device_1h");
    }

    #[test]
    fn a_wave_of_new_ids_on_a_route_is_rank_3() {
        let wave = RiskInput {
            route_new_identities: 1500,
            ..phone()
        };
        let a = engine().assess(&wave);
        assert!(a.rank >= 3, "{a:?}");
        assert_eq!(a.reasons[0].evidence.to_string(), "1500 > 120");
        let trickle = RiskInput {
            route_new_identities: 30,
            ..phone()
        };
        assert_eq!(engine().assess(&trickle).score, 0);
    }

    #[test]
    fn a_passed_challenge_helps_only_a_clean_history() {
        let signals = [SignalRef {
            name: "rate_limit",
            weight: 25,
            evidence: "api",
        }];
        let clean = RiskInput {
            signals: &signals,
            ..phone()
        };
        assert_eq!(engine().assess(&clean).score, 15);
        let rotated = RiskInput {
            signals: &signals,
            fingerprint_devices: 150,
            ..phone()
        };
        let a = engine().assess(&rotated);
        assert_eq!(a.score, 45, "{a:?}");
        assert!(!names(&a).contains(&"challenge_passed"));
        // A device first seen under this clearance has no history to be clean.
        let fresh = RiskInput {
            signals: &signals,
            established: false,
            ..phone()
        };
        let a = engine().assess(&fresh);
        assert_eq!(a.score, 25, "{a:?}");
        assert!(!names(&a).contains(&"challenge_passed"));
    }

    #[test]
    fn new_ids_weigh_where_they_are_most_of_the_routes_traffic() {
        let flood = RiskInput {
            route_new_identities: 600,
            route_requests: 700,
            ..phone()
        };
        let a = engine().assess(&flood);
        assert_eq!(a.reasons[0].name, "route_new_identities");
        assert_eq!(a.reasons[0].points, 90, "600 > 4 x 120: three steps");
        // As many new ids on a busy route are a few new users among many.
        let busy = RiskInput {
            route_requests: 6_000,
            ..flood
        };
        assert!(!names(&engine().assess(&busy)).contains(&"route_new_identities"));
    }

    #[test]
    fn an_sdk_device_without_its_clearance_adds_to_the_missing_clearance() {
        let signals = [("clearance_missing", 25, ""), ("signature_missing", 30, "")];
        let web = RiskInput {
            signals: &signals,
            ..RiskInput::default()
        };
        assert_eq!(engine().assess(&web).rank, 2, "a browser without the SDK");
        let app = RiskInput {
            device_unproven: true,
            ..web
        };
        let a = engine().assess(&app);
        assert_eq!(a.rank, 3, "{a:?}");
        assert!(names(&a).contains(&"device_unproven"));
    }

    #[test]
    fn flag_names_map_to_flags() {
        let flags = DeviceFlags::from_names(["webdriver", "ua_headless", "jailbreak", "nonsense"]);
        assert_eq!(
            flags.names().collect::<Vec<_>>(),
            ["root", "automation", "headless"]
        );
        assert!(DeviceFlags::from_names([]).is_empty());
    }
}
