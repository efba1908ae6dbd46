//! The generic cell rate algorithm: one timestamp per key, no timers.
//!
//! A cell stores its theoretical arrival time (TAT). A request costing `n`
//! is allowed when, after moving the TAT forward by `n` emission intervals,
//! it is no further ahead of now than `burst` intervals.

use std::time::Duration;

/// A rate with a burst, as emission interval and tolerance in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    pub emission_interval_ns: u64,
    /// How far ahead of now the TAT may run: `burst` emission intervals.
    pub tolerance_ns: u64,
}

/// The outcome of spending from a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// When refused: how long until the same cost would be allowed.
    pub retry_after: Duration,
    /// Requests of cost 1 still allowed right now.
    pub remaining: u64,
}

impl Gcra {
    /// `rate` requests per second, of which `burst` may come at once.
    pub fn per_second(rate: f64, burst: u32) -> Gcra {
        let emission_interval_ns = if rate > 0.0 {
            (1e9 / rate).clamp(1.0, u64::MAX as f64) as u64
        } else {
            u64::MAX / 4
        };
        Gcra {
            emission_interval_ns,
            tolerance_ns: emission_interval_ns.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// This node's share of the limit when `nodes` nodes each enforce it
    /// alone (the shared backend is down): the rate and the burst divided by
    /// `nodes`, the burst at least one request.
    pub fn per_node(&self, nodes: u32) -> Gcra {
        let nodes = u64::from(nodes.max(1));
        let burst = (self.tolerance_ns / self.emission_interval_ns.max(1)).max(1);
        let emission_interval_ns = self.emission_interval_ns.saturating_mul(nodes);
        Gcra {
            emission_interval_ns,
            tolerance_ns: emission_interval_ns.saturating_mul((burst / nodes).max(1)),
        }
    }

    /// Spends `cost` at `now_ns` from a cell whose TAT is `tat_ns` (0 for a new cell).
    /// Returns the decision and the TAT to store (unchanged when refused).
    pub fn spend(&self, tat_ns: u64, now_ns: u64, cost: u32) -> (RateDecision, u64) {
        let start = tat_ns.max(now_ns);
        let new_tat =
            start.saturating_add(self.emission_interval_ns.saturating_mul(u64::from(cost)));
        let ahead = new_tat - now_ns;
        if ahead <= self.tolerance_ns {
            let room = self.tolerance_ns - ahead;
            let decision = RateDecision {
                allowed: true,
                retry_after: Duration::ZERO,
                remaining: room / self.emission_interval_ns.max(1),
            };
            (decision, new_tat)
        } else {
            let decision = RateDecision {
                allowed: false,
                retry_after: Duration::from_nanos(ahead - self.tolerance_ns),
                remaining: 0,
            };
            (decision, tat_ns)
        }
    }

    /// How long a cell with this TAT must be kept: after it, it is as good as new.
    pub fn ttl(&self, tat_ns: u64, now_ns: u64) -> Duration {
        Duration::from_nanos(tat_ns.saturating_sub(now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let limit = Gcra::per_second(10.0, 10);
        let mut tat = 0;
        let now = 1_000_000_000;
        let allowed = (0..20)
            .filter(|_| {
                let (d, t) = limit.spend(tat, now, 1);
                tat = t;
                d.allowed
            })
            .count();
        assert_eq!(allowed, 10);
        // 100 ms later one more token has accrued.
        let (d, _) = limit.spend(tat, now + 100_000_000, 1);
        assert!(d.allowed);
    }

    #[test]
    fn refusal_says_when_to_retry() {
        let limit = Gcra::per_second(1.0, 1);
        let (first, tat) = limit.spend(0, 5_000_000_000, 1);
        assert!(first.allowed);
        let (second, tat2) = limit.spend(tat, 5_000_000_000, 1);
        assert!(!second.allowed);
        assert_eq!(tat2, tat, "a refusal does not spend");
        assert_eq!(second.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn per_node_share_divides_rate_and_burst() {
        let limit = Gcra::per_second(32.0, 9).per_node(4);
        assert_eq!(limit, Gcra::per_second(8.0, 2));
        let tiny = Gcra::per_second(2.0, 1).per_node(4);
        assert_eq!(tiny, Gcra::per_second(0.5, 1));
        assert_eq!(limit.per_node(1), limit);
    }

    #[test]
    fn cost_larger_than_burst_is_never_allowed() {
        let limit = Gcra::per_second(100.0, 5);
        let (d, _) = limit.spend(0, 1, 6);
        assert!(!d.allowed);
    }
}
