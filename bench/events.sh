#!/usr/bin/env bash
# Event pipeline throughput: the proxy driven at full speed with wrk while
# every request produces a decision event, with the event store off and on
# (SQLite, WAL), in alternating rounds. Prints the proxy's requests/s both
# ways, the events written per second into SQLite during the rounds, the
# events dropped, and the writer's capacity (events written per second of
# time spent writing). wrk, the proxy, the origin (nginx) and the writer
# share this machine's cores.
#
#   bench/events.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s)
#   PORTCULLIS_BIN=path/to/portcullis bench/events.sh   (skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${CONNS:-64}
ORIGIN_PORT=18681 OFF_PORT=18682 OFF_ADMIN=18683 ON_PORT=18684 ON_ADMIN=18685
TOKEN=bench-events-admin-token-0123456789

command -v wrk >/dev/null && command -v nginx >/dev/null || ./scripts/setup.sh
source bench/lib.sh
gateway_bin
start_nginx 1

# Both gateways log no JSON lines and send an event for every request
# (log_passed); one keeps no store, the other writes every event to SQLite.
gateway() { # NAME PORT ADMIN STORE_ENABLED
  cat > "$work/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
admin = "127.0.0.1:$3"
[events]
log = false
log_passed = true
[store]
enabled = $4
path = "$work/$1-events.db"
[console]
path = "$work/$1-console.db"
[[upstreams]]
url = "http://127.0.0.1:$ORIGIN_PORT"
CONF
  PORTCULLIS_ADMIN_TOKEN=$TOKEN "$BIN" run --config "$work/$1.toml" >"$work/$1.out" 2>"$work/$1.err" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$2/" || { echo "gateway $1 did not start:"; cat "$work/$1.err"; exit 1; }
}
gateway off $OFF_PORT $OFF_ADMIN false
gateway on $ON_PORT $ON_ADMIN true

metric() { # ADMIN NAME
  curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/metrics" | awk -v n="portcullis_$2_total" '$1==n {print $2}'
}

HDRS=(-H "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
      -H "Accept: application/json" -H "Accept-Language: zh-CN,zh;q=0.9")
URL_PATH="/api/v1/items?page=2&sort=price&q=red+shoes"

OFF="" ON="" WRITTEN="" DROPPED=0 BUSY=0 TOTAL=0
for round in $(seq "$ROUNDS"); do
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "${HDRS[@]}" "http://127.0.0.1:$OFF_PORT$URL_PATH")
  off=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")

  w0=$(metric $ON_ADMIN store_events_written); d0=$(metric $ON_ADMIN store_events_dropped)
  q0=$(metric $ON_ADMIN events_dropped); b0=$(metric $ON_ADMIN store_write_microseconds)
  start=$(date +%s.%N)
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "${HDRS[@]}" "http://127.0.0.1:$ON_PORT$URL_PATH")
  on=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  sent=$(awk '/requests in/ {print $1}' <<<"$out")
  sleep 0.5  # the last batch
  elapsed=$(python3 -c "import time; print(time.time() - $start)")
  w1=$(metric $ON_ADMIN store_events_written); d1=$(metric $ON_ADMIN store_events_dropped)
  q1=$(metric $ON_ADMIN events_dropped); b1=$(metric $ON_ADMIN store_write_microseconds)
  written=$((w1 - w0)); dropped=$((d1 - d0 + q1 - q0))
  eps=$(python3 -c "print(f'{$written / $elapsed:.0f}')")
  OFF+="$off " ON+="$on " WRITTEN+="$eps "
  DROPPED=$((DROPPED + dropped)); BUSY=$((BUSY + b1 - b0)); TOTAL=$((TOTAL + written))
  echo "round $round: store off $off req/s; store on $on req/s, $sent requests, $written events written ($eps/s), $dropped dropped"
done

python3 - "$OFF" "$ON" "$WRITTEN" "$DROPPED" "$BUSY" "$TOTAL" <<'PY'
import statistics, sys
off = statistics.median(map(float, sys.argv[1].split()))
on = statistics.median(map(float, sys.argv[2].split()))
eps = statistics.median(map(float, sys.argv[3].split()))
dropped, busy_us, total = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
capacity = total / (busy_us / 1e6) if busy_us else 0
print(f"\nproxy req/s, store off (median): {off:>10.0f}")
print(f"proxy req/s, store on  (median): {on:>10.0f}   ({on / off:.2f}x)")
print(f"events written into SQLite/s   : {eps:>10.0f}   (median over the rounds)")
print(f"events dropped                 : {dropped:>10}")
print(f"writer capacity (events per second of writing): {capacity:.0f}")
PY
