#!/usr/bin/env bash
# Reference WAF for the benchmark corpora: nginx + ModSecurity v3 + OWASP CRS
# at paranoia level 1 (blocking, anomaly scoring, 403) as a reverse proxy on
# loopback in front of a trivial origin; replays the corpora of bench/corpora
# (and mgm when MGM is set) through it, as `portcullis bench corpus` does for
# the gateway, and saves bench/results/corpus-<label>.json and
# bench/results/misclassified-<label>.jsonl.
#
# Needs the Debian packages nginx libnginx-mod-http-modsecurity modsecurity-crs.
# Runs in a temp dir; the system nginx configuration is not touched.
#
#   bench/modsec/run.sh [extra replay args, e.g. --limit 5000 --only normal]
#
# Environment: PORT (WAF, default 18480), ORIGIN_PORT (default 18481),
# MGM (the mgm payload collection's directory; GPL-3.0, not vendored),
# LABEL (default modsec-crs-pl1), KEEP=1 keeps the temp dir (logs),
# USE_PORTCULLIS_BIN=1 replays with `portcullis bench corpus` instead of the
# corpus crate's example (same arguments, no gateway build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PORT="${PORT:-18480}"
ORIGIN_PORT="${ORIGIN_PORT:-18481}"
LABEL="${LABEL:-modsec-crs-pl1}"
MGM="${MGM:-}"

for f in /usr/sbin/nginx /usr/lib/nginx/modules/ngx_http_modsecurity_module.so \
         /etc/modsecurity/crs/crs-setup.conf /usr/share/modsecurity-crs/rules; do
    if [ ! -e "$f" ]; then
        echo "missing $f: apt-get install -y nginx libnginx-mod-http-modsecurity modsecurity-crs" >&2
        exit 1
    fi
done
if [ -n "$MGM" ] && [ ! -d "$MGM" ]; then
    echo "mgm payloads not found at $MGM" >&2
    exit 1
fi

WORK="$(mktemp -d /tmp/portcullis-modsec.XXXXXX)"
mkdir -p "$WORK/tmp" "$WORK/modsec" "$WORK/logs"
NGINX_PID=""
cleanup() {
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$NGINX_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

USER_LINE=""
if [ "$(id -u)" = 0 ]; then
    # Workers must read and write the temp dir, which only root can.
    USER_LINE="user root;"
fi
render() {
    sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        -e "s|@USER_LINE@|$USER_LINE|g" "$1" > "$2"
}
render "$HERE/nginx.conf.in" "$WORK/nginx.conf"
render "$HERE/main.conf.in" "$WORK/modsec/main.conf"
cp "$HERE/modsecurity.conf" "$WORK/modsec/modsecurity.conf"

nginx -t -q -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log"
nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
NGINX_PID=$!

# Wait for the WAF port.
for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    if ! kill -0 "$NGINX_PID" 2>/dev/null; then
        echo "nginx exited; see $WORK/error.log" >&2; cat "$WORK/error.log" >&2; exit 1
    fi
    [ "$i" = 100 ] && { echo "nginx did not listen on $PORT" >&2; exit 1; }
    sleep 0.1
done

# Sanity: a plain request passes, an obvious attack is blocked.
if command -v curl >/dev/null; then
    ok=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost' "http://127.0.0.1:$PORT/")
    bad=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost' \
        "http://127.0.0.1:$PORT/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    echo "sanity: benign -> $ok, <script> -> $bad" >&2
    if [ "$ok" != 200 ] || [ "$bad" != 403 ]; then
        echo "ModSecurity is not blocking as expected; see $WORK/error.log" >&2
        exit 1
    fi
fi

cd "$ROOT"
ARGS=(--corpora "$ROOT/bench/corpora" --target "http://127.0.0.1:$PORT" --host localhost --label "$LABEL")
if [ -n "$MGM" ]; then
    ARGS+=(--mgm "$MGM")
fi
ARGS+=("$@")
if [ "${USE_PORTCULLIS_BIN:-0}" = 1 ]; then
    cargo run --release -p portcullis -- bench corpus "${ARGS[@]}"
else
    cargo run --release -p portcullis-corpus --example replay -- "${ARGS[@]}"
fi
