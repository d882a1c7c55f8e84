#!/usr/bin/env bash
# Installs and starts the services the full test suite talks to.
set -euo pipefail
echo "services: none required yet"
