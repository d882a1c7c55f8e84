#!/usr/bin/env bash
# A headless browser for the HTML report's checks (tests/integration/browser): Debian's
# chromium, driven by Playwright (the test extra) through its executable. Idempotent, and
# instant when chromium is there.
set -euo pipefail
if command -v chromium >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "services/browser: chromium is missing, and installing it needs root." >&2
    echo "  fix: sudo apt-get install chromium (or set PVS_CHROMIUM to a Chromium or Chrome binary)" >&2
    exit 1
fi
echo "services/browser: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
echo "services/browser: $(chromium --version 2>/dev/null | tail -1)"
