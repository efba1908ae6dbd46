#!/usr/bin/env bash
# Rate limits under load: 10 000 client addresses (through a trusted proxy's
# X-Forwarded-For) and 1 000 devices hammer a route limited per device. The
# origin counts what it accepted per device; each device's accepted rate
# should be within ±5% of the limit (rate x seconds + burst). Also prints the
# gateway's resident memory before and after.
#
#   bench/ratelimit.sh [SECONDS] [RATE] [BURST]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
RATE=${2:-2}
BURST=${3:-5}
ORIGIN=127.0.0.1:18591 PC=127.0.0.1:18593 ADMIN=127.0.0.1:18594

command -v wrk >/dev/null || ./scripts/setup.sh
cargo build --release -p portcullis
cargo build --release -p portcullis-gateway --example counting_origin

work=$(mktemp -d)
cleanup() { kill "${PC_PID:-}" "${ORIGIN_PID:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/portcullis.toml" <<CONF
[server]
listen = "$PC"
admin = "$ADMIN"
[events]
log = false
[client_ip]
trusted_proxies = ["127.0.0.1/32"]
[[upstreams]]
url = "http://$ORIGIN"
[[rate_limits]]
name = "vote-per-device"
path = "/api/vote"
key = ["device"]
rate = $RATE
burst = $BURST
CONF

./target/release/examples/counting_origin "$ORIGIN" "$work/counts.json" x-pc-device &
ORIGIN_PID=$!
./target/release/portcullis check --config "$work/portcullis.toml" >/dev/null
./target/release/portcullis run --config "$work/portcullis.toml" 2>"$work/pc.err" &
PC_PID=$!
for _ in $(seq 50); do curl -fs "http://$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$PC_PID/status"; }
RSS_BEFORE=$(rss)

cat > "$work/load.lua" <<'LUA'
-- 10 000 addresses and 1 000 devices, chosen at random for each request.
math.randomseed(os.time())
request = function()
  local ip = math.random(0, 9999)
  local headers = {
    ["X-Forwarded-For"] = string.format("10.%d.%d.%d", 1 + math.floor(ip / 65536), math.floor(ip / 256) % 256, ip % 256),
    ["X-PC-Device"] = string.format("device-%04d", math.random(0, 999)),
    ["User-Agent"] = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0",
    ["Accept"] = "application/json",
    ["Accept-Language"] = "zh-CN",
  }
  return wrk.format("POST", "/api/vote", headers, "{}")
end
LUA
wrk -t2 -c64 -d"${SECS}s" -s "$work/load.lua" "http://$PC" | tee "$work/wrk.out" | sed -n '1,12p'
RSS_AFTER=$(rss)
kill -TERM "$ORIGIN_PID"; wait "$ORIGIN_PID" 2>/dev/null || true

python3 - "$work/counts.json" "$SECS" "$RATE" "$BURST" "$RSS_BEFORE" "$RSS_AFTER" <<'PY'
import json, statistics, sys
counts = json.load(open(sys.argv[1]))
secs, rate, burst = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
expected = rate * secs + burst
ratios = sorted(c / expected for k, c in counts.items() if k.startswith("device-"))
within = sum(1 for r in ratios if abs(r - 1) <= 0.05)
print(f"\ndevices seen: {len(ratios)}; expected per device: {expected:.0f} accepted")
print(f"accepted / expected: min {ratios[0]:.3f}  median {statistics.median(ratios):.3f}  max {ratios[-1]:.3f}")
print(f"devices within ±5%: {within} of {len(ratios)} ({100 * within / len(ratios):.1f}%)")
print(f"gateway RSS: {int(sys.argv[5]) // 1024} MiB before, {int(sys.argv[6]) // 1024} MiB after")
PY
