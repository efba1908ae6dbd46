//! The flood from issue 12: a ban, then 1.1 million new device and account
//! keys against tiers capped at one million. The ban must still hold.

use std::time::Duration;

use portcullis_state::{Gcra, MemoryStore, MemoryStoreOptions, StateStore, Tier};

#[tokio::test]
async fn a_flood_of_new_keys_does_not_lift_a_ban() {
    let store = MemoryStore::new(MemoryStoreOptions {
        capacity: 1_000_000,
        limits_capacity: 1_000_000,
        ..MemoryStoreOptions::default()
    });
    let ban = Duration::from_secs(600);
    store
        .put("ban:ip:127.0.0.3", b"rate_limit", ban)
        .await
        .expect("ban");
    store
        .put_if_absent("pc:n:kid:seen", b"", ban)
        .await
        .expect("nonce");
    let minute = Duration::from_secs(120);
    let limit = Gcra::per_second(10.0, 10);
    for i in 0..1_100_000u32 {
        // Each request of the flood carries a new device and account.
        store
            .incr(&format!("rk:v:dv:1:dev-{i}"), 1, minute)
            .await
            .expect("counter");
        if i % 2 == 0 {
            store
                .rate_limit(&format!("rl:acct:acct-{i}"), limit, 1)
                .await
                .expect("cell");
        }
    }
    let bans = store.scan_prefix("ban:", 10).await.expect("scan");
    assert_eq!(bans.len(), 1, "the ban is still there");
    assert_eq!(
        store.get("ban:ip:127.0.0.3").await,
        Ok(Some(b"rate_limit".to_vec()))
    );
    assert_eq!(
        store.put_if_absent("pc:n:kid:seen", b"", ban).await,
        Ok(false),
        "the nonce is still remembered"
    );
    let stats = store.tier_stats();
    let of = |tier| stats.iter().find(|s| s.tier == tier).expect("tier");
    assert!(
        of(Tier::Features).evictions >= 100_000,
        "{:?}",
        of(Tier::Features)
    );
    assert!(of(Tier::Features).entries <= 1_000_000);
    assert_eq!(of(Tier::Bans).entries, 1);
    assert_eq!(of(Tier::Bans).evictions, 0);
}
