# Shared by the bench scripts; source it from the repository root. It gives
# a scratch directory ($work, removed on exit together with nginx and every
# pid pushed onto PIDS), the gateway binary ($BIN) and nginx as the origin.

# The release gateway: PORTCULLIS_BIN when given (to compare two builds),
# else this tree's, built first.
gateway_bin() {
  if [ -z "${PORTCULLIS_BIN:-}" ]; then
    cargo build --release -p portcullis >/dev/null 2>&1 || cargo build --release -p portcullis
  fi
  BIN=$(realpath "${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}")
}

work=$(mktemp -d)
chmod 755 "$work"
mkdir -p "$work/logs"
PIDS=()
# A script may define more_cleanup (called first) for what it started itself.
bench_cleanup() {
  if declare -F more_cleanup >/dev/null; then more_cleanup; fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

# start_nginx WORKERS [HTTP_BLOCK]: nginx answering a small JSON document on
# ORIGIN_PORT (the origin), with HTTP_BLOCK added to its http block (more
# servers: nginx as a proxy).
start_nginx() {
  cat >"$work/nginx.conf" <<CONF
worker_processes $1;
worker_rlimit_nofile 65536;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
  }
${2:-}
}
CONF
  nginx -p "$work" -c "$work/nginx.conf" -g "user root;"
}

# wait_http URL: until URL answers, for at most 10 s; fails after that.
wait_http() {
  for _ in $(seq 100); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
