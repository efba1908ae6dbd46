//! The server's eviction policy, checked at start. Bans, nonces, revocations
//! and challenge markers all carry a TTL, so every policy but `noeviction`
//! (the `volatile-*` ones included) may drop them when the server is full:
//! a flood of fresh keys would then lift bans and re-open spent nonces.
//! With `noeviction` a full server refuses writes instead, which the backend
//! reports as a full security tier.

use redis::Value;

/// The only policy under which Redis never drops a key to make room.
pub const SAFE_POLICY: &str = "noeviction";

/// Why the backend refuses to start on a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvictionError {
    #[error(
        "Redis at {server} runs with maxmemory-policy {policy}: it may evict bans, nonces and \
         revocations when memory is full, and a flood of new keys would lift bans. Set \
         `maxmemory-policy noeviction` on the server (redis.conf or CONFIG SET), or accept the \
         risk with `[state.redis] allow_eviction = true`"
    )]
    Evicting { server: String, policy: String },
}

/// `maxmemory_policy` from the text of `INFO memory`.
pub(crate) fn policy_of(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
}

/// The text of an `INFO` reply, whatever the protocol version sent.
pub(crate) fn info_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `Err` when `policy` may drop keys.
pub(crate) fn check(server: &str, policy: &str) -> Result<(), EvictionError> {
    if policy == SAFE_POLICY {
        return Ok(());
    }
    Err(EvictionError::Evicting {
        server: server.to_owned(),
        policy: policy.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_policy_and_only_noeviction_passes() {
        let info =
            "# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\nmaxmemory_policy:volatile-lru\r\n";
        assert_eq!(policy_of(info), Some("volatile-lru"));
        assert_eq!(policy_of("# Memory\r\nused_memory:1\r\n"), None);
        assert!(check("s", "noeviction").is_ok());
        for evicting in [
            "allkeys-lru",
            "volatile-ttl",
            "allkeys-random",
            "volatile-lfu",
        ] {
            let error = check("s", evicting).unwrap_err().to_string();
            assert!(
                error.contains(evicting) && error.contains("allow_eviction"),
                "{error}"
            );
        }
    }
}
