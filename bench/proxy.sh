#!/usr/bin/env bash
# Proxy throughput in one sitting: the origin directly, nginx as a plain
# reverse proxy, and Portcullis with its default protections, in alternating
# rounds with wrk. Prints requests/s and p99 per target (medians over the
# rounds) and the ratios to nginx. wrk, proxies and origin share this
# machine's cores, so read the ratios rather than the absolute numbers.
#
#   bench/proxy.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s)
#
# PORTCULLIS_BIN=path runs that binary instead of building this tree's
# (to compare two builds); CONNS sets wrk's connections (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${CONNS:-64}
ORIGIN_PORT=18581 NGINX_PORT=18582 PC_PORT=18583 PC_ADMIN=18584

command -v wrk >/dev/null && command -v nginx >/dev/null || ./scripts/setup.sh
source bench/lib.sh
gateway_bin
# nginx as a plain reverse proxy of the origin.
start_nginx auto "
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"

# In the scratch directory: the event store (portcullis.db) starts empty.
(cd "$work" && exec "$BIN" run --listen 127.0.0.1:$PC_PORT --admin 127.0.0.1:$PC_ADMIN \
  --upstream http://127.0.0.1:$ORIGIN_PORT >"$work/pc.out" 2>"$work/pc.err") &
PC_PID=$!
PIDS+=("$PC_PID")
wait_http "http://127.0.0.1:$PC_PORT/"

# A mobile client's usual headers, the same for every target.
HDRS=(-H "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
      -H "Accept: application/json" -H "Accept-Language: zh-CN,zh;q=0.9")
URL_PATH="/api/v1/items?page=2&sort=price&q=red+shoes"

# CPU time (clock ticks) of nginx (origin and proxy) and Portcullis, every
# thread: what a request costs whatever else the machine runs, unlike req/s.
cpu_ticks() {
  local total=0 pid
  for pid in $(cat "$work/nginx.pid") $(pgrep -P "$(cat "$work/nginx.pid")") $PC_PID; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

declare -A RPS P99 CPU
for round in $(seq "$ROUNDS"); do
  for target in origin:$ORIGIN_PORT nginx:$NGINX_PORT portcullis:$PC_PORT; do
    name=${target%%:*}; port=${target##*:}
    before=$(cpu_ticks)
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "${HDRS[@]}" "http://127.0.0.1:$port$URL_PATH")
    ticks=$(($(cpu_ticks) - before))
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(python3 -c "print(f'{$ticks / $HZ * 1e6 / max($requests, 1):.1f}')")
    CPU[$name]+="$cpu "
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    RPS[$name]+="$rps "; P99[$name]+="$p99 "
    echo "round $round $name: $rps req/s, p99 $p99, CPU $cpu us/request${non2xx:+, non-2xx $non2xx}"
  done
done

# CPU per request is nginx's and Portcullis's together; less the origin
# round's, it is what the proxy adds (wrk's own CPU is not counted).
python3 - "${RPS[origin]}" "${RPS[nginx]}" "${RPS[portcullis]}" "${P99[origin]}" "${P99[nginx]}" "${P99[portcullis]}" \
  "${CPU[origin]}" "${CPU[nginx]}" "${CPU[portcullis]}" <<'PY'
import statistics, sys
def ms(v):
    v = v.strip()
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
names = ["origin", "nginx", "portcullis"]
rps = {n: statistics.median(map(float, a.split())) for n, a in zip(names, sys.argv[1:4])}
p99 = {n: statistics.median(map(ms, a.split())) for n, a in zip(names, sys.argv[4:7])}
cpu = {n: statistics.median(map(float, a.split())) for n, a in zip(names, sys.argv[7:10])}
print(f"\n{'target':<12}{'req/s (median)':>16}{'p99 ms':>10}{'vs nginx':>10}{'CPU us/req':>12}{'proxy CPU us/req':>18}")
for n in names:
    added = "" if n == "origin" else f"{cpu[n] - cpu['origin']:.1f}"
    print(f"{n:<12}{rps[n]:>16.0f}{p99[n]:>10.2f}{rps[n] / rps['nginx']:>10.2f}{cpu[n]:>12.1f}{added:>18}")
added = {n: cpu[n] - cpu["origin"] for n in ("nginx", "portcullis")}
if added["portcullis"] > 0:
    print(f"\nPortcullis adds {added['portcullis'] / max(added['nginx'], 0.1):.2f}x the CPU per request nginx adds as a proxy")
PY
