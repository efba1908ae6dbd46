//! One risk assessment over a realistic mix of requests (budget: p99 < 20 µs).
//! Prints per-call p50 / p99 first (timer overhead included and shown), then
//! criterion's mean over the same mix, then one feature gathering on the
//! in-memory state (for comparison: it is I/O on a network backend).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group};
use portcullis_config::RiskConfig;
use portcullis_risk::{
    ChallengeState, DeviceFacts, DeviceFlags, FeatureKeys, IpType, RiskEngine, RiskInput,
    SignalRef, Velocity, Windows,
};
use portcullis_state::{MemoryStore, MemoryStoreOptions};

const AUTOMATION: &[SignalRef<'static>] = &[
    SignalRef {
        name: "automation",
        weight: 30,
        evidence: "python-requests/2.31",
    },
    SignalRef {
        name: "browser_headers_missing",
        weight: 10,
        evidence: "accept-language",
    },
    SignalRef {
        name: "rate_limit",
        weight: 30,
        evidence: "coupon-per-ip",
    },
];

const ATTACK: &[SignalRef<'static>] = &[
    SignalRef {
        name: "scanner",
        weight: 40,
        evidence: "Tencent Security Team",
    },
    SignalRef {
        name: "sqli",
        weight: 5,
        evidence: "942100 query.live_id: ')) AND (SELECT*FROM(SELECT(SLEEP(4)))",
    },
    SignalRef {
        name: "sqli",
        weight: 3,
        evidence: "942200 query.action: eval",
    },
    SignalRef {
        name: "bad_utf8",
        weight: 100,
        evidence: "query: bf 27",
    },
];

const UNSIGNED: &[SignalRef<'static>] = &[SignalRef {
    name: "signature_missing",
    weight: 30,
    evidence: "",
}];

fn phone(platform: &'static str) -> RiskInput<'static> {
    RiskInput {
        velocity: Velocity {
            ip: 6,
            device: 4,
            account: 4,
            route: 900,
        },
        device: Some(DeviceFacts {
            platform,
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
            d7: 2,
            d30: 2,
        },
        challenge: ChallengeState::Passed { age_s: 300 },
        established: true,
        ..RiskInput::default()
    }
}

/// Ten requests: mostly ordinary users, some scripts, a farm, an attack.
fn mix() -> Vec<RiskInput<'static>> {
    let farm = RiskInput {
        new_device: true,
        accounts_per_device: Windows {
            d1: 30,
            d7: 41,
            d30: 41,
        },
        device: Some(DeviceFacts {
            platform: "android",
            flags: DeviceFlags::EMULATOR.union(DeviceFlags::HOOK),
            risk_at_issue: 2,
        }),
        ..phone("android")
    };
    let script = RiskInput {
        signals: AUTOMATION,
        ip_type: IpType::Datacenter,
        velocity: Velocity {
            ip: 400,
            route: 900,
            ..Velocity::default()
        },
        traffic_class: "automation",
        ..RiskInput::default()
    };
    let scanner = RiskInput {
        signals: ATTACK,
        traffic_class: "scanner",
        ..RiskInput::default()
    };
    let new_user = RiskInput {
        new_device: true,
        new_account: true,
        ip_type: IpType::Proxy,
        challenge: ChallengeState::None,
        signals: UNSIGNED,
        ..phone("ios")
    };
    let rotating = RiskInput {
        route_new_identities: 900,
        route_requests: 1_100,
        accounts_per_device_session: 3,
        established: false,
        ..phone("android")
    };
    let unproven = RiskInput {
        device_unproven: true,
        signals: UNSIGNED,
        challenge: ChallengeState::None,
        ..phone("android")
    };
    vec![
        phone("ios"),
        phone("android"),
        rotating,
        unproven,
        phone("ios"),
        phone("ohos"),
        phone("android"),
        phone("windows"),
        new_user,
        script,
        farm,
        scanner,
    ]
}

fn percentiles(engine: &RiskEngine, inputs: &[RiskInput<'static>]) {
    const CALLS: usize = 200_000;
    let mut timer = Vec::with_capacity(CALLS);
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let t = Instant::now();
        timer.push(t.elapsed().as_nanos());
        let input = &inputs[i % inputs.len()];
        let t = Instant::now();
        black_box(engine.assess(black_box(input)));
        samples.push(t.elapsed().as_nanos());
    }
    timer.sort_unstable();
    samples.sort_unstable();
    let at = |v: &[u128], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "risk assess, {CALLS} calls over a mix of {}: p50 {} ns, p99 {} ns, p99.9 {} ns \
         (an empty timed section: p50 {} ns, p99 {} ns)",
        inputs.len(),
        at(&samples, 0.50),
        at(&samples, 0.99),
        at(&samples, 0.999),
        at(&timer, 0.50),
        at(&timer, 0.99),
    );
}

fn assess(c: &mut Criterion) {
    let engine = RiskEngine::new(&RiskConfig::default()).expect("defaults are valid");
    let inputs = mix();
    percentiles(&engine, &inputs);
    let mut i = 0usize;
    c.bench_function("risk_assess_mix", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(engine.assess(black_box(&inputs[i % inputs.len()])))
        })
    });
}

fn gather(c: &mut Criterion) {
    let state = MemoryStore::new(MemoryStoreOptions::default());
    let devices: Vec<String> = (0..1_000).map(|i| format!("dev-{i:08x}")).collect();
    let accounts: Vec<String> = (0..5_000).map(|i| format!("acct-{i}")).collect();
    let start = SystemTime::now();
    let mut i = 0usize;
    c.bench_function("features_gather_memory_store", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let keys = FeatureKeys {
                ip: IpAddr::from(u32::try_from(i % 10_000).unwrap_or(0).to_be_bytes()),
                device: Some(&devices[i % devices.len()]),
                account: Some(&accounts[i % accounts.len()]),
                route: "/api/coupon",
                path: "POST /api/coupon/claim",
                cid: None,
                proven_device: true,
                count: true,
                session: Duration::from_secs(4 * 3600),
                route_history: Duration::from_secs(10),
                clearance_issued_ms: None,
            };
            let now = start + Duration::from_millis(i as u64);
            black_box(poll_ready(portcullis_risk::gather(&state, &keys, now)))
        })
    });
}

/// The memory backend never awaits, so one poll completes its futures.
fn poll_ready<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

criterion_group!(benches, assess, gather);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
