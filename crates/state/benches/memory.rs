//! Cost of one rate-limit decision on the in-memory backend (budget: < 1 µs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_state::{Gcra, MemoryStore, MemoryStoreOptions, StateStore};

fn rate_limit(c: &mut Criterion) {
    let store = MemoryStore::new(MemoryStoreOptions::default());
    let limit = Gcra::per_second(10.0, 10);
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("rl:ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let mut i = 0;
    c.bench_function("memory_rate_limit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let fut = store.rate_limit(&keys[i], limit, 1);
            black_box(poll_ready(fut))
        })
    });
}

/// The memory backend never awaits, so one poll completes its futures.
fn poll_ready<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("memory store futures are always ready"),
    }
}

criterion_group!(benches, rate_limit);
criterion_main!(benches);
