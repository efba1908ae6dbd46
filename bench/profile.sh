#!/usr/bin/env bash
# A CPU profile of the release gateway with its defaults under wrk (the
# request and headers of bench/proxy.sh), as text: `perf report` of the
# hottest functions, self time and with their callees; folded stacks for a
# flame graph (flamegraph.pl or speedscope read them); and summary.txt, the
# share of the gateway's CPU under each of its own functions, hyper's and
# the kernel's entry points, by thread (bench/fold.py).
#
#   bench/profile.sh [SECONDS] [OUT_DIR]     (defaults: 15 s, bench/results/profile)
#
# PORTCULLIS_BIN=path profiles that binary instead of building this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
OUT=${2:-bench/results/profile}
CONNS=${CONNS:-64}
ORIGIN_PORT=18591 PC_PORT=18593 PC_ADMIN=18594

command -v wrk >/dev/null && command -v nginx >/dev/null || ./scripts/setup.sh
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
source bench/lib.sh
gateway_bin
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
start_nginx 1
(cd "$work" && exec "$BIN" run --listen 127.0.0.1:$PC_PORT --admin 127.0.0.1:$PC_ADMIN \
  --upstream http://127.0.0.1:$ORIGIN_PORT >"$work/pc.out" 2>"$work/pc.err") &
PC_PID=$!
PIDS+=("$PC_PID")
wait_http "http://127.0.0.1:$PC_PORT/"

HDRS=(-H "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
      -H "Accept: application/json" -H "Accept-Language: zh-CN,zh;q=0.9")
URL="http://127.0.0.1:$PC_PORT/api/v1/items?page=2&sort=price&q=red+shoes"

wrk -t2 -c"$CONNS" -d"$((SECS + 4))s" "${HDRS[@]}" "$URL" >"$work/wrk.txt" &
WRK_PID=$!
sleep 2
perf record -F 999 -g --call-graph dwarf,16384 -p "$PC_PID" -o "$work/perf.data" -- sleep "$SECS" \
  >/dev/null 2>"$work/perf.err"
wait "$WRK_PID"

# perf pads its columns to the longest name: trailing blanks and the empty
# IPC column are cut.
report() {
  perf report -i "$work/perf.data" --stdio --no-header --percent-limit "$1" "${@:2}" 2>/dev/null |
    sed -E 's/ +- +- *$//; s/ +$//' | cut -c1-220
}
{
  echo "# bench/profile.sh $SECS: perf record -F 999 -g --call-graph dwarf -p <gateway> under"
  echo "# wrk -t2 -c$CONNS $URL (defaults: detection, JSON log, SQLite store)"
  grep -E "requests in|Requests/sec" "$work/wrk.txt" | sed 's/^/# /'
  echo "#"
  echo "# Self time by thread and function (perf report --no-children --sort comm,symbol):"
  report 0.7 --no-children --sort comm,symbol -g none
} >"$OUT/top-self.txt"
{
  echo "# Time with callees (perf report --children --sort symbol), top entries:"
  report 2 --children --sort symbol -g none
} >"$OUT/top-children.txt"
perf script -i "$work/perf.data" 2>/dev/null >"$work/script.txt"
python3 bench/fold.py "$work/script.txt" "$OUT"
echo "profile in $OUT: summary.txt, top-self.txt, top-children.txt, folded.txt"
cat "$OUT/summary.txt"
