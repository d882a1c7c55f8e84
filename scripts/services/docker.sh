#!/usr/bin/env bash
# Docker engine for the Docker launcher's tests: installs Debian's docker.io if it is
# missing, starts dockerd if it is not answering, and waits until it answers.
# Idempotent and quiet; returns at once when the engine already answers.
#   DOCKERD_LOG  where dockerd writes its log (default /var/log/dockerd.log)
set -euo pipefail

answering() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answering; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "services/docker: the Docker engine is not answering, and starting one needs root." >&2
    echo "  fix: run this script as root, or start dockerd yourself (sudo dockerd --iptables=false --bridge=none &)" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "services/docker: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq docker.io >/dev/null
fi
if ! answering; then
    log=${DOCKERD_LOG:-/var/log/dockerd.log}
    # No iptables and no bridge: containers use the host network (--network host).
    setsid dockerd --iptables=false --bridge=none >>"$log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        answering && break
        sleep 0.5
    done
    if ! answering; then
        echo "services/docker: dockerd did not answer within 30 s; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo "services/docker: dockerd $(docker version --format '{{.Server.Version}}') is running (log: $log)"
fi
