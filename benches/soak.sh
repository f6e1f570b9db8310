#!/usr/bin/env bash
# Soak and chaos run (benches/soak.rs, RELIABILITY.md): builds the release binary and the driver
# (`cargo bench` builds both), then drives mixed traffic through the real proxy for DURATION
# seconds (default 120) while faults are injected, sends SIGTERM with the traffic still running,
# and prints one table. Everything runs on 127.0.0.1; outputs stay in target/soak/<unix time>/.
#
#   benches/soak.sh [DURATION] [--rate N] [--bin PATH] [--out DIR]
#
# Exit status is the soak's: 0 every invariant held, 1 one failed, 2 the run could not be made.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-120}
[[ $# -gt 0 ]] && shift
exec cargo bench --locked --bench soak -- --duration "$duration" "$@"
