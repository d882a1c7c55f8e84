#!/usr/bin/env bash
# Installs and starts the services the full test suite talks to: a Docker engine and a
# one-node SLURM cluster. Idempotent: running services are left as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for service in "$here"/services/*.sh; do
    bash "$service"
done
