//! The package quota (QPS x bandwidth) and per-route quotas, as lock-free
//! GCRA cells local to this node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_config::QuotaConfig;
use portcullis_state::{Gcra, RateDecision};

/// One GCRA cell updated with compare-and-swap, shared by all workers.
pub struct AtomicCell {
    limit: Gcra,
    tat: AtomicU64,
    epoch: Instant,
}

impl AtomicCell {
    pub fn new(limit: Gcra) -> Self {
        AtomicCell {
            limit,
            tat: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Spends `cost`; a cost of 0 only asks whether the cell is in debt.
    pub fn spend(&self, cost: u32) -> RateDecision {
        let now = self.now_ns();
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let (decision, new_tat) = self.limit.spend(current, now, cost);
            if new_tat == current {
                return decision;
            }
            match self.tat.compare_exchange_weak(
                current,
                new_tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return decision,
                Err(seen) => current = seen,
            }
        }
    }

    /// Charges usage after the fact (bytes already sent), allowed or not.
    pub fn charge(&self, cost: u32) {
        let now = self.now_ns();
        let add = self
            .limit
            .emission_interval_ns
            .saturating_mul(u64::from(cost));
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(add))
            });
    }
}

/// Bandwidth is charged per KiB so that even 10 Gbit/s keeps a whole-nanosecond interval.
const BANDWIDTH_UNIT: u64 = 1024;

/// The compiled quota section.
pub struct Quota {
    qps: Option<AtomicCell>,
    bandwidth: Option<AtomicCell>,
    routes: Vec<(String, AtomicCell)>,
    pub status: u16,
}

/// A quota refusal: which quota, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub which: &'static str,
    pub retry_after: Duration,
}

impl Quota {
    pub fn new(config: &QuotaConfig) -> Self {
        // One second of burst: the package is sold per second.
        let per_second =
            |rate: f64| AtomicCell::new(Gcra::per_second(rate, rate.ceil().max(1.0) as u32));
        Quota {
            qps: config.qps.map(per_second),
            bandwidth: config.bandwidth_mbps.map(|mbps| {
                let units_per_s = mbps * 1e6 / 8.0 / BANDWIDTH_UNIT as f64;
                per_second(units_per_s)
            }),
            routes: config
                .routes
                .iter()
                .map(|r| (r.path_prefix.clone(), per_second(r.qps)))
                .collect(),
            status: config.status.unwrap_or(429),
        }
    }

    /// Admits one request to `path`, or says which quota refused it.
    pub fn admit(&self, path: &str) -> Result<(), QuotaExceeded> {
        let refuse = |which, d: RateDecision| QuotaExceeded {
            which,
            retry_after: d.retry_after,
        };
        if let Some(cell) = &self.bandwidth {
            let d = cell.spend(0);
            if !d.allowed {
                return Err(refuse("bandwidth", d));
            }
        }
        if let Some(cell) = &self.qps {
            let d = cell.spend(1);
            if !d.allowed {
                return Err(refuse("qps", d));
            }
        }
        for (prefix, cell) in &self.routes {
            if path.starts_with(prefix.as_str()) {
                let d = cell.spend(1);
                if !d.allowed {
                    return Err(refuse("route_qps", d));
                }
            }
        }
        Ok(())
    }

    pub fn meters_bandwidth(&self) -> bool {
        self.bandwidth.is_some()
    }

    /// Charges body bytes that went through.
    pub fn charge_bytes(&self, bytes: u64) {
        if let Some(cell) = &self.bandwidth {
            let units = bytes.div_ceil(BANDWIDTH_UNIT);
            cell.charge(u32::try_from(units).unwrap_or(u32::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_config::RouteQuota;

    #[test]
    fn qps_quota_allows_one_second_of_burst() {
        let quota = Quota::new(&QuotaConfig {
            qps: Some(100.0),
            ..QuotaConfig::default()
        });
        let admitted = (0..300).filter(|_| quota.admit("/").is_ok()).count();
        assert!((100..=102).contains(&admitted), "{admitted}");
    }

    #[test]
    fn bandwidth_debt_refuses_new_requests() {
        let quota = Quota::new(&QuotaConfig {
            bandwidth_mbps: Some(8.0), // 1 MB/s
            ..QuotaConfig::default()
        });
        assert!(quota.admit("/").is_ok());
        quota.charge_bytes(3_000_000);
        let refused = quota.admit("/").unwrap_err();
        assert_eq!(refused.which, "bandwidth");
        assert!(
            refused.retry_after > Duration::from_millis(1500),
            "{refused:?}"
        );
    }

    #[test]
    fn route_quota_applies_to_its_prefix_only() {
        let quota = Quota::new(&QuotaConfig {
            routes: vec![RouteQuota {
                path_prefix: "/api/vote".into(),
                qps: 2.0,
            }],
            ..QuotaConfig::default()
        });
        let votes = (0..10)
            .filter(|_| quota.admit("/api/vote/1").is_ok())
            .count();
        assert_eq!(votes, 2);
        assert!(quota.admit("/api/other").is_ok());
    }
}
