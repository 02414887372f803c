#!/usr/bin/env bash
# Runs the whole stack locally: nats-server with JetStream in ./data/nats, the generator and
# the gateway (release builds). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH" # the pinned nats-server
cargo build --release --locked -p sn-gateway -p sn-generator

mkdir -p data/nats data/generator logs
pids=()
stop() {
  trap - EXIT INT TERM
  echo; echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
if [[ $NATS_URL == nats://127.0.0.1:4222 ]] && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  nats-server -js -a 127.0.0.1 -p 4222 -sd ./data/nats >logs/nats.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
fi

export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}" ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:9090}"
export DATA_DIR="${DATA_DIR:-./data/generator}"
target/release/generator >logs/generator.log 2>&1 &
pids+=($!)
# A local stack: writes are open unless API_TOKEN is set in the calling shell.
AUTH="${AUTH:-off}" target/release/gateway >logs/gateway.log 2>&1 &
pids+=($!)

url="http://${HTTP_ADDR}"
for _ in $(seq 100); do curl -fs "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
cat <<MSG

Serial-number service is up (logs in ./logs):
  API        $url            (dashboard: $url/ui, API docs: $url/docs)
  generator  http://${ADMIN_ADDR}/metrics
  NATS       $NATS_URL        (watch events: nats sub 'sn.>')

Try:
  curl -s -X POST $url/generate_sn -H 'content-type: application/json' \\
       -d '{"code_model":"0111","number":1,"count":10}'
  curl -s $url/tasks/<id>
  curl -s $url/tasks/<id>/serials

Ctrl-C stops everything.
MSG
wait
