#!/usr/bin/env bash
# Proxy throughput in one sitting: the origin directly, nginx as a plain
# reverse proxy, and Portcullis with its default protections, in alternating
# rounds with wrk. Prints requests/s and p99 per target (medians over the
# rounds), the ratios to nginx, and what each proxy's own processes spent
# per request: user and system CPU µs and context switches. wrk, proxies
# and origin share this machine's cores, so read the ratios and the CPU
# per request rather than the absolute numbers. The last column is the
# origin's own CPU per request behind each target.
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
start_nginx auto
# nginx as a plain reverse proxy of the origin, in an instance of its own.
start_nginx_proxy proxy auto "
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

# The processes whose CPU a target's round counts: the origin's for the
# origin, each proxy's own otherwise.
processes() {
  local master
  case $1 in
    origin) master=$(cat "$work/nginx.pid") ;;
    nginx) master=$(cat "$work/proxy/nginx.pid") ;;
    portcullis) echo "$PC_PID"; return ;;
  esac
  echo "$master" $(pgrep -P "$master")
}
HZ=$(getconf CLK_TCK)

# The origin's CPU is read in every round too: how a proxy batches the
# origin's wake-ups changes what the origin spends per request.
declare -A RPS P99 USER SYS SWITCHES BEHIND
origin_pids=$(processes origin)
for round in $(seq "$ROUNDS"); do
  for target in origin:$ORIGIN_PORT nginx:$NGINX_PORT portcullis:$PC_PORT; do
    name=${target%%:*}; port=${target##*:}
    pids=$(processes "$name")
    read -r user0 sys0 switches0 < <(proc_cpu $pids)
    read -r ouser0 osys0 _ < <(proc_cpu $origin_pids)
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "${HDRS[@]}" "http://127.0.0.1:$port$URL_PATH")
    read -r user1 sys1 switches1 < <(proc_cpu $pids)
    read -r ouser1 osys1 _ < <(proc_cpu $origin_pids)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    read -r user sys switches behind < <(python3 -c "n = max($requests, 1); t = 1e6 / $HZ / n
print(f'{($user1 - $user0) * t:.1f} {($sys1 - $sys0) * t:.1f} {($switches1 - $switches0) / n:.2f} {($ouser1 - $ouser0 + $osys1 - $osys0) * t:.1f}')")
    USER[$name]+="$user "; SYS[$name]+="$sys "; SWITCHES[$name]+="$switches "; BEHIND[$name]+="$behind "
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    RPS[$name]+="$rps "; P99[$name]+="$p99 "
    echo "round $round $name: $rps req/s, p99 $p99, CPU user $user + system $sys us/request, $switches switches/request, origin $behind us/request${non2xx:+, non-2xx $non2xx}"
  done
done

python3 - "${RPS[origin]}" "${RPS[nginx]}" "${RPS[portcullis]}" "${P99[origin]}" "${P99[nginx]}" "${P99[portcullis]}" \
  "${USER[origin]}" "${USER[nginx]}" "${USER[portcullis]}" "${SYS[origin]}" "${SYS[nginx]}" "${SYS[portcullis]}" \
  "${SWITCHES[origin]}" "${SWITCHES[nginx]}" "${SWITCHES[portcullis]}" \
  "${BEHIND[origin]}" "${BEHIND[nginx]}" "${BEHIND[portcullis]}" <<'PY'
import statistics, sys
def ms(v):
    v = v.strip()
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
names = ["origin", "nginx", "portcullis"]
def medians(args, parse=float):
    return {n: statistics.median(map(parse, a.split())) for n, a in zip(names, args)}
rps, p99 = medians(sys.argv[1:4]), medians(sys.argv[4:7], ms)
user, system, switches = medians(sys.argv[7:10]), medians(sys.argv[10:13]), medians(sys.argv[13:16])
behind = medians(sys.argv[16:19])
print(f"\n{'target':<12}{'req/s (median)':>16}{'p99 ms':>9}{'vs nginx':>10}{'user us/req':>13}{'sys us/req':>12}{'switches/req':>14}{'origin us/req':>15}")
for n in names:
    print(f"{n:<12}{rps[n]:>16.0f}{p99[n]:>9.2f}{rps[n] / rps['nginx']:>10.2f}{user[n]:>13.1f}{system[n]:>12.1f}{switches[n]:>14.2f}{behind[n]:>15.1f}")
cpu = {n: user[n] + system[n] for n in ("nginx", "portcullis")}
print(f"\nPortcullis spends {cpu['portcullis'] / max(cpu['nginx'], 0.1):.2f}x the CPU per request of nginx as a proxy"
      f" (user {user['portcullis'] / max(user['nginx'], 0.1):.2f}x, system {system['portcullis'] / max(system['nginx'], 0.1):.2f}x)")
PY
