//! Redis key names: every key carries a hash tag naming its subject (the
//! address, device, account or clearance it is about), so that in a cluster
//! the keys of one subject share a slot and a request's commands about one
//! subject go to one node in one pipeline. Every script touches one key, or
//! keys under one tag, so no script ever crosses slots.

use crate::Tier;

/// The subject of a store key: what its hash tag names.
pub(crate) fn subject(key: &str) -> &str {
    // (prefix, fields before the subject, fields in the subject's kind)
    let fields: Vec<&str> = key.splitn(5, ':').collect();
    match fields.as_slice() {
        ["rl" | "rlv" | "throttle", _, rest @ ..] if !rest.is_empty() => tail(key, 2),
        ["rlb", ..] => tail(key, 1),
        ["pc", "rl" | "revoked" | "env" | "c" | "k", ..] => tail(key, 2),
        // The nonce's clearance key id: one clearance's nonces stay together.
        ["pc", "n", keyid, ..] => keyid,
        // Velocity buckets of one id share a slot: `rk:v:<kind>:<minute>:<id>`.
        ["rk", "v", _, _, _] | ["rk", "apd" | "dpa", _, _, _] => tail(key, 4),
        ["rk", "fs", _, ..] => tail(key, 3),
        _ => key,
    }
}

/// `key` after its first `n` colon-separated fields (the rest may hold colons).
fn tail(key: &str, n: usize) -> &str {
    key.splitn(n + 1, ':').nth(n).unwrap_or(key)
}

/// The Redis name of a store key: `<prefix>:{<subject>}:<key>`.
pub(crate) fn redis_key(prefix: &str, key: &str) -> String {
    let subject = subject(key).replace(['{', '}'], "_");
    let mut out = String::with_capacity(prefix.len() + subject.len() + key.len() + 4);
    out.push_str(prefix);
    out.push_str(":{");
    out.push_str(&subject);
    out.push_str("}:");
    out.push_str(key);
    out
}

/// The hash tag of a Redis key built by [`redis_key`] or [`mirror_keys`].
pub(crate) fn tag_of(redis_key: &str) -> &str {
    let start = redis_key.find('{').map_or(0, |i| i + 1);
    let end = redis_key[start..]
        .find('}')
        .map_or(redis_key.len(), |i| start + i);
    &redis_key[start..end]
}

/// The index (sorted set by expiry) and values (hash) of a mirrored tier:
/// one tag per tier, so a whole tier loads in one call.
pub(crate) fn mirror_keys(prefix: &str, tier: Tier) -> (String, String) {
    (
        format!("{prefix}:{{{tier}}}:index"),
        format!("{prefix}:{{{tier}}}:values"),
    )
}

/// The pub/sub channel announcing changes to mirrored tiers.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}:invalidate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_subject_share_a_tag() {
        for (key, subject_) in [
            ("rl:api:1.2.3.4", "1.2.3.4"),
            ("rl:vote:dev-a", "dev-a"),
            ("rlv:login:2001:db8::1", "2001:db8::1"),
            ("rlb:2001:db8::1", "2001:db8::1"),
            ("pc:rl:10.0.0.1", "10.0.0.1"),
            ("throttle:bot:10.0.0.1", "10.0.0.1"),
            ("pc:n:kid:nonce", "kid"),
            ("pc:revoked:cid1", "cid1"),
            ("rk:v:dv:29000001:dev-a", "dev-a"),
            ("rk:v:dv:29000000:dev-a", "dev-a"),
            ("rk:fs:dv:dev-a", "dev-a"),
            ("rk:apd:7:40:dev-a", "dev-a"),
            ("other", "other"),
        ] {
            assert_eq!(subject(key), subject_, "{key}");
        }
        let k = redis_key("pc", "rl:api:{x}");
        assert_eq!(k, "pc:{_x_}:rl:api:{x}");
        assert_eq!(tag_of(&k), "_x_");
        assert_eq!(tag_of(&mirror_keys("pc", Tier::Bans).0), "bans");
    }
}
