//! Lua scripts run by the Redis backend. Each touches one key, or keys of
//! one hash tag, and reads time from the server (`TIME`) so every node shares
//! one clock. Times are in microseconds (exact in Lua's doubles until 2255).

use redis::Script;

/// GCRA on one cell. KEYS[1]: the cell (its TAT in µs). ARGV: emission
/// interval µs, tolerance µs, cost. Returns {allowed, retry_after µs, remaining}.
pub(crate) const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_tat = math.max(tat, now) + interval * tonumber(ARGV[3])
local ahead = new_tat - now
if ahead <= tolerance then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil(ahead / 1000)))
  return {1, 0, math.floor((tolerance - ahead) / interval)}
end
return {0, ahead - tolerance, 0}
";

/// A counter that expires `ttl` after its creation (a fixed window).
/// KEYS[1]: the counter. ARGV: delta, ttl ms. Returns the new value.
pub(crate) const INCR: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
";

/// A capped set. KEYS[1]: the set. ARGV: cap, ttl ms, members...
/// Adds members while the set is below the cap, keeps the longest expiry,
/// returns the cardinality.
pub(crate) const SET_ADD: &str = r"
local cap = tonumber(ARGV[1])
for i = 3, #ARGV do
  if redis.call('SCARD', KEYS[1]) < cap then redis.call('SADD', KEYS[1], ARGV[i]) end
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SCARD', KEYS[1])
";

/// Drops expired members of a mirrored tier (KEYS[1] index, KEYS[2] values).
const PURGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(old) do redis.call('ZREM', KEYS[1], m); redis.call('HDEL', KEYS[2], m) end
";

/// Puts into a mirrored tier. ARGV: member, value, ttl ms, cap, channel.
/// Returns 1, or -1 when the tier is full. Announces the change.
pub(crate) fn mirror_put() -> String {
    format!(
        "{PURGE}
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1"
    )
}

/// Deletes from a mirrored tier. ARGV: member, channel. Returns 1 when it was live.
pub(crate) fn mirror_delete() -> String {
    format!(
        "{PURGE}
local live = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return live"
    )
}

/// Lists a mirrored tier. ARGV: limit, and optionally one member.
/// Returns a flat array: member, value, ttl ms, ...
pub(crate) fn mirror_list() -> String {
    format!(
        "{PURGE}
local members
if ARGV[2] then members = {{ARGV[2]}} else members = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'LIMIT', 0, tonumber(ARGV[1])) end
local out = {{}}
for _, m in ipairs(members) do
  local until_ms = redis.call('ZSCORE', KEYS[1], m)
  local v = redis.call('HGET', KEYS[2], m)
  if until_ms and v and tonumber(until_ms) > now then
    out[#out + 1] = m; out[#out + 1] = v; out[#out + 1] = tonumber(until_ms) - now
  end
end
return out"
    )
}

/// Every script, for loading after a `NOSCRIPT` answer.
pub(crate) struct Scripts {
    pub incr: Script,
    pub gcra: Script,
    pub set_add: Script,
    pub mirror_put: Script,
    pub mirror_delete: Script,
    pub mirror_list: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            incr: Script::new(INCR),
            gcra: Script::new(GCRA),
            set_add: Script::new(SET_ADD),
            mirror_put: Script::new(&mirror_put()),
            mirror_delete: Script::new(&mirror_delete()),
            mirror_list: Script::new(&mirror_list()),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 6] {
        [
            &self.incr,
            &self.gcra,
            &self.set_add,
            &self.mirror_put,
            &self.mirror_delete,
            &self.mirror_list,
        ]
    }
}
