#!/usr/bin/env bash
# Time to clearance in Debian's headless Chromium at the default difficulty
# (issue 6: median <= 300 ms), with the release binary.
#
#   bench/clearance.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-31}"
cargo build --release --locked -p portcullis
[ -d e2e/node_modules/playwright-core ] || (cd e2e && npm ci --no-audit --no-fund)
PORTCULLIS_BIN=target/release/portcullis CLEARANCE_RUNS="$runs" CLEARANCE_MAX_MEDIAN_MS=300 \
  node --test --test-name-pattern='time to clearance' e2e/challenge.test.mjs
