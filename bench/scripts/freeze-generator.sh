#!/bin/bash
# --wrap for sn-bench: the generator is started, and frozen (SIGSTOP) once ready, so part a
# measures the gateway's intake alone; SIGTERM thaws and stops it.
case "$1" in *generator) ;; *) exec "$@";; esac
"$@" & P=$!
trap 'kill -CONT $P; kill -TERM $P; wait $P; exit 0' TERM INT
until curl -sf "http://$ADMIN_ADDR/readyz" >/dev/null 2>&1; do sleep 0.05; done
kill -STOP $P
wait $P
