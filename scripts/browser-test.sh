#!/usr/bin/env bash
# The dashboard in a real headless Chromium: loads /ui, submits a task through the API and
# waits for its row to turn SUCCESS without a reload. Saves target/ui.png.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd integration-tests/browser && npm ci --silent --no-audit --no-fund)
mkdir -p target
SCREENSHOT_DIR="$PWD/target" scripts/with-stack.sh node integration-tests/browser/ui.test.mjs
