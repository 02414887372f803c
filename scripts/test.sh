#!/usr/bin/env bash
# The full test suite: formatting, lints, unit tests, and the black-box tests that run the
# real binaries against real nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# The pinned nats-server (in .venv/bin) is the one the black-box tests start.
export PATH="$PWD/.venv/bin:$PATH"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build the binaries the black-box tests run"
cargo build --workspace --bins --locked

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== OpenAPI document against the running gateway"
scripts/api-test.sh

echo "== dashboard in headless Chromium"
scripts/browser-test.sh

if [[ -x scripts/check-deploy.sh ]]; then
  echo "== deployment manifests"
  scripts/check-deploy.sh
fi
