#!/usr/bin/env bash
# Three gateway nodes on this machine, sharing state in Redis and events in
# PostgreSQL, against the same three nodes on the in-memory state backend
# (events in PostgreSQL both ways), in alternating rounds. wrk drives each
# node on its own connections at once (no load balancer). Prints, per
# backend: req/s and p50 / p99 per node and in total (medians over the
# rounds), and per request: the state round trips and commands the nodes
# sent (portcullis_state_backend{name="round_trips"|"commands"}: request
# path only, background flushes apart) and the commands Redis executed
# (INFO commandstats, which also counts the calls inside Lua scripts).
#
# wrk, six gateways, redis-server, PostgreSQL and the nginx origin share
# this machine's cores: read the ratios rather than the absolute numbers.
#
#   bench/cluster.sh [ROUNDS] [SECONDS]          (defaults: 3 rounds of 10 s)
#   PORTCULLIS_BIN=path/to/portcullis bench/cluster.sh   (skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-16}                 # per node
BASE=${BASE_PORT:-18900}
ORIGIN_PORT=$BASE REDIS_PORT=$((BASE + 1)) PG_PORT=$((BASE + 2))
TOKEN=bench-cluster-admin-token-0123456789

for tool in wrk nginx redis-server redis-cli; do
  command -v "$tool" >/dev/null || ./scripts/setup.sh
done
# The server's programs (Debian keeps them in a versioned directory).
PG_BIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
source bench/lib.sh
gateway_bin
# PostgreSQL stops on SIGINT and needs a moment before its files go.
more_cleanup() {
  [ -f "$work/pg/data/postmaster.pid" ] && kill -INT "$(head -1 "$work/pg/data/postmaster.pid")" 2>/dev/null || true
  sleep 0.5
}

# --- the origin
start_nginx 1

# --- Redis: security state must never be evicted
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$work" >"$work/logs/redis.log" 2>&1 &
PIDS+=($!)

# --- PostgreSQL (PostgreSQL refuses root: run as nobody then)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown nobody "$work/pg"
as_pg "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 --locale=C -D "$work/pg/data" >/dev/null
as_pg "$PG_BIN/postgres" -D "$work/pg/data" -p "$PG_PORT" -k "$work/pg" \
  -c listen_addresses=127.0.0.1 -c max_connections=200 >"$work/logs/pg.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
  sleep 0.1
done
for db in memory redis; do
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $db" >/dev/null
done

# --- three nodes per backend
node_config() { # BACKEND
  cat <<CONF
[events]
log = false
[store]
backend = "postgres"
url = "postgres://postgres@127.0.0.1:$PG_PORT/$1"
[console]
enabled = true
[state]
backend = "$1"
nodes = 3
[state.redis]
urls = ["redis://127.0.0.1:$REDIS_PORT"]
# One GCRA cell per client address on every request, as a real
# deployment's limits would; high enough never to refuse.
[[rate_limits]]
name = "per-ip"
path = "/"
key = ["ip"]
rate = 1000000
burst = 1000000
CONF
}
declare -A NODE_PORT NODE_ADMIN
n=0
for backend in memory redis; do
  node_config "$backend" > "$work/$backend.toml"
  for i in 1 2 3; do
    n=$((n + 1))
    port=$((BASE + 10 + 2 * n)) admin=$((BASE + 11 + 2 * n))
    NODE_PORT[$backend$i]=$port NODE_ADMIN[$backend$i]=$admin
    PORTCULLIS_ADMIN_TOKEN=$TOKEN PORTCULLIS_LOG=warn "$BIN" run --config "$work/$backend.toml" \
      --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" \
      --upstream "http://127.0.0.1:$ORIGIN_PORT" >/dev/null 2>"$work/logs/$backend$i.err" &
    PIDS+=($!)
  done
done
for name in "${!NODE_PORT[@]}"; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:${NODE_PORT[$name]}/" && break; sleep 0.1; done
done

backend_metric() { # BACKEND NAME: portcullis_state_backend{name=NAME} over the three nodes
  local total=0 v
  for i in 1 2 3; do
    v=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${NODE_ADMIN[$1$i]}/metrics" |
      awk -v want="portcullis_state_backend{name=\"$2\"}" '$1 == want {print $2}')
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
redis_calls() { redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,]' '/^cmdstat_/ {s += $2} END {print s + 0}'; }

HDRS=(-H "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
      -H "Accept: application/json" -H "x-pc-device: bench-device-1")
URL_PATH="/api/v1/items?page=2&sort=price"
RESULTS="$work/results"
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for backend in memory redis; do
    rt0=$(backend_metric "$backend" round_trips) sent0=$(backend_metric "$backend" commands)
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    WRK=()
    for i in 1 2 3; do
      wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${HDRS[@]}" \
        "http://127.0.0.1:${NODE_PORT[$backend$i]}$URL_PATH" > "$work/wrk.$i" &
      WRK+=($!)
    done
    wait "${WRK[@]}"
    rt1=$(backend_metric "$backend" round_trips) sent1=$(backend_metric "$backend" commands)
    calls=$(redis_calls)
    requests=0
    for i in 1 2 3; do
      out=$(cat "$work/wrk.$i")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      reqs=$(awk '/requests in/ {print $1}' <<<"$out")
      non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
      requests=$((requests + reqs))
      echo "round $round $backend node$i: $rps req/s, p50 $p50, p99 $p99${non2xx:+, non-2xx $non2xx}"
      echo "$backend node$i $rps $p50 $p99" >> "$RESULTS"
    done
    [ "$backend" = redis ] || calls=0
    echo "$backend round $round: $requests requests, $((rt1 - rt0)) state round trips," \
      "$((sent1 - sent0)) commands sent, $calls commands executed by Redis"
    echo "$backend totals $requests $((rt1 - rt0)) $calls $((sent1 - sent0))" >> "$RESULTS"
  done
done

python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rows = collections.defaultdict(lambda: collections.defaultdict(list))
totals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f[1] == "totals":
        totals[f[0]].append(tuple(map(int, f[2:6])))
    else:
        rows[f[0]][f[1]].append((float(f[2]), ms(f[3]), ms(f[4])))
print(f"\n{'backend':<8}{'node':<7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
total_rps = {}
for backend in ("memory", "redis"):
    total_rps[backend] = 0
    for node, runs in sorted(rows[backend].items()):
        rps = statistics.median(r[0] for r in runs)
        total_rps[backend] += rps
        print(f"{backend:<8}{node:<7}{rps:>9.0f}{statistics.median(r[1] for r in runs):>9.2f}"
              f"{statistics.median(r[2] for r in runs):>9.2f}")
    print(f"{backend:<8}{'total':<7}{total_rps[backend]:>9.0f}")
requests = sum(t[0] for t in totals["redis"])
trips = sum(t[1] for t in totals["redis"])
calls = sum(t[2] for t in totals["redis"])
sent = sum(t[3] for t in totals["redis"])
print(f"\nredis vs memory throughput: {total_rps['redis'] / total_rps['memory']:.2f}x")
if requests:
    print(f"redis, per request ({requests} requests): {trips / requests:.2f} round trips, "
          f"{sent / requests:.2f} commands sent, {calls / requests:.2f} executed by Redis (Lua calls included)")
def latency(backend, i):
    return statistics.median(statistics.median(r[i] for r in runs) for runs in rows[backend].values())
print(f"added latency with Redis (median over nodes): p50 {latency('redis', 1) - latency('memory', 1):+.2f} ms, "
      f"p99 {latency('redis', 2) - latency('memory', 2):+.2f} ms")
PY
