#!/usr/bin/env bash
# Installs and starts the services the full test suite talks to: a Docker engine, a
# one-node SLURM cluster and a headless Chromium (for the HTML report). Idempotent:
# running services are left as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for service in "$here"/services/*.sh; do
    bash "$service"
done
