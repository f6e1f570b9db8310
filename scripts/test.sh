#!/usr/bin/env bash
# The test command of the README: every unit, integration and doc test of the crate.
# Tests start real servers on 127.0.0.1 with ephemeral ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# The verdict tests run the README's Python verifier (PyJWT with `cryptography`), an
# implementation that shares no code with the proxy's signer. Installed when missing; without
# it those tests fail with a message saying so, they are never skipped.
if ! python3 -c 'import jwt, cryptography' >/dev/null 2>&1; then
  echo "installing PyJWT[crypto] for the verdict tests"
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install -q 'PyJWT[crypto]>=2.8' \
    || { echo "cannot install PyJWT (pip install 'PyJWT[crypto]'); the verdict tests need it" >&2; exit 1; }
fi
# The README's Node verifier (jose) is run by the verdict tests too, from target/verdict-node.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm for the verdict tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } \
    || { echo "cannot install nodejs/npm; the verdict tests need them" >&2; exit 1; }
fi
# And its Go verifier, with golang-jwt v4 from Debian (no Go module download is needed).
if ! command -v go >/dev/null 2>&1 || [ ! -f /usr/share/gocode/src/github.com/golang-jwt/jwt/go.mod ]; then
  echo "installing golang-go and golang-github-golang-jwt-jwt-dev for the verdict tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-golang-jwt-jwt-dev >/dev/null; } \
    || { echo "cannot install Go and golang-jwt; the verdict tests need them" >&2; exit 1; }
fi
# The Redis store's tests (tests/state_redis.rs) start their own redis-server (Debian's, with TLS)
# on free loopback ports; nothing else of the package is used, so its service is kept stopped.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server for the Redis store tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
    || { echo "cannot install redis-server; the Redis store tests need it" >&2; exit 1; }
  service redis-server stop >/dev/null 2>&1 || true
fi
# The demo page's tests (tests/browser.rs) drive Debian's headless Chromium through its
# chromedriver, with a fake camera; without them those tests fail, they are never skipped.
scripts/ensure-chromium.sh
if [ ! -f target/verdict-node/node_modules/jose/package.json ]; then
  echo "installing jose for the verdict tests"
  mkdir -p target/verdict-node
  npm install --silent --no-audit --no-fund --prefix target/verdict-node jose@5 >/dev/null \
    || { echo "cannot install jose (npm install jose); the verdict tests need it" >&2; exit 1; }
fi
if command -v cargo-nextest >/dev/null 2>&1; then
  # nextest does not run doc tests, so they go first and nextest's summary closes the run.
  cargo test --locked --doc --quiet
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
