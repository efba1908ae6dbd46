//! A circuit breaker: after enough consecutive failures the shared backend
//! is not asked at all (answers are local, immediate) until a probe succeeds.
//!
//! Pure state on atomics; the probe that closes the circuit lives with the
//! backend, which knows how to ask its server.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    consecutive: AtomicU32,
    open: AtomicBool,
    outages: AtomicU64,
    failures: AtomicU64,
}

impl Breaker {
    /// A breaker that opens after `threshold` consecutive failures, starting open
    /// or closed.
    pub(crate) fn new(threshold: u32, open: bool) -> Self {
        Breaker {
            threshold: threshold.max(1),
            consecutive: AtomicU32::new(0),
            open: AtomicBool::new(open),
            outages: AtomicU64::new(u64::from(open)),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether calls may go to the backend.
    pub(crate) fn allows(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    pub(crate) fn success(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Records a failed call; `true` when this failure opened the circuit.
    pub(crate) fn failure(&self) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if consecutive >= self.threshold && !self.open.swap(true, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The probe succeeded and the node has resynced.
    pub(crate) fn close(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }

    pub(crate) fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Breaker;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = Breaker::new(3, false);
        assert!(!b.failure());
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.allows());
        assert!(b.failure(), "third consecutive failure opens");
        assert!(!b.allows());
        assert!(!b.failure(), "already open");
        assert_eq!((b.outages(), b.failures()), (1, 6));
        b.close();
        assert!(b.allows());
    }

    #[test]
    fn a_node_that_starts_without_its_backend_starts_open() {
        let b = Breaker::new(3, true);
        assert!(!b.allows());
        assert_eq!(b.outages(), 1);
    }
}
