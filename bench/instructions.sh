#!/usr/bin/env bash
# User-space instructions per request of the gateway, counted by callgrind
# (valgrind): the same count whatever else the machine is doing, so two
# builds compare within a percent where wall-clock rounds on a shared
# 2-core VM swing by ten. The request is bench/proxy.sh's, with the
# gateway's defaults; wrk drives it for a warm-up, then the counters are
# zeroed and a measured run follows. Kernel time is not counted (see
# bench/proxy.sh for system CPU).
#
#   bench/instructions.sh [SECONDS] [BINARY...]   (default: 10 s, this tree's build)
#
# Prints, per binary: requests, instructions, instructions per request,
# and the call-graph file (`callgrind_annotate --inclusive=yes FILE`
# shows where they go).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
shift || true
ORIGIN_PORT=18591 PC_PORT=18593 PC_ADMIN=18594

command -v valgrind >/dev/null || apt-get install -y -qq valgrind
command -v wrk >/dev/null && command -v nginx >/dev/null || ./scripts/setup.sh
source bench/lib.sh
if [ $# -eq 0 ]; then
  gateway_bin
  set -- "$BIN"
fi
start_nginx 1

HDRS=(-H "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
      -H "Accept: application/json" -H "Accept-Language: zh-CN,zh;q=0.9")
URL="http://127.0.0.1:$PC_PORT/api/v1/items?page=2&sort=price&q=red+shoes"

for bin in "$@"; do
  bin=$(realpath "$bin")
  run="$work/run-$(basename "$bin")-$RANDOM"
  mkdir -p "$run"
  (cd "$run" && exec valgrind --tool=callgrind --callgrind-out-file="$run/callgrind.out" \
    "$bin" run --listen 127.0.0.1:$PC_PORT --admin 127.0.0.1:$PC_ADMIN \
    --upstream http://127.0.0.1:$ORIGIN_PORT >"$run/pc.out" 2>"$run/pc.err") &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$PC_PORT/" && break
    sleep 0.2
  done
  wrk -t1 -c8 -d5s "${HDRS[@]}" "$URL" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  wrk -t1 -c8 -d"${SECS}s" "${HDRS[@]}" "$URL" >"$run/wrk.txt"
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  requests=$(grep -oE '^ *[0-9]+ requests' "$run/wrk.txt" | grep -oE '[0-9]+')
  # The dump after the zeroing holds the measured run alone.
  instructions=$(awk '/^summary:/ {print $2}' "$run/callgrind.out.1")
  kept="${TMPDIR:-/tmp}/portcullis-callgrind-$(basename "$bin")-$$.out"
  cp "$run/callgrind.out.1" "$kept"
  echo "$bin: $requests requests, $instructions instructions, $((instructions / requests)) per request ($kept)"
done
