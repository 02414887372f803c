#!/usr/bin/env bash
# Installs what the stack and the tests need and is not there yet: nats-server, curl, and make
# and a C compiler for jemalloc (from the OS packages); cargo-nextest is optional (the tests
# fall back to cargo test).
set -euo pipefail

need_apt=()
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The services' allocator (jemalloc) is built from C sources.
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)

if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
nats-server --version
