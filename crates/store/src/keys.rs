//! The time-bucketed key index: how events are found by request id,
//! client IP, cid, device or account without a random-key B-tree per column.
//!
//! A B-tree index on a high-cardinality column (random request ids, IPs,
//! devices) dirties about one page per inserted row once it outgrows a batch,
//! so five such indexes made writes slow down as the database grew. Instead,
//! each event adds one `(bucket, key, id)` row per present key to one table
//! whose primary key starts with a 10-second time bucket: a batch only
//! touches the current bucket's few pages. A lookup probes the buckets of its
//! time range newest first (one B-tree seek each) and re-checks the column,
//! since `key` is a 64-bit hash.

use crate::StoredEvent;

/// Width of a key bucket.
pub const KEY_BUCKET_MS: i64 = 10_000;

/// Which column a key comes from (part of the hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    RequestId = 1,
    ClientIp = 2,
    Cid = 3,
    Device = 4,
    Account = 5,
}

impl KeyKind {
    /// The events column holding this key.
    pub fn column(self) -> &'static str {
        match self {
            KeyKind::RequestId => "request_id",
            KeyKind::ClientIp => "client_ip",
            KeyKind::Cid => "cid",
            KeyKind::Device => "device_id",
            KeyKind::Account => "account_id",
        }
    }
}

/// The bucket of a timestamp.
pub fn bucket_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(KEY_BUCKET_MS)
}

/// FNV-1a over the kind and the value: stable across builds and backends.
pub fn key_hash(kind: KeyKind, value: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let bytes = std::iter::once(kind as u8).chain(value.bytes());
    let hash = bytes.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The keys an event is found by.
pub fn keys_of(e: &StoredEvent) -> impl Iterator<Item = (KeyKind, &str)> {
    [
        (KeyKind::RequestId, Some(e.request_id.as_str())),
        (KeyKind::ClientIp, Some(e.client_ip.as_str())),
        (KeyKind::Cid, e.cid.as_deref()),
        (KeyKind::Device, e.device_id.as_deref()),
        (KeyKind::Account, e.account_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(kind, value)| value.filter(|v| !v.is_empty()).map(|v| (kind, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_kind_specific() {
        assert_eq!(key_hash(KeyKind::Cid, "abc"), key_hash(KeyKind::Cid, "abc"));
        assert_ne!(
            key_hash(KeyKind::Cid, "abc"),
            key_hash(KeyKind::Device, "abc")
        );
        // Pinned: stored hashes must never change.
        assert_eq!(key_hash(KeyKind::RequestId, ""), -5_808_592_057_526_012_372);
    }

    #[test]
    fn buckets_and_present_keys() {
        assert_eq!(bucket_of(19_999), 1);
        assert_eq!(bucket_of(-1), -1);
        let e = StoredEvent {
            request_id: "r".into(),
            client_ip: "1.2.3.4".into(),
            cid: Some("c".into()),
            device_id: Some(String::new()),
            ..StoredEvent::default()
        };
        let kinds: Vec<KeyKind> = keys_of(&e).map(|(k, _)| k).collect();
        assert_eq!(kinds, [KeyKind::RequestId, KeyKind::ClientIp, KeyKind::Cid]);
    }
}
