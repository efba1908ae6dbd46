#!/usr/bin/env bash
# The project's test command: set-up, format check, clippy with warnings
# denied, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The JavaScript SDK's unit tests (node's built-in runner, no dependencies).
node --test sdk/js/test/
# End-to-end tests: the gateway binary, the SDK and the console in headless Chromium.
cargo build --locked -p portcullis
node --test --test-concurrency=1 e2e/
