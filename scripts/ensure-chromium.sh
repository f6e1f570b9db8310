#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when either is missing: the browser tests
# (tests/browser.rs) and scripts/screenshot.sh drive the demo page with them.
set -euo pipefail
if [ -x /usr/lib/chromium/chromium ] && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
echo "installing chromium and chromium-driver for the browser tests"
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
  || { echo "cannot install chromium and chromium-driver (apt-get install chromium chromium-driver); the browser tests need them" >&2; exit 1; }
