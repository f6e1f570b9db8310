#!/usr/bin/env bash
# The test command of the README: every unit, integration and doc test of the crate.
# Tests start real servers on 127.0.0.1 with ephemeral ports; nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo-nextest >/dev/null 2>&1; then
  # nextest does not run doc tests, so they go first and nextest's summary closes the run.
  cargo test --locked --doc --quiet
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
