#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use portcullis_store::{
    ChallengeMinute, EventFilter, EventStore, PassTally, Pruned, Retention, RollupQuery, Series,
    SolveRateQuery, SqliteStore, StoreError, StoredEvent, TopEntry, TopField, TopQuery, TrialCount,
    TrialQuery, minute_of,
};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("portcullis-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("events.db")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const T0: i64 = 1_795_425_120_000; // a whole minute

/// The wall clock in milliseconds, for tests whose code under test reads the
/// clock itself (the writer's retention): a fixed date would age out.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}

/// A passed request at `ts_ms`.
pub fn pass(ts_ms: i64, n: usize) -> StoredEvent {
    StoredEvent {
        ts_ms,
        request_id: format!("req-{ts_ms}-{n}"),
        client_ip: format!("10.0.0.{}", n % 4),
        method: "GET".into(),
        host: "shop.example".into(),
        path: format!("/item/{n}"),
        action: "pass".into(),
        status: 200,
        class: "normal".into(),
        signals: "[]".into(),
        duration_us: 100,
        ..StoredEvent::default()
    }
}

/// An intercepted request with one signal.
pub fn blocked(ts_ms: i64, n: usize, signal: &str) -> StoredEvent {
    StoredEvent {
        action: "block".into(),
        layer: Some("clean".into()),
        status: 403,
        signals: format!(
            r#"[{{"name":"{signal}","layer":"clean","weight":80,"evidence":"x","demand":{{"kind":"block"}}}}]"#
        ),
        ..pass(ts_ms, n)
    }
}

/// A route's challenge (401) to `device` at `ts_ms`.
pub fn challenged(ts_ms: i64, route: &str, device: &str) -> StoredEvent {
    StoredEvent {
        action: "challenge".into(),
        layer: Some("clean".into()),
        status: 401,
        device_id: Some(device.into()),
        route: Some(route.into()),
        rule: Some("clearance_missing".into()),
        ..pass(ts_ms, 0)
    }
}

/// An answer of the check to `device`, as the gateway stores it: its
/// `portal_*` signal as the rule.
pub fn check(ts_ms: i64, device: &str, outcome: &str) -> StoredEvent {
    let (action, status) = match outcome {
        "portal_failed" => ("refuse", 403),
        "portal_limited" => ("throttle", 429),
        _ => ("pass", 200),
    };
    StoredEvent {
        action: action.into(),
        status,
        path: "/.portcullis/verify".into(),
        device_id: Some(device.into()),
        rule: Some(outcome.into()),
        ..pass(ts_ms, 1)
    }
}

/// Two minutes of a route's challenges and the check's answers: in the
/// first, `coupon` challenges four devices (one twice): one solves, one is
/// limited, one fails, one never comes; in the second, one device whose
/// clearance comes after the window and a scanner that solves.
pub fn challenges() -> Vec<StoredEvent> {
    let mut scanner = challenged(T0 + 61_000, "coupon", "dev-s");
    scanner.class = "scanner".into();
    let mut scanner_solved = check(T0 + 62_000, "dev-s", "portal_solved");
    scanner_solved.class = "scanner".into();
    vec![
        challenged(T0 + 1_000, "coupon", "dev-a"),
        challenged(T0 + 2_000, "coupon", "dev-a"),
        challenged(T0 + 3_000, "coupon", "dev-b"),
        challenged(T0 + 4_000, "coupon", "dev-c"),
        challenged(T0 + 5_000, "coupon", "dev-d"),
        check(T0 + 6_000, "dev-a", "portal_issued"),
        check(T0 + 7_000, "dev-a", "portal_solved"),
        check(T0 + 8_000, "dev-b", "portal_limited"),
        check(T0 + 9_000, "dev-c", "portal_issued"),
        check(T0 + 10_000, "dev-c", "portal_failed"),
        challenged(T0 + 65_000, "coupon", "dev-e"),
        check(T0 + 300_000, "dev-e", "portal_solved"),
        scanner,
        scanner_solved,
    ]
}

/// The solve rate of [`challenges`] over its two minutes, with a window
/// of two minutes.
pub fn solve_rate_of(store: &dyn EventStore, exclude_class: Option<&str>) -> Vec<ChallengeMinute> {
    store
        .solve_rate(&SolveRateQuery {
            from_ms: T0,
            to_ms: T0 + 120_000,
            window_ms: 120_000,
            exclude_class: exclude_class.map(Into::into),
        })
        .unwrap()
}

/// 60 events over 3 minutes: passes, blocks from one IP, a scanner,
/// a challenged device with a cid and an account on a named route.
pub fn sample() -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for n in 0..60 {
        let ts = T0 + (n as i64) * 3_000;
        let mut e = match n % 6 {
            0 => blocked(ts, n, "sqli"),
            1 => StoredEvent {
                class: "scanner".into(),
                client_ip: "203.0.113.9".into(),
                ..blocked(ts, n, "bad_utf8")
            },
            2 => StoredEvent {
                action: "challenge".into(),
                layer: Some("policy".into()),
                cid: Some(format!("cid-{n}")),
                device_id: Some("dev-1".into()),
                account_id: Some("acct-7".into()),
                route: Some("coupon".into()),
                risk_rank: Some(3),
                rule: Some("rank-band-3".into()),
                device_risk_rank: Some(2),
                reasons: vec!["new_device".into(), "ip_datacenter".into()],
                ..pass(ts, n)
            },
            _ => pass(ts, n),
        };
        if n % 6 == 0 {
            e.client_ip = "198.51.100.1".into();
            e.route = Some("login".into());
        }
        events.push(e);
    }
    events
}

/// Counted clean passes in the sample's first two minutes: a new address
/// that outranks every stored one, more for an address the sample blocks,
/// a device and a crawler's account.
pub fn sample_tally() -> PassTally {
    let minute = minute_of(T0);
    let mut t = PassTally::default();
    t.add_passes(minute, "normal", 30);
    t.add_passes(minute + 1, "normal", 10);
    t.add_passes(minute + 1, "crawler", 5);
    let keys = [
        (minute, TopField::ClientIp, "192.0.2.50", "normal", 30),
        (minute + 1, TopField::ClientIp, "198.51.100.1", "normal", 7),
        (minute + 1, TopField::Device, "dev-1", "normal", 3),
        (minute + 1, TopField::Account, "acct-9", "crawler", 5),
    ];
    for (m, field, key, class, n) in keys {
        assert!(t.add_key(m, field, key.into(), class, n, 100));
    }
    t
}

/// What a [`HookedStore`] does before each write: wait at a gate, fail as
/// an unreachable database ...
pub trait BeforeWrite: Send + Sync {
    fn before_write(&self) -> Result<(), StoreError>;
}

/// A SQLite store whose writes pass `hook` first; reads go straight through.
pub struct HookedStore<H> {
    pub inner: SqliteStore,
    pub hook: H,
}

impl<H: BeforeWrite> EventStore for HookedStore<H> {
    fn write_batch(&self, events: &[StoredEvent]) -> Result<usize, StoreError> {
        self.hook.before_write()?;
        self.inner.write_batch(events)
    }
    fn write_tally(&self, tally: &PassTally) -> Result<(), StoreError> {
        self.hook.before_write()?;
        self.inner.write_tally(tally)
    }
    fn search(&self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.search(f)
    }
    fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get(id)
    }
    fn rollups(&self, q: &RollupQuery) -> Result<Vec<Series>, StoreError> {
        self.inner.rollups(q)
    }
    fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        self.inner.top(q)
    }
    fn trial(&self, q: &TrialQuery) -> Result<Vec<TrialCount>, StoreError> {
        self.inner.trial(q)
    }
    fn solve_rate(&self, q: &SolveRateQuery) -> Result<Vec<ChallengeMinute>, StoreError> {
        self.inner.solve_rate(q)
    }
    fn retention_step(&self, p: &Retention, now: i64) -> Result<Pruned, StoreError> {
        self.inner.retention_step(p, now)
    }
}
