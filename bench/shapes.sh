#!/usr/bin/env bash
# Real-world shapes, Portcullis (its defaults) against nginx as a plain
# reverse proxy, in the same run and against the same nginx origin, with
# the request and headers of bench/proxy.sh:
#
#   c1        HTTP/1.1, one client at a time: p50 and p99 (wrk -c1)
#   c1000     1,000 keep-alive connections: req/s and p99
#   close     a new connection per request (Connection: close): req/s
#   tls-new   TLS 1.3 full handshakes per second (openssl s_time -new)
#   tls-reuse TLS 1.3 on resumed sessions, one request each: req/s (s_time -reuse)
#   h2        HTTP/2, 100 streams per connection (h2load -m 100): req/s
#
#   bench/shapes.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 5 s)
#
# Rounds alternate the two proxies; the figures are medians. PORTCULLIS_BIN
# runs that binary instead of building this tree's; SHAPES="c1 h2" runs
# only those shapes; PC_EXTRA is TOML appended to the gateway's
# configuration (e.g. PC_EXTRA=$'[store]\nenabled = false'). h2load comes
# from Debian's nghttp2-client (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
SHAPES=${SHAPES:-c1 c1000 close tls-new tls-reuse h2}
ORIGIN_PORT=18601 NGINX_PORT=18602 NGINX_TLS=18603 NGINX_H2C=18604
PC_PORT=18605 PC_TLS=18606 PC_ADMIN=18607

command -v wrk >/dev/null && command -v nginx >/dev/null || ./scripts/setup.sh
if [[ " $SHAPES " == *" h2 "* ]] && ! command -v h2load >/dev/null; then
  apt-get install -y nghttp2-client >/dev/null
fi
ulimit -n 65536 2>/dev/null || true
source bench/lib.sh
gateway_bin

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
# nginx as a proxy of the origin, in an instance of its own (as the gateway
# is a process of its own): plain, TLS 1.3 with HTTP/2, cleartext HTTP/2.
start_nginx auto
start_nginx_proxy proxy auto "
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 128; }
  proxy_http_version 1.1;
  proxy_set_header Connection \"\";
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_protocols TLSv1.3;
  ssl_session_cache shared:TLS:10m;
  server { listen 127.0.0.1:$NGINX_PORT backlog=4096; location / { proxy_pass http://origin; } }
  server { listen 127.0.0.1:$NGINX_TLS ssl http2 backlog=4096; location / { proxy_pass http://origin; } }
  server { listen 127.0.0.1:$NGINX_H2C http2 backlog=4096; location / { proxy_pass http://origin; } }"

cat > "$work/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$PC_PORT"
admin = "127.0.0.1:$PC_ADMIN"
[server.tls]
listen = "127.0.0.1:$PC_TLS"
cert = "$work/cert.pem"
key = "$work/key.pem"
[limits]
max_connections = 60000
max_connections_per_ip = 60000
[[upstreams]]
url = "http://127.0.0.1:$ORIGIN_PORT"
${PC_EXTRA:-}
CONF
(cd "$work" && exec "$BIN" run --config "$work/portcullis.toml" >"$work/pc.out" 2>"$work/pc.err") &
PIDS+=($!)
wait_http "http://127.0.0.1:$PC_PORT/"

UA="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
HDRS=(-H "User-Agent: $UA" -H "Accept: application/json" -H "Accept-Language: zh-CN,zh;q=0.9")
URL_PATH="/api/v1/items?page=2&sort=price&q=red+shoes"

# wrk's latency percentile in ms, and its req/s.
pct() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}'; }
rps() { awk '/^Requests\/sec/ {print $2}'; }

# TLS 1.3 connections per second of wall time, from TLS_CLIENTS parallel
# openssl s_time clients (each runs its connections one after another).
TLS_CLIENTS=${TLS_CLIENTS:-4}
tls_rate() {
  local port=$1 i started total=0
  shift
  started=$(date +%s.%N)
  for i in $(seq "$TLS_CLIENTS"); do
    openssl s_time -connect "127.0.0.1:$port" -tls1_3 -time "$SECS" "$@" >"$work/s_time.$i" 2>/dev/null &
  done
  wait
  for i in $(seq "$TLS_CLIENTS"); do
    total=$((total + $(awk '/connections in .* real seconds/ {print $1}' "$work/s_time.$i")))
  done
  python3 -c "import time; print(round($total / (time.time() - $started)))"
}

# One measurement of SHAPE against a proxy: "name value" lines.
measure() {
  local shape=$1 port=$2 tls_port=$3 h2_port=$4 out
  case $shape in
    c1)
      out=$(wrk -t1 -c1 -d"${SECS}s" --latency "${HDRS[@]}" "http://127.0.0.1:$port$URL_PATH")
      echo "c1_p50_ms $(pct 50% <<<"$out")"
      echo "c1_p99_ms $(pct 99% <<<"$out")" ;;
    c1000)
      out=$(wrk -t2 -c1000 -d"${SECS}s" --latency "${HDRS[@]}" "http://127.0.0.1:$port$URL_PATH")
      echo "c1000_rps $(rps <<<"$out")"
      echo "c1000_p99_ms $(pct 99% <<<"$out")" ;;
    close)
      out=$(wrk -t2 -c32 -d"${SECS}s" "${HDRS[@]}" -H "Connection: close" "http://127.0.0.1:$port$URL_PATH")
      echo "close_rps $(rps <<<"$out")" ;;
    tls-new)
      echo "tls_handshakes_per_s $(tls_rate "$tls_port" -new)" ;;
    tls-reuse)
      echo "tls_resumed_rps $(tls_rate "$tls_port" -reuse -www "$URL_PATH")" ;;
    h2)
      out=$(h2load -n $((SECS * 20000)) -c 4 -m 100 -t 1 -H "User-Agent: $UA" -H "Accept: application/json" \
        -H "Accept-Language: zh-CN,zh;q=0.9" "http://127.0.0.1:$h2_port$URL_PATH" 2>&1)
      echo "h2_rps $(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")"
      echo "h2_failed $(awk '/^requests:/ {print $10}' <<<"$out")" ;;
  esac
}

: >"$work/results"
for round in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    for proxy in nginx portcullis; do
      if [ "$proxy" = nginx ]; then ports=($NGINX_PORT $NGINX_TLS $NGINX_H2C); else ports=($PC_PORT $PC_TLS $PC_PORT); fi
      measure "$shape" "${ports[@]}" | while read -r name value; do
        echo "$proxy $name $value" >>"$work/results"
        echo "round $round $proxy $name $value"
      done
    done
  done
done

python3 - "$work/results" <<'PY'
import collections, statistics, sys
values = collections.defaultdict(list)
for line in open(sys.argv[1]):
    proxy, name, value = line.split()
    try:
        values[(proxy, name)].append(float(value))
    except ValueError:
        pass
names = sorted({n for _, n in values}, key=lambda n: list(dict.fromkeys(n for _, n in values)).index(n))
med = {k: statistics.median(v) for k, v in values.items()}
print(f"\n{'figure (median)':<24}{'nginx':>12}{'portcullis':>12}{'ratio':>8}")
for n in names:
    a, b = med.get(("nginx", n)), med.get(("portcullis", n))
    if a is None or b is None:
        continue
    ratio = f"{b / a:.2f}" if a else "-"
    print(f"{n:<24}{a:>12.3f}{b:>12.3f}{ratio:>8}")
if ("nginx", "c1_p50_ms") in med and ("portcullis", "c1_p50_ms") in med:
    added = med[("portcullis", "c1_p50_ms")] - med[("nginx", "c1_p50_ms")]
    print(f"\nc=1: Portcullis adds {added:.3f} ms at p50 (target <= 0.05); "
          f"p99 is {med[('portcullis', 'c1_p99_ms')] / med[('nginx', 'c1_p99_ms')]:.2f}x nginx's (target <= 2)")
PY
