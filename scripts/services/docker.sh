#!/usr/bin/env bash
# Docker engine for the Docker launcher's tests: installs Debian's docker.io (and
# debootstrap, which builds the CPU image) when missing, starts dockerd when it is not
# answering, and waits until it answers. Idempotent, quiet, and instant when all is there.
#   DOCKERD_LOG  where dockerd writes its log (default /var/log/dockerd.log)
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

answering() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v debootstrap >/dev/null && command -v docker >/dev/null && answering; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "services/docker: the Docker engine is not answering (or debootstrap is missing), and" >&2
    echo "  installing or starting them needs root." >&2
    echo "  fix: run this script as root, or start dockerd yourself (sudo dockerd --iptables=false --bridge=none &)" >&2
    exit 1
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "services/docker: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
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
