//! One rate-limit decision on the in-memory state: rule matching, key
//! building and the GCRA cell (budget: < 1 µs).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_limits::{RateLimits, RequestFacts};
use portcullis_state::{MemoryStore, MemoryStoreOptions};

fn decision(c: &mut Criterion) {
    let config = portcullis_config::Config::parse(
        "[[rate_limits]]\nname = \"api\"\npath = \"/api/\"\nkey = [\"ip\"]\nrate = 10\nburst = 10\n\
         [[rate_limits]]\nname = \"vote\"\npath = \"/api/*/vote\"\nmethods = [\"POST\"]\nkey = [\"device\"]\nrate = 1\nburst = 3\n",
    )
    .expect("valid");
    let limits = RateLimits::new(&config.rate_limits);
    let state = MemoryStore::new(MemoryStoreOptions::default());
    let ips: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes()))
        .collect();
    let devices: Vec<String> = (0..1_000).map(|i| format!("dev-{i:08x}")).collect();
    let mut i = 0usize;
    c.bench_function("rate_limit_decision_two_rules", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let facts = RequestFacts {
                host: "api.example.com",
                path: "/api/42/vote",
                method: "POST",
                ip: ips[i % ips.len()],
                device: Some(&devices[i % devices.len()]),
                account: None,
            };
            black_box(poll_ready(limits.check(&state, &facts)))
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

criterion_group!(benches, decision);
criterion_main!(benches);
