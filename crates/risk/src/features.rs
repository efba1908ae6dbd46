//! Request features kept in the shared state: velocity per minute, accounts
//! per device and devices per account over a day, a week and a month, and
//! when a device or account was first seen. One [`StateStore::batch`] per
//! request (a second, rare one refreshes first-seen markers), so a network
//! backend pays one round trip.
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

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_state::{Op, Reply, StateError, StateResult, StateStore};
use sha2::{Digest, Sha256};

use crate::score::{Velocity, Windows};

/// The ids of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureKeys<'a> {
    pub ip: IpAddr,
    pub device: Option<&'a str>,
    pub account: Option<&'a str>,
    /// The route (policy name or path pattern) whose requests are counted together.
    pub route: &'a str,
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
    /// Since the device was first seen; `None` without a device id.
    pub device_age: Option<Duration>,
    pub account_age: Option<Duration>,
}

impl Features {
    /// The device was first seen less than `window` ago.
    pub fn new_device(&self, window: Duration) -> bool {
        self.device_age.is_some_and(|age| age < window)
    }

    pub fn new_account(&self, window: Duration) -> bool {
        self.account_age.is_some_and(|age| age < window)
    }
}

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;
/// Counters outlive their minute by one, for the sliding estimate.
const COUNTER_TTL: Duration = Duration::from_secs(120);
const WINDOW_DAYS: [u64; 3] = [1, 7, 30];
const FIRST_SEEN_TTL: Duration = Duration::from_secs(30 * 86_400);
const FIRST_SEEN_REFRESH_MS: u64 = DAY_MS;
/// Ids longer than this are replaced by a hash in keys and set members.
pub const MAX_ID_BYTES: usize = 64;

/// Reads and updates the features of one request.
pub async fn gather(
    state: &dyn StateStore,
    keys: &FeatureKeys<'_>,
    now: SystemTime,
) -> StateResult<Features> {
    let now_ms = unix_ms(now);
    let ids = Ids::new(keys);
    let mut plan = Plan::default();
    plan.velocity(now_ms, &ids);
    plan.first_seen(now_ms, &ids);
    plan.distinct(now_ms, &ids);
    let replies = state.batch(&plan.ops).await?;
    if replies.len() != plan.ops.len() {
        return Err(StateError::Unavailable(format!(
            "batch of {} operations got {} replies",
            plan.ops.len(),
            replies.len()
        )));
    }
    let mut features = Features::default();
    let mut refresh = Vec::new();
    plan.read(&replies, now_ms, &mut features, &mut refresh)?;
    if !refresh.is_empty() {
        state.batch(&refresh).await?;
    }
    Ok(features)
}

fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The ids as they appear in keys: bounded in length.
struct Ids {
    ip: String,
    device: Option<String>,
    account: Option<String>,
    route: String,
}

impl Ids {
    fn new(keys: &FeatureKeys<'_>) -> Self {
        Ids {
            ip: keys.ip.to_string(),
            device: keys.device.map(bounded_id),
            account: keys.account.map(bounded_id),
            route: bounded_id(keys.route),
        }
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

/// Where each feature's replies sit in the batch.
#[derive(Default)]
struct Plan {
    ops: Vec<Op>,
    /// Per velocity dimension: index of the current minute's counter (the previous follows).
    velocity: [Option<usize>; 4],
    /// Milliseconds into the current minute, for the sliding estimate.
    minute_elapsed_ms: u64,
    /// Device, then account: index of the `Get` (the `PutIfAbsent` follows) and the key.
    first_seen: [Option<(usize, String)>; 2],
    /// Accounts per device, devices per account: index of the first window's add.
    distinct: [Option<usize>; 2],
}

impl Plan {
    fn velocity(&mut self, now_ms: u64, ids: &Ids) {
        let minute = now_ms / MINUTE_MS;
        self.minute_elapsed_ms = now_ms % MINUTE_MS;
        let dims = [
            Some(("ip", &ids.ip)),
            ids.device.as_ref().map(|d| ("dv", d)),
            ids.account.as_ref().map(|a| ("ac", a)),
            Some(("rt", &ids.route)),
        ];
        for (slot, dim) in dims.into_iter().enumerate() {
            let Some((kind, id)) = dim else { continue };
            self.velocity[slot] = Some(self.ops.len());
            for (bucket, delta) in [(minute, 1), (minute.saturating_sub(1), 0)] {
                self.ops.push(Op::Incr {
                    key: format!("rk:v:{kind}:{bucket}:{id}"),
                    delta,
                    ttl: COUNTER_TTL,
                });
            }
        }
    }

    fn first_seen(&mut self, now_ms: u64, ids: &Ids) {
        for (slot, (kind, id)) in [("dv", &ids.device), ("ac", &ids.account)]
            .into_iter()
            .enumerate()
        {
            let Some(id) = id else { continue };
            let key = format!("rk:fs:{kind}:{id}");
            self.first_seen[slot] = Some((self.ops.len(), key.clone()));
            self.ops.push(Op::Get { key: key.clone() });
            self.ops.push(Op::PutIfAbsent {
                key,
                value: first_seen_value(now_ms, now_ms).to_vec(),
                ttl: FIRST_SEEN_TTL,
            });
        }
    }

    fn distinct(&mut self, now_ms: u64, ids: &Ids) {
        let (Some(device), Some(account)) = (&ids.device, &ids.account) else {
            return;
        };
        for (slot, kind, owner, member) in
            [(0, "apd", device, account), (1, "dpa", account, device)]
        {
            self.distinct[slot] = Some(self.ops.len());
            for days in WINDOW_DAYS {
                let window_ms = days * DAY_MS;
                let half = now_ms / (window_ms / 2);
                for bucket in [half, half + 1] {
                    self.ops.push(Op::SetAdd {
                        key: format!("rk:{kind}:{days}:{bucket}:{owner}"),
                        member: member.clone(),
                        ttl: Duration::from_millis(window_ms),
                    });
                }
            }
        }
    }

    fn read(
        &self,
        replies: &[Reply],
        now_ms: u64,
        features: &mut Features,
        refresh: &mut Vec<Op>,
    ) -> StateResult<()> {
        let mut velocity = [0u32; 4];
        for (slot, at) in self.velocity.iter().enumerate() {
            let Some(at) = *at else { continue };
            let current = count(&replies[at])?;
            let previous = count(&replies[at + 1])?;
            let remaining = MINUTE_MS - self.minute_elapsed_ms;
            let estimate = current + previous * remaining / MINUTE_MS;
            velocity[slot] = u32::try_from(estimate).unwrap_or(u32::MAX);
        }
        features.velocity = Velocity {
            ip: velocity[0],
            device: velocity[1],
            account: velocity[2],
            route: velocity[3],
        };
        for (slot, entry) in self.first_seen.iter().enumerate() {
            let Some((at, key)) = entry else { continue };
            let age = first_seen_age(&replies[*at], key, now_ms, refresh)?;
            if slot == 0 {
                features.device_age = Some(age);
            } else {
                features.account_age = Some(age);
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

/// The age from the marker read before this request's `PutIfAbsent`; queues
/// a refresh when the marker is a day old, or a rewrite when it is unreadable.
fn first_seen_age(
    reply: &Reply,
    key: &str,
    now_ms: u64,
    refresh: &mut Vec<Op>,
) -> StateResult<Duration> {
    let stored = match reply {
        Reply::Value(stored) => stored.as_deref(),
        other => return Err(unexpected(other)),
    };
    // Absent: this request's PutIfAbsent just wrote the marker.
    let Some(stored) = stored else {
        return Ok(Duration::ZERO);
    };
    let parsed = <[u8; 16]>::try_from(stored).ok().map(|v| {
        let (first, refreshed) = v.split_at(8);
        (read_u64(first), read_u64(refreshed))
    });
    let (first_ms, refreshed_ms) = parsed.unwrap_or((now_ms, 0));
    if now_ms.saturating_sub(refreshed_ms) >= FIRST_SEEN_REFRESH_MS {
        refresh.push(Op::Put {
            key: key.to_string(),
            value: first_seen_value(first_ms, now_ms).to_vec(),
            ttl: FIRST_SEEN_TTL,
        });
    }
    Ok(Duration::from_millis(now_ms.saturating_sub(first_ms)))
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

    /// A time at the start of a day, so of a minute and of a half-day bucket.
    const T0: u64 = 1_000 * 30 * DAY_MS;

    fn keys<'a>(device: &'a str, account: &'a str) -> FeatureKeys<'a> {
        FeatureKeys {
            ip: IpAddr::from([203, 0, 113, 7]),
            device: Some(device),
            account: Some(account),
            route: "/api/coupon",
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
            route: "/api/coupon",
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
        assert!(f.new_device(window) && f.new_account(window));
        let later = at(T0 + 3_600_000);
        let f = gather(&state, &keys("d", "a"), later).await.expect("ok");
        assert_eq!(f.device_age, Some(Duration::from_secs(3600)));
        assert!(!f.new_device(window));
        let anonymous = FeatureKeys {
            device: None,
            account: None,
            ..keys("d", "a")
        };
        let f = gather(&state, &anonymous, later).await.expect("ok");
        assert_eq!((f.device_age, f.account_age), (None, None));
        assert!(!f.new_device(window));
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
}
