#!/usr/bin/env bash
# Fuzzes the capture parser, the frame decoder and the route-path normalizer with libFuzzer.
# Needs the nightly toolchain (present on these machines) and cargo-fuzz (installed here if
# missing). Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in capture_body data_url path_normalize; do
  mkdir -p "corpus/$target"
  cp -n seeds/$target/* "corpus/$target/" 2>/dev/null || true
  echo "== $target for ${secs}s"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
