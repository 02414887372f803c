#!/usr/bin/env bash
# Runs a command against a throw-away stack: nats-server (temporary store, free ports), the
# generator and the gateway from target/debug. The command gets GATEWAY_URL and NATS_URL.
# Usage: scripts/with-stack.sh <command...>
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}
# The pinned nats-server from scripts/install-deps.sh, when it is there.
export PATH="$PWD/.venv/bin:$PATH"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

nats_port=$(free_port); http_port=$(free_port); admin_port=$(free_port)
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
pids+=($!)
export NATS_URL="nats://127.0.0.1:$nats_port"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
ADMIN_ADDR="127.0.0.1:$admin_port" DATA_DIR="$tmp/generator" "$bin/generator" >"$tmp/generator.log" 2>&1 &
pids+=($!)
AUTH="${AUTH:-off}" HTTP_ADDR="127.0.0.1:$http_port" "$bin/gateway" >"$tmp/gateway.log" 2>&1 &
pids+=($!)
export GATEWAY_URL="http://127.0.0.1:$http_port" STACK_DIR="$tmp"
ready=""
for _ in $(seq 200); do
  if curl -fs "$GATEWAY_URL/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then
    ready=1; break
  fi
  sleep 0.1
done
[[ -n $ready ]] || { echo "stack did not become ready"; tail -20 "$tmp"/*.log; exit 1; }
set +e
"$@"
status=$?
set -e
if ((status != 0)); then
  echo "--- gateway log (tail)"; tail -20 "$tmp/gateway.log"
  echo "--- generator log (tail)"; tail -20 "$tmp/generator.log"
fi
exit $status
