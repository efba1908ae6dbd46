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
  # A gateway writes its state and events out as it stops: let it finish.
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pidfile in "$work"/nginx.pid "$work"/*/nginx.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
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

# start_nginx_proxy NAME WORKERS SERVER_BLOCK: a second nginx instance (in
# $work/NAME) serving SERVER_BLOCK, so that its processes are a proxy's
# alone and their CPU can be read apart from the origin's.
start_nginx_proxy() {
  mkdir -p "$work/$1/logs"
  cat >"$work/$1/nginx.conf" <<CONF
worker_processes $2;
worker_rlimit_nofile 65536;
pid $work/$1/nginx.pid;
error_log $work/$1/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
$3
}
CONF
  nginx -p "$work/$1" -c "$work/$1/nginx.conf" -g "user root;"
}

# proc_cpu PID...: "USER_TICKS SYS_TICKS CONTEXT_SWITCHES" of those
# processes, every thread.
proc_cpu() {
  local user=0 sys=0 switches=0 pid task u s
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      [ -r "$task/stat" ] || continue
      read -r u s < <(awk '{print $14, $15}' "$task/stat")
      user=$((user + u)); sys=$((sys + s))
      switches=$((switches + $(awk '/ctxt_switches/ {n += $2} END {print n + 0}' "$task/status")))
    done
  done
  echo "$user $sys $switches"
}

# wait_http URL: until URL answers, for at most 10 s; fails after that.
wait_http() {
  for _ in $(seq 100); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
