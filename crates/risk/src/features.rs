//! Request features kept in the shared state: velocity per minute, accounts
//! per device and devices per account over a day, a week and a month, and
//! when a device or account was first seen. One [`StateStore::batch`] per
//! request, so a network backend pays one round trip; the rare writes that
//! depend on its replies (a first sighting counted on its route, a
//! first-seen marker refreshed) are handed back in [`Gathered::writes`] for
//! the caller to apply off the request's path.
//!
//! Windows are approximations a fixed-size store can afford:
//!
//! - Velocity: two fixed one-minute counters, the current and the previous
//!   minute, the previous weighted by how much of it still lies within the
//!   last 60 s (the sliding-window estimate).
//! - Distinct ids in a window W (1, 7, 30 days): sets per half-window bucket.
//!   Each id is added to the set of the current half and of the next one, so
//!   the current half's set holds the ids of the previous half and this one:
//!   the count covers between W/2 and W of history, never more than W.
//!   Sets are capped by the store (1024 members in memory), so counts saturate.
//! - First seen: a marker written once and kept 30 days after the id was
//!   last refreshed (at most once a day); an id unseen for 30 days is new again.
//! - New ids per route: counters per 10 s, the previous one weighted like
//!   the velocity's, beside the route's own request count in the same window.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_state::{Op, Reply, StateError, StateResult, StateStore};
use sha2::{Digest, Sha256};

use crate::score::{DeviceFlags, Velocity, Windows};

/// The ids of one request, and what may be counted of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureKeys<'a> {
    pub ip: IpAddr,
    pub device: Option<&'a str>,
    pub account: Option<&'a str>,
    /// The route (policy name or path pattern) whose requests are counted together.
    pub route: &'a str,
    /// The route's method and path with ids folded ([`path_key`]): where
    /// new ids are counted per minute.
    pub path: &'a str,
    /// The clearance id, when the request proved one: its environment record.
    pub cid: Option<&'a str>,
    /// The device id is proven by a verified clearance. An unproven id is
    /// read but never counted: anyone can write someone else's device id.
    pub proven_device: bool,
    /// The request counts in the velocity and id sets of the identities it
    /// names. A refused request (replayed, forged) must not: it would be
    /// the victim's velocity that rises.
    pub count: bool,
    /// A clearance's lifetime: the window of the per-session id sets.
    pub session: Duration,
    /// A first sighting counts as a new id on its route only this long
    /// after the state's history began...
    pub route_history: Duration,
    /// ... and only under a clearance issued (unix ms) since then: after a
    /// restart, a session that began before it is not new, only unseen.
    pub clearance_issued_ms: Option<u64>,
}

/// What the shared state says about a request's ids, this request included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Requests in the last minute.
    pub velocity: Velocity,
    /// Accounts seen on this device; zero without both a device and an account.
    pub accounts_per_device: Windows,
    /// Devices this account was seen on; zero without both.
    pub devices_per_account: Windows,
    /// The same within a clearance's lifetime.
    pub accounts_per_device_session: u32,
    pub devices_per_account_session: u32,
    /// Networks (IPv4 /16, IPv6 /48) the device was seen on within an hour.
    pub networks_per_device: u32,
    /// Distinct proven devices on this address within about 10 minutes
    /// (a request without one counts as one): NAT, not a crowd of scripts.
    pub devices_on_ip: u32,
    /// New ids on this request's path, per minute, estimated over the
    /// last [`ROUTE_WINDOW_MS`] (this one included)...
    pub route_new_identities: u32,
    /// ... and the path's requests with a proven device per minute over the
    /// same window: the route's own traffic, against which the new ids are
    /// weighed.
    pub route_requests: u32,
    /// This request brings a new id to its path: a never-seen account on
    /// a known device, or a first sighting in a session that began under
    /// the state's watch. It weighs where the path is flooded with them.
    pub new_on_route: bool,
    /// Since the device was first seen; `None` without a device id.
    pub device_age: Option<Duration>,
    pub account_age: Option<Duration>,
    /// How much history the state had when the device / account was first
    /// seen: "new" means something only when it is long enough.
    pub device_history: Option<Duration>,
    pub account_history: Option<Duration>,
    /// What the check recorded about the clearance's environment.
    pub env: EnvRecord,
    /// The device was refused at the check (it matters for calls made
    /// without a clearance).
    pub device_denied: bool,
    /// The device was seen before its clearance was issued: it has a
    /// history of its own, beyond the session that just began.
    pub device_established: bool,
}

/// The features of a request, and the writes that follow from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub features: Features,
    /// Writes decided from the replies (a new id counted on its route, a
    /// first-seen marker refreshed): the caller
    /// applies them with one more batch, off the request's path.
    pub writes: Vec<Op>,
}

impl Features {
    /// The device was first seen less than `window` ago, after `history`
    /// of state.
    pub fn new_device(&self, window: Duration, history: Duration) -> bool {
        is_new(self.device_age, self.device_history, window, history)
    }

    pub fn new_account(&self, window: Duration, history: Duration) -> bool {
        is_new(self.account_age, self.account_history, window, history)
    }
}

fn is_new(
    age: Option<Duration>,
    seen_after: Option<Duration>,
    window: Duration,
    history: Duration,
) -> bool {
    age.is_some_and(|age| age < window) && seen_after.is_some_and(|h| h >= history)
}

/// What the check (`POST /.portcullis/verify`) recorded about a clearance:
/// the environment flags of the SDK's report, and how many device ids had
/// presented the same environment fingerprint by then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvRecord {
    pub flags: DeviceFlags,
    pub fingerprint_devices: u32,
}

impl EnvRecord {
    /// The state key of a clearance's record.
    pub fn key(cid: &str) -> String {
        format!("pc:env:{cid}")
    }

    /// `flags=a,b;fpd=N`.
    pub fn encode(flags: &[&str], fingerprint_devices: u64) -> String {
        format!("flags={};fpd={fingerprint_devices}", flags.join(","))
    }

    /// Reads [`EnvRecord::encode`], and the bare flag list of earlier versions.
    pub fn decode(bytes: &[u8]) -> EnvRecord {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        if !text.contains('=') {
            return EnvRecord {
                flags: DeviceFlags::from_names(text.split(',')),
                fingerprint_devices: 0,
            };
        }
        text.split(';')
            .fold(EnvRecord::default(), |mut record, part| {
                match part.split_once('=') {
                    Some(("flags", names)) => {
                        record.flags = DeviceFlags::from_names(names.split(','));
                    }
                    Some(("fpd", n)) => record.fingerprint_devices = n.parse().unwrap_or(0),
                    _ => {}
                }
                record
            })
    }
}

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Counters outlive their minute by one, for the sliding estimate.
const COUNTER_TTL: Duration = Duration::from_secs(120);
const WINDOW_DAYS: [u64; 3] = [1, 7, 30];
const FIRST_SEEN_TTL: Duration = Duration::from_secs(30 * 86_400);
const FIRST_SEEN_REFRESH_MS: u64 = DAY_MS;
/// The devices-per-address window.
const IP_DEVICES_MS: u64 = 10 * MINUTE_MS;
/// The window over which new ids per route are counted: short, so that a
/// wave shows within seconds of its start.
pub const ROUTE_WINDOW_MS: u64 = 10_000;
/// Where the state records when its history began; kept as long as any id.
const EPOCH_KEY: &str = "rk:epoch";

const EPOCH_TTL: Duration = Duration::from_secs(400 * 86_400);
/// The state key marking a device refused at the check.
pub fn denied_key(device: &str) -> String {
    format!("pc:denied:{}", bounded_id(device))
}

/// The member a request without a proven device adds to its address's set.
const ANONYMOUS: &str = "~";
/// Ids longer than this are replaced by a hash in keys and set members.
pub const MAX_ID_BYTES: usize = 64;

/// Reads and updates the features of one request in one batch.
pub async fn gather(
    state: &dyn StateStore,
    keys: &FeatureKeys<'_>,
    now: SystemTime,
) -> StateResult<Gathered> {
    let now_ms = unix_ms(now);
    let ids = Ids::new(keys);
    let mut plan = Plan::default();
    plan.epoch(now_ms);
    plan.velocity(now_ms, &ids, keys);
    plan.first_seen(now_ms, &ids, keys);
    plan.distinct(now_ms, &ids, keys);
    plan.per_session(now_ms, &ids, keys);
    plan.network(now_ms, &ids, keys);
    plan.route(now_ms, &ids, keys);
    plan.env(keys);
    let replies = state.batch(&plan.ops).await?;
    if replies.len() != plan.ops.len() {
        return Err(StateError::Unavailable(format!(
            "batch of {} operations got {} replies",
            plan.ops.len(),
            replies.len()
        )));
    }
    let mut gathered = Gathered::default();
    plan.read(
        &replies,
        now_ms,
        keys,
        &mut gathered.features,
        &mut gathered.writes,
    )?;
    Ok(gathered)
}

fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A request's method and path as one route key: segments that carry an
/// id (a digit, or longer than 24 bytes) become `*`, at most 6 segments, so
/// `/api/items/123` and `/api/items/456` are counted together.
pub fn path_key(method: &str, path: &str) -> String {
    let mut key = String::with_capacity(method.len() + path.len().min(128));
    key.push_str(method);
    key.push(' ');
    for segment in path.split('/').filter(|s| !s.is_empty()).take(6) {
        key.push('/');
        if segment.len() > 24 || segment.bytes().any(|b| b.is_ascii_digit()) {
            key.push('*');
        } else {
            key.push_str(segment);
        }
    }
    key
}

/// The network a device is on, for counting moves: an IPv4 /16 or an IPv6
/// /48. A carrier's NAT moves its users within such a block.
fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, _, _] = v4.octets();
            format!("{a}.{b}")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}", s[0], s[1], s[2])
        }
    }
}

/// The ids as they appear in keys: bounded in length.
struct Ids {
    ip: String,
    device: Option<String>,
    account: Option<String>,
    route: String,
    path: String,
}

impl Ids {
    fn new(keys: &FeatureKeys<'_>) -> Self {
        Ids {
            ip: keys.ip.to_string(),
            device: keys.device.map(bounded_id),
            account: keys.account.map(bounded_id),
            route: bounded_id(keys.route),
            path: bounded_id(keys.path),
        }
    }

    /// The device, when the request may count in its features.
    fn counted_device(&self, keys: &FeatureKeys<'_>) -> Option<&String> {
        self.device
            .as_ref()
            .filter(|_| keys.count && keys.proven_device)
    }
}

/// The id itself when short, else `#` and 32 hex digits of its SHA-256.
/// Raw ids never start with `#`, so a raw id cannot pose as a hashed one.
pub fn bounded_id(id: &str) -> String {
    if id.len() <= MAX_ID_BYTES && !id.starts_with('#') {
        return id.to_string();
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut out = String::with_capacity(33);
    out.push('#');
    for byte in &digest[..16] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Sets over a sliding window: each member is added to the set of the
/// current half-window and of the next, so the current set holds between
/// half the window and the whole of it.
fn window_adds(kind: &str, window_ms: u64, now_ms: u64, owner: &str, member: &str) -> [Op; 2] {
    let half = now_ms / (window_ms / 2).max(1);
    [half, half + 1].map(|bucket| Op::SetAdd {
        key: format!("rk:{kind}:{bucket}:{owner}"),
        member: member.to_string(),
        ttl: Duration::from_millis(window_ms),
    })
}

/// Where each feature's replies sit in the batch.
#[derive(Default)]
struct Plan {
    ops: Vec<Op>,
    /// Index of the epoch's `Get` (its `PutIfAbsent` follows).
    epoch: usize,
    /// Per velocity dimension: index of the current minute's counter (the previous follows).
    velocity: [Option<usize>; 4],
    /// Milliseconds into the current minute, for the sliding estimate.
    minute_elapsed_ms: u64,
    /// Device, then account: index of the `Get` (a `PutIfAbsent` may
    /// follow), the key, and whether this request may create the marker.
    first_seen: [Option<(usize, String, bool)>; 2],
    /// Accounts per device, devices per account: index of the first window's add.
    distinct: [Option<usize>; 2],
    /// The same within a session.
    session: [Option<usize>; 2],
    networks: Option<usize>,
    ip_devices: usize,
    /// The path's counters: index of the current window's new ids (the
    /// previous window's, then the current and previous request counts
    /// follow), and the current new-id counter's key.
    route: (usize, String),
    /// Milliseconds into the current route window.
    route_elapsed_ms: u64,
    env: Option<usize>,
    denied: Option<usize>,
}

impl Plan {
    fn epoch(&mut self, now_ms: u64) {
        self.epoch = self.ops.len();
        self.ops.push(Op::Get {
            key: EPOCH_KEY.into(),
        });
        self.ops.push(Op::PutIfAbsent {
            key: EPOCH_KEY.into(),
            value: now_ms.to_be_bytes().to_vec(),
            ttl: EPOCH_TTL,
        });
    }

    fn velocity(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        let minute = now_ms / MINUTE_MS;
        self.minute_elapsed_ms = now_ms % MINUTE_MS;
        let counted = i64::from(keys.count);
        let dims = [
            Some(("ip", &ids.ip, counted)),
            ids.device
                .as_ref()
                .map(|d| ("dv", d, i64::from(ids.counted_device(keys).is_some()))),
            ids.account.as_ref().map(|a| ("ac", a, counted)),
            Some(("rt", &ids.route, counted)),
        ];
        for (slot, dim) in dims.into_iter().enumerate() {
            let Some((kind, id, delta)) = dim else {
                continue;
            };
            self.velocity[slot] = Some(self.ops.len());
            for (bucket, delta) in [(minute, delta), (minute.saturating_sub(1), 0)] {
                self.ops.push(Op::Incr {
                    key: format!("rk:v:{kind}:{bucket}:{id}"),
                    delta,
                    ttl: COUNTER_TTL,
                });
            }
        }
    }

    fn first_seen(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        let device_counts = ids.counted_device(keys).is_some();
        for (slot, (kind, id, create)) in [
            ("dv", &ids.device, device_counts),
            ("ac", &ids.account, keys.count),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(id) = id else { continue };
            let key = format!("rk:fs:{kind}:{id}");
            self.first_seen[slot] = Some((self.ops.len(), key.clone(), create));
            self.ops.push(Op::Get { key: key.clone() });
            if create {
                self.ops.push(Op::PutIfAbsent {
                    key,
                    value: first_seen_value(now_ms, now_ms).to_vec(),
                    ttl: FIRST_SEEN_TTL,
                });
            }
        }
    }

    fn distinct(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        let (Some(device), Some(account)) = (ids.counted_device(keys), &ids.account) else {
            return;
        };
        for (slot, kind, owner, member) in
            [(0, "apd", device, account), (1, "dpa", account, device)]
        {
            self.distinct[slot] = Some(self.ops.len());
            for days in WINDOW_DAYS {
                let adds = window_adds(
                    &format!("{kind}{days}"),
                    days * DAY_MS,
                    now_ms,
                    owner,
                    member,
                );
                self.ops.extend(adds);
            }
        }
    }

    fn per_session(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        let (Some(device), Some(account)) = (ids.counted_device(keys), &ids.account) else {
            return;
        };
        let window_ms = u64::try_from(keys.session.as_millis())
            .unwrap_or(u64::MAX)
            .max(MINUTE_MS);
        for (slot, kind, owner, member) in
            [(0, "aps", device, account), (1, "dps", account, device)]
        {
            self.session[slot] = Some(self.ops.len());
            self.ops
                .extend(window_adds(kind, window_ms, now_ms, owner, member));
        }
    }

    fn network(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        if let Some(device) = ids.counted_device(keys) {
            self.networks = Some(self.ops.len());
            let network = network_of(keys.ip);
            self.ops
                .extend(window_adds("npd", HOUR_MS, now_ms, device, &network));
        }
        self.ip_devices = self.ops.len();
        let member = ids
            .device
            .as_deref()
            .filter(|_| keys.proven_device)
            .unwrap_or(ANONYMOUS);
        self.ops
            .extend(window_adds("dpi", IP_DEVICES_MS, now_ms, &ids.ip, member));
    }

    fn route(&mut self, now_ms: u64, ids: &Ids, keys: &FeatureKeys<'_>) {
        let window = now_ms / ROUTE_WINDOW_MS;
        self.route_elapsed_ms = now_ms % ROUTE_WINDOW_MS;
        let key = |kind: &str, window: u64| format!("rk:{kind}:{window}:{}", ids.path);
        self.route = (self.ops.len(), key("rn", window));
        // Only requests that could bring a new id make the route's traffic:
        // calls without a proven device cannot dilute a wave.
        let counted = i64::from(keys.count && keys.proven_device);
        for (kind, window, delta) in [
            ("rn", window, 0),
            ("rn", window.saturating_sub(1), 0),
            ("rq", window, counted),
            ("rq", window.saturating_sub(1), 0),
        ] {
            self.ops.push(Op::Incr {
                key: key(kind, window),
                delta,
                ttl: Duration::from_millis(2 * ROUTE_WINDOW_MS),
            });
        }
    }

    fn env(&mut self, keys: &FeatureKeys<'_>) {
        if let (Some(device), None) = (keys.device, keys.cid) {
            self.denied = Some(self.ops.len());
            self.ops.push(Op::Get {
                key: denied_key(device),
            });
        }
        if let Some(cid) = keys.cid {
            self.env = Some(self.ops.len());
            self.ops.push(Op::Get {
                key: EnvRecord::key(&bounded_id(cid)),
            });
        }
    }

    fn read(
        &self,
        replies: &[Reply],
        now_ms: u64,
        keys: &FeatureKeys<'_>,
        features: &mut Features,
        writes: &mut Vec<Op>,
    ) -> StateResult<()> {
        let epoch_ms = match &replies[self.epoch] {
            Reply::Value(Some(v)) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(now_ms),
            Reply::Value(None) => now_ms,
            other => return Err(unexpected(other)),
        };
        let sliding = |at: usize| -> StateResult<u64> {
            let current = count(&replies[at])?;
            let previous = count(&replies[at + 1])?;
            let remaining = MINUTE_MS - self.minute_elapsed_ms;
            Ok(current + previous * remaining / MINUTE_MS)
        };
        let mut velocity = [0u32; 4];
        for (slot, at) in self.velocity.iter().enumerate() {
            if let Some(at) = *at {
                velocity[slot] = u32::try_from(sliding(at)?).unwrap_or(u32::MAX);
            }
        }
        features.velocity = Velocity {
            ip: velocity[0],
            device: velocity[1],
            account: velocity[2],
            route: velocity[3],
        };
        // Per device, then account: this request is its first sighting.
        let mut sighted = [false; 2];
        let mut device_known = false;
        for (slot, entry) in self.first_seen.iter().enumerate() {
            let Some((at, key, create)) = entry else {
                continue;
            };
            let seen = first_seen_at(&replies[*at], key, now_ms, *create, writes)?;
            sighted[slot] = seen.is_none() && *create;
            let (age, history) = match seen {
                Some(first_ms) => (
                    now_ms.saturating_sub(first_ms),
                    first_ms.saturating_sub(epoch_ms),
                ),
                None => (0, now_ms.saturating_sub(epoch_ms)),
            };
            if slot == 0 {
                device_known = seen.is_some();
                features.device_established = seen
                    .zip(keys.clearance_issued_ms)
                    .is_some_and(|(first_ms, issued_ms)| first_ms < issued_ms);
            }
            let (age, history) = (Duration::from_millis(age), Duration::from_millis(history));
            if slot == 0 {
                features.device_age = Some(age);
                features.device_history = Some(history);
            } else {
                features.account_age = Some(age);
                features.account_history = Some(history);
            }
        }
        for (slot, at) in self.distinct.iter().enumerate() {
            let Some(at) = *at else { continue };
            // Each window has two adds; the first is the current half's set.
            let [d1, d7, d30] = [0, 1, 2].map(|w| set_len(&replies[at + 2 * w]));
            let windows = Windows {
                d1: d1?,
                d7: d7?,
                d30: d30?,
            };
            if slot == 0 {
                features.accounts_per_device = windows;
            } else {
                features.devices_per_account = windows;
            }
        }
        if let Some(at) = self.session[0] {
            features.accounts_per_device_session = set_len(&replies[at])?;
        }
        if let Some(at) = self.session[1] {
            features.devices_per_account_session = set_len(&replies[at])?;
        }
        if let Some(at) = self.networks {
            features.networks_per_device = set_len(&replies[at])?;
        }
        features.devices_on_ip = set_len(&replies[self.ip_devices])?;
        // New ids on a route, of two kinds:
        // - a never-seen account on a device already seen (an account
        //   switch): nothing else looks like it, whenever it comes;
        // - a first sighting in a session that began after the state's
        //   history did, counted once the state has watched long enough
        //   for the first calls of every client (a start, a restart whose
        //   stale signatures send every client to the check again) to be
        //   over. A session from before the state's history is unseen.
        // Every first sighting of a new session weighs where the route is
        // flooded, counted or not.
        let proven = keys.proven_device && keys.count;
        let switch = proven && device_known && sighted[1];
        let new_session = keys.clearance_issued_ms.is_some_and(|t| t >= epoch_ms);
        let watched = Duration::from_millis(now_ms.saturating_sub(epoch_ms));
        let ready = watched >= keys.route_history;
        // A device's first call in a session begun under the state's watch
        // (its account, if new too, comes with it); a never-seen account
        // on a device already seen is a switch.
        let first_sighting = proven && new_session && sighted[0];
        // A switch weighs where the device's calls mostly bring never-seen
        // accounts (rotation), not where a family member joins a phone
        // that has been in use for a while.
        let rotating = 2 * features.accounts_per_device_session > features.velocity.device;
        features.new_on_route = (switch && rotating) || first_sighting;
        let counted = switch || (first_sighting && ready);
        let (at, key) = &self.route;
        let window_sliding = |at: usize| -> StateResult<u64> {
            let current = count(&replies[at])?;
            let previous = count(&replies[at + 1])?;
            let remaining = ROUTE_WINDOW_MS - self.route_elapsed_ms;
            Ok(current + previous * remaining / ROUTE_WINDOW_MS)
        };
        let mut new_ids = window_sliding(*at)?;
        if counted {
            new_ids += 1;
            writes.push(Op::Incr {
                key: key.clone(),
                delta: 1,
                ttl: Duration::from_millis(2 * ROUTE_WINDOW_MS),
            });
        }
        let per_minute =
            |n: u64| u32::try_from(n * MINUTE_MS / ROUTE_WINDOW_MS).unwrap_or(u32::MAX);
        features.route_new_identities = per_minute(new_ids);
        features.route_requests = per_minute(window_sliding(*at + 2)?);
        if let Some(at) = self.denied {
            features.device_denied = matches!(&replies[at], Reply::Value(Some(_)));
        }
        if let Some(at) = self.env {
            features.env = match &replies[at] {
                Reply::Value(Some(bytes)) => EnvRecord::decode(bytes),
                Reply::Value(None) => EnvRecord::default(),
                other => return Err(unexpected(other)),
            };
        }
        Ok(())
    }
}

fn count(reply: &Reply) -> StateResult<u64> {
    match reply {
        Reply::Count(n) => Ok(u64::try_from(*n).unwrap_or(0)),
        other => Err(unexpected(other)),
    }
}

fn set_len(reply: &Reply) -> StateResult<u32> {
    match reply {
        Reply::SetLen(n) => Ok(u32::try_from(*n).unwrap_or(u32::MAX)),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: &Reply) -> StateError {
    StateError::Unavailable(format!("unexpected reply {reply:?}"))
}

/// First seen and last refreshed, in Unix milliseconds.
fn first_seen_value(first_ms: u64, refreshed_ms: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&first_ms.to_be_bytes());
    value[8..].copy_from_slice(&refreshed_ms.to_be_bytes());
    value
}

/// When the id was first seen, from the marker read before this request's
/// `PutIfAbsent` (`None`: never); queues a refresh when the marker is a day
/// old, or a rewrite when it is unreadable (and this request may write).
fn first_seen_at(
    reply: &Reply,
    key: &str,
    now_ms: u64,
    may_write: bool,
    refresh: &mut Vec<Op>,
) -> StateResult<Option<u64>> {
    let stored = match reply {
        Reply::Value(stored) => stored.as_deref(),
        other => return Err(unexpected(other)),
    };
    let Some(stored) = stored else {
        return Ok(None);
    };
    let parsed = <[u8; 16]>::try_from(stored).ok().map(|v| {
        let (first, refreshed) = v.split_at(8);
        (read_u64(first), read_u64(refreshed))
    });
    let (first_ms, refreshed_ms) = parsed.unwrap_or((now_ms, 0));
    if may_write && now_ms.saturating_sub(refreshed_ms) >= FIRST_SEEN_REFRESH_MS {
        refresh.push(Op::Put {
            key: key.to_string(),
            value: first_seen_value(first_ms, now_ms).to_vec(),
            ttl: FIRST_SEEN_TTL,
        });
    }
    Ok(Some(first_ms))
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(bytes);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_state::{MemoryStore, MemoryStoreOptions};

    fn store() -> MemoryStore {
        MemoryStore::new(MemoryStoreOptions::default())
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Gathers, then applies the writes as the gateway does after the request.
    async fn gather(
        state: &MemoryStore,
        keys: &FeatureKeys<'_>,
        now: SystemTime,
    ) -> StateResult<Features> {
        let gathered = super::gather(state, keys, now).await?;
        state.batch(&gathered.writes).await?;
        Ok(gathered.features)
    }

    /// A time at the start of a day, so of a minute and of a half-day bucket.
    const T0: u64 = 1_000 * 30 * DAY_MS;

    fn keys<'a>(device: &'a str, account: &'a str) -> FeatureKeys<'a> {
        FeatureKeys {
            ip: IpAddr::from([203, 0, 113, 7]),
            device: Some(device),
            account: Some(account),
            route: "/api/coupon",
            path: "POST /api/coupon/claim",
            cid: None,
            proven_device: true,
            count: true,
            session: Duration::from_secs(4 * 3600),
            route_history: Duration::from_secs(20),
            clearance_issued_ms: Some(T0 + 25_000),
        }
    }

    #[tokio::test]
    async fn velocity_counts_requests_in_the_minute() {
        let state = store();
        let mut last = Features::default();
        for i in 0..5 {
            last = gather(&state, &keys("dev-1", "acct-1"), at(T0 + i * 1000))
                .await
                .expect("memory store");
        }
        assert_eq!(
            last.velocity,
            Velocity {
                ip: 5,
                device: 5,
                account: 5,
                route: 5
            }
        );
        let other = FeatureKeys {
            ip: IpAddr::from([198, 51, 100, 1]),
            device: None,
            account: None,
            ..keys("d", "a")
        };
        let f = gather(&state, &other, at(T0 + 6000)).await.expect("ok");
        assert_eq!(f.velocity.ip, 1);
        assert_eq!(f.velocity.route, 6);
        assert_eq!((f.velocity.device, f.velocity.account), (0, 0));
    }

    #[tokio::test]
    async fn previous_minute_fades_out_over_the_next() {
        let state = store();
        for _ in 0..60 {
            gather(&state, &keys("d", "a"), at(T0 + 10_000))
                .await
                .expect("ok");
        }
        // A quarter into the next minute: 3/4 of the previous 60, plus this one.
        let f = gather(&state, &keys("d", "a"), at(T0 + MINUTE_MS + 15_000))
            .await
            .expect("ok");
        assert_eq!(f.velocity.ip, 45 + 1);
        // Two minutes later nothing of it is left.
        let f = gather(&state, &keys("d", "a"), at(T0 + 3 * MINUTE_MS))
            .await
            .expect("ok");
        assert_eq!(f.velocity.ip, 1);
    }

    #[tokio::test]
    async fn accounts_per_device_and_devices_per_account() {
        let state = store();
        for account in ["a1", "a2", "a3", "a2"] {
            gather(&state, &keys("farm-phone", account), at(T0))
                .await
                .expect("ok");
        }
        let f = gather(&state, &keys("farm-phone", "a4"), at(T0 + 1000))
            .await
            .expect("ok");
        assert_eq!(
            f.accounts_per_device,
            Windows {
                d1: 4,
                d7: 4,
                d30: 4
            }
        );
        assert_eq!(f.devices_per_account.d1, 1);
        // The same account on a second device.
        let f = gather(&state, &keys("tablet", "a1"), at(T0 + 2000))
            .await
            .expect("ok");
        assert_eq!(f.devices_per_account.d1, 2);
        assert_eq!(f.accounts_per_device.d1, 1);
    }

    #[tokio::test]
    async fn day_window_forgets_after_a_day_but_the_week_remembers() {
        let state = store();
        for account in ["a1", "a2", "a3"] {
            gather(&state, &keys("phone", account), at(T0))
                .await
                .expect("ok");
        }
        // Half a day later the ids are still within the window.
        let f = gather(&state, &keys("phone", "a1"), at(T0 + DAY_MS / 2))
            .await
            .expect("ok");
        assert_eq!(f.accounts_per_device.d1, 3);
        // A full day later only the request itself and those of the last half-day count.
        let f = gather(&state, &keys("phone", "a4"), at(T0 + DAY_MS))
            .await
            .expect("ok");
        assert_eq!(f.accounts_per_device.d1, 2, "a1 (half a day ago) and a4");
        assert_eq!(f.accounts_per_device.d7, 4);
    }

    #[tokio::test]
    async fn first_seen_ages_and_new_flags() {
        let state = store();
        let f = gather(&state, &keys("d", "a"), at(T0)).await.expect("ok");
        assert_eq!(f.device_age, Some(Duration::ZERO));
        assert_eq!(f.account_age, Some(Duration::ZERO));
        let window = Duration::from_secs(600);
        // Nothing is new to a store that has just begun its history.
        assert!(!f.new_device(window, Duration::ZERO + Duration::from_secs(1)));
        assert!(f.new_device(window, Duration::ZERO) && f.new_account(window, Duration::ZERO));
        let later = at(T0 + 3_600_000);
        let f = gather(&state, &keys("d", "a"), later).await.expect("ok");
        assert_eq!(f.device_age, Some(Duration::from_secs(3600)));
        assert!(!f.new_device(window, Duration::ZERO));
        // A device first seen an hour into the store's history is new to it.
        let f = gather(&state, &keys("d2", "a"), later).await.expect("ok");
        assert!(f.new_device(window, Duration::from_secs(3600)));
        assert!(!f.new_device(window, Duration::from_secs(3601)));
        let anonymous = FeatureKeys {
            device: None,
            account: None,
            ..keys("d", "a")
        };
        let f = gather(&state, &anonymous, later).await.expect("ok");
        assert_eq!((f.device_age, f.account_age), (None, None));
        assert!(!f.new_device(window, Duration::ZERO));
    }

    #[tokio::test]
    async fn first_seen_marker_is_refreshed_once_a_day_and_keeps_its_origin() {
        let state = store();
        gather(&state, &keys("d", "a"), at(T0)).await.expect("ok");
        let two_days = at(T0 + 2 * DAY_MS);
        gather(&state, &keys("d", "a"), two_days).await.expect("ok");
        let stored = state.get("rk:fs:dv:d").await.expect("ok").expect("present");
        assert_eq!(stored, first_seen_value(T0, T0 + 2 * DAY_MS));
    }

    #[tokio::test]
    async fn long_ids_are_hashed_in_keys() {
        let state = store();
        let long = "x".repeat(10_000);
        gather(&state, &keys(&long, &long), at(T0))
            .await
            .expect("ok");
        let keys = state.scan_prefix("rk:", 100).await.expect("ok");
        assert!(!keys.is_empty());
        for (key, _, _) in &keys {
            assert!(key.len() <= 100, "{key}");
        }
        assert_eq!(bounded_id("dev-1"), "dev-1");
        assert_eq!(bounded_id(&long).len(), 33);
        assert_ne!(bounded_id("#abc"), "#abc", "raw ids cannot look hashed");
    }

    #[tokio::test]
    async fn wrong_kind_of_value_is_an_error() {
        let state = store();
        state
            .put("rk:v:ip:0:203.0.113.7", b"x", Duration::from_secs(60))
            .await
            .expect("ok");
        let k = keys("d", "a");
        let err = gather(&state, &k, at(5_000)).await.unwrap_err();
        assert!(matches!(err, StateError::WrongType(_)), "{err:?}");
    }

    #[tokio::test]
    async fn networks_are_counted_per_device_by_16() {
        let state = store();
        let mut last = Features::default();
        for (i, ip) in ["27.10.1.5", "27.10.200.9", "27.10.3.3", "112.5.1.1"]
            .iter()
            .enumerate()
        {
            let k = FeatureKeys {
                ip: ip.parse().expect("ip"),
                ..keys("phone", "a")
            };
            last = gather(&state, &k, at(T0 + i as u64 * 1000))
                .await
                .expect("ok");
        }
        assert_eq!(
            last.networks_per_device, 2,
            "one carrier /16, one Wi-Fi /16"
        );
    }

    #[tokio::test]
    async fn refused_and_unproven_requests_never_count_for_the_ids_they_name() {
        let state = store();
        gather(&state, &keys("victim", "a"), at(T0))
            .await
            .expect("ok");
        for i in 0..10u8 {
            let replay = FeatureKeys {
                ip: IpAddr::from([45, i, 0, 1]),
                count: false,
                ..keys("victim", "a")
            };
            gather(&state, &replay, at(T0 + 100)).await.expect("ok");
            let forged = FeatureKeys {
                ip: IpAddr::from([46, i, 0, 1]),
                proven_device: false,
                ..keys("victim", "b")
            };
            gather(&state, &forged, at(T0 + 200)).await.expect("ok");
        }
        let f = gather(&state, &keys("victim", "a"), at(T0 + 1000))
            .await
            .expect("ok");
        assert_eq!(f.velocity.device, 2);
        assert_eq!(f.networks_per_device, 1);
        assert_eq!(f.accounts_per_device_session, 1);
    }

    #[tokio::test]
    async fn new_ids_on_a_route_count_once_the_history_covers_them() {
        let state = store();
        // The launch burst right after the store began: first sightings,
        // but not counted as a wave of new ids.
        for i in 0..5 {
            let f = gather(&state, &keys(&format!("d{i}"), &format!("a{i}")), at(T0))
                .await
                .expect("ok");
            assert!(f.new_on_route);
            assert_eq!(f.route_new_identities, 0);
        }
        let later = T0 + 30_000;
        for i in 0..3 {
            let f = gather(&state, &keys("bot", &format!("fresh{i}")), at(later))
                .await
                .expect("ok");
            assert!(f.new_on_route);
            // Per minute, from a 10 s window.
            assert_eq!(f.route_new_identities, 6 * (i + 1));
        }
        // A known pair is not new; an unproven device adds nothing.
        let f = gather(&state, &keys("bot", "fresh0"), at(later))
            .await
            .expect("ok");
        assert!(!f.new_on_route);
        assert_eq!(f.route_new_identities, 18);
        // The route's own requests in the window: the four of the bot (the
        // launch's are two windows back).
        assert_eq!(f.route_requests, 6 * 4);
        let f = gather(
            &state,
            &FeatureKeys {
                proven_device: false,
                ..keys("x", "y")
            },
            at(later),
        )
        .await
        .expect("ok");
        assert!(!f.new_on_route);
        assert_eq!(f.route_requests, 6 * 4, "nor does it dilute the wave");
        let other = FeatureKeys {
            path: "GET /api/feed",
            ..keys("bot", "fresh9")
        };
        let f = gather(&state, &other, at(later)).await.expect("ok");
        assert_eq!(f.route_new_identities, 6, "counted per path");
        // A session from before the store's history is unseen, not new.
        let old_session = FeatureKeys {
            clearance_issued_ms: Some(T0 - 1),
            ..keys("old", "old")
        };
        let f = gather(&state, &old_session, at(later)).await.expect("ok");
        assert!(!f.new_on_route);
    }

    #[tokio::test]
    async fn never_seen_accounts_on_known_devices_count_from_the_start() {
        let state = store();
        gather(&state, &keys("farm-phone", "a0"), at(T0))
            .await
            .expect("ok");
        for i in 1..=4 {
            let f = gather(&state, &keys("farm-phone", &format!("a{i}")), at(T0 + 100))
                .await
                .expect("ok");
            assert!(f.new_on_route);
            assert_eq!(f.route_new_identities, 6 * i, "per minute over 10 s");
        }
        // Back to a known account: no switch.
        let f = gather(&state, &keys("farm-phone", "a1"), at(T0 + 200))
            .await
            .expect("ok");
        assert!(!f.new_on_route);
    }

    #[tokio::test]
    async fn a_second_account_on_a_phone_in_use_is_counted_but_not_weighed() {
        let state = store();
        for _ in 0..6 {
            gather(&state, &keys("family-phone", "mum"), at(T0))
                .await
                .expect("ok");
        }
        let f = gather(&state, &keys("family-phone", "kid"), at(T0 + 100))
            .await
            .expect("ok");
        assert!(!f.new_on_route, "most of the phone's calls were mum's");
        assert_eq!(f.route_new_identities, 6, "the switch is counted");
    }

    #[tokio::test]
    async fn a_device_seen_before_its_clearance_is_established() {
        let state = store();
        let first = FeatureKeys {
            clearance_issued_ms: Some(T0 - 1_000),
            ..keys("phone", "a")
        };
        let f = gather(&state, &first, at(T0)).await.expect("ok");
        assert!(!f.device_established, "first seen under this clearance");
        let relaunch = FeatureKeys {
            clearance_issued_ms: Some(T0 + 60_000),
            ..keys("phone", "a")
        };
        let f = gather(&state, &relaunch, at(T0 + 61_000))
            .await
            .expect("ok");
        assert!(f.device_established);
    }

    #[tokio::test]
    async fn devices_behind_one_address_are_counted() {
        let state = store();
        let mut last = Features::default();
        for i in 0..50 {
            last = gather(
                &state,
                &keys(&format!("student{i}"), &format!("s{i}")),
                at(T0),
            )
            .await
            .expect("ok");
        }
        assert_eq!(last.devices_on_ip, 50);
        assert_eq!(last.velocity.ip, 50);
    }

    #[tokio::test]
    async fn the_environment_record_of_the_clearance_is_read() {
        let state = store();
        let record = EnvRecord::encode(&["emulator", "root"], 140);
        state
            .put(
                &EnvRecord::key("cid1"),
                record.as_bytes(),
                Duration::from_secs(60),
            )
            .await
            .expect("ok");
        let k = FeatureKeys {
            cid: Some("cid1"),
            ..keys("d", "a")
        };
        let f = gather(&state, &k, at(T0)).await.expect("ok");
        assert_eq!(f.env.fingerprint_devices, 140);
        assert!(
            f.env
                .flags
                .contains(DeviceFlags::EMULATOR.union(DeviceFlags::ROOT))
        );
        assert_eq!(EnvRecord::decode(b"hook").flags, DeviceFlags::HOOK);
    }

    #[test]
    fn path_keys_fold_ids() {
        assert_eq!(path_key("GET", "/api/items/123"), "GET /api/items/*");
        assert_eq!(
            path_key("POST", "/api/coupon/claim"),
            "POST /api/coupon/claim"
        );
        assert_eq!(path_key("GET", "/"), "GET ");
        let long = format!("/a/{}", "x".repeat(40));
        assert_eq!(path_key("GET", &long), "GET /a/*");
    }
}
