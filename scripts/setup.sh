#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in nginx wrk chromium fonts-liberation redis-server postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v node >/dev/null || need+=(nodejs)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The end-to-end tests' npm packages, pinned by e2e/package-lock.json:
# playwright-core for the browser tests (it drives Debian's chromium; no
# browser download); miniprogram-simulate (with jsdom), miniprogram-api-typings
# and typescript for the mini-program client. Installed again whenever the
# lockfile is newer than the installed tree.
if [ ! -f e2e/node_modules/.package-lock.json ] ||
  [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
