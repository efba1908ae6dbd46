//! Temporary bans on client addresses.
//!
//! The shared state holds the bans (so every node of a cluster sees them);
//! each node keeps a local copy, refreshed every second and on every change
//! it makes itself, so the request path checks a ban without a lock or a
//! round trip.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_state::{StateResult, StateStore};
use serde::Serialize;

const PREFIX: &str = "ban:ip:";
/// Bans copied locally at most; beyond it the oldest-expiring are not seen
/// until others expire (and a metric would show the table full).
const MAX_LOCAL: usize = 100_000;
/// How often the local copy is refreshed from the shared state.
pub const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ban {
    pub ip: IpAddr,
    pub reason: String,
    /// Unix seconds when the ban ends.
    pub until: u64,
}

pub struct Bans {
    state: Arc<dyn StateStore>,
    local: ArcSwap<HashMap<IpAddr, Ban>>,
}

fn now_secs() -> u64 {
    crate::context::now_ms() / 1000
}

impl Bans {
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Bans {
            state,
            local: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The reason an address is banned, if it is.
    pub fn check(&self, ip: IpAddr) -> Option<String> {
        let local = self.local.load();
        if local.is_empty() {
            return None;
        }
        local
            .get(&ip)
            .filter(|ban| ban.until > now_secs())
            .map(|ban| ban.reason.clone())
    }

    pub async fn ban(&self, ip: IpAddr, ttl: Duration, reason: &str) -> StateResult<Ban> {
        let key = format!("{PREFIX}{ip}");
        self.state.put(&key, reason.as_bytes(), ttl).await?;
        self.refresh().await?;
        Ok(Ban {
            ip,
            reason: reason.to_string(),
            until: now_secs() + ttl.as_secs(),
        })
    }

    /// Lifts a ban; `true` when there was one.
    pub async fn lift(&self, ip: IpAddr) -> StateResult<bool> {
        let existed = self.state.delete(&format!("{PREFIX}{ip}")).await?;
        self.refresh().await?;
        Ok(existed)
    }

    pub fn list(&self) -> Vec<Ban> {
        let now = now_secs();
        let mut bans: Vec<Ban> = self
            .local
            .load()
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        bans.sort_by_key(|b| b.until);
        bans
    }

    /// Rebuilds the local copy from the shared state.
    pub async fn refresh(&self) -> StateResult<()> {
        let now = now_secs();
        let found = self.state.scan_prefix(PREFIX, MAX_LOCAL).await?;
        let local = found
            .into_iter()
            .filter_map(|(key, reason, ttl)| {
                let ip = key.strip_prefix(PREFIX)?.parse().ok()?;
                let ban = Ban {
                    ip,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                    until: now + ttl.as_secs().max(1),
                };
                Some((ip, ban))
            })
            .collect();
        self.local.store(Arc::new(local));
        Ok(())
    }

    /// Keeps the local copy fresh (run on the control runtime).
    pub async fn keep_fresh(self: Arc<Self>) {
        loop {
            tokio::time::sleep(REFRESH).await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "ban refresh failed; using the last copy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_state::{MemoryStore, MemoryStoreOptions};

    #[tokio::test]
    async fn ban_check_list_lift() {
        let bans = Bans::new(Arc::new(MemoryStore::new(MemoryStoreOptions::default())));
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(bans.check(ip), None);
        bans.ban(ip, Duration::from_secs(60), "credential stuffing")
            .await
            .unwrap();
        assert_eq!(bans.check(ip).as_deref(), Some("credential stuffing"));
        assert_eq!(bans.list().len(), 1);
        assert!(bans.lift(ip).await.unwrap());
        assert_eq!(bans.check(ip), None);
    }

    #[tokio::test]
    async fn bans_expire() {
        let bans = Bans::new(Arc::new(MemoryStore::new(MemoryStoreOptions::default())));
        let ip: IpAddr = "2001:db8::9".parse().unwrap();
        bans.ban(ip, Duration::from_millis(1100), "test")
            .await
            .unwrap();
        assert!(bans.check(ip).is_some());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(bans.check(ip), None);
    }
}
