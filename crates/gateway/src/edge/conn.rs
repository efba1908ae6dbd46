//! Connection caps: global and per client address, released when the
//! connection ends.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Counts open connections. The per-address table holds only addresses with
/// an open connection, so it is bounded by the global cap.
#[derive(Default)]
pub struct ConnLimiter {
    open: AtomicUsize,
    per_ip: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
    hasher: foldhash::fast::FixedState,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefused {
    Global,
    PerIp,
}

impl ConnRefused {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnRefused::Global => "global_cap",
            ConnRefused::PerIp => "per_ip_cap",
        }
    }
}

/// Releases its slot on drop.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.per_ip[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max_global: usize,
        max_per_ip: usize,
    ) -> Result<ConnGuard, ConnRefused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= max_global {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnRefused::Global);
        }
        let mut shard = self.shard(&ip).lock();
        let count = shard.entry(ip).or_insert(0);
        if *count as usize >= max_per_ip {
            drop(shard);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnRefused::PerIp);
        }
        *count += 1;
        Ok(ConnGuard {
            limiter: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut shard = self.limiter.shard(&self.ip).lock();
        if let Some(count) = shard.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&self.ip);
            }
        }
        drop(shard);
        self.limiter.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_release() {
        let limiter = Arc::new(ConnLimiter::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = limiter.try_acquire(a, 3, 2).unwrap();
        let _g2 = limiter.try_acquire(a, 3, 2).unwrap();
        assert_eq!(limiter.try_acquire(a, 3, 2).err(), Some(ConnRefused::PerIp));
        let _g3 = limiter.try_acquire(b, 3, 2).unwrap();
        assert_eq!(
            limiter.try_acquire(b, 3, 2).err(),
            Some(ConnRefused::Global)
        );
        drop(g1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(a, 3, 2).is_ok());
    }
}
