#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) with libFuzzer for SECONDS each, starting from the
# seeds kept in fuzz/seeds/<target>/, and prints per target the executions, executions per
# second and coverage (libFuzzer's `cov` edges and `ft` features). Fails when a target crashes,
# and prints where the crashing input was written.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (default 60, every target)
#
# The repository is left untouched: the corpus grows in a scratch directory, crashes are written
# there. Set FUZZ_WORK to keep it between runs; by default it is a new temporary directory,
# removed after a run without failures.
# Needs the nightly toolchain (installed with rustup if missing) and cargo-fuzz (installed from
# crates.io if missing). Builds with AddressSanitizer, cargo-fuzz's default; the first build
# takes about 6 minutes on 2 cores (9 beside other builds), later ones seconds.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(capture_body data_url path_normalize request_head multipart_roundtrip config_loader)
fi
work=${FUZZ_WORK:-}
scratch=false
if [ -z "$work" ]; then
  work=$(mktemp -d -t oz-fuzz.XXXXXX)
  scratch=true
fi
mkdir -p "$work"

rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

echo "== building ${#targets[@]} targets"
build_start=$(date +%s)
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do cargo +nightly fuzz build "$t"; done
else
  cargo +nightly fuzz build
fi
echo "== built in $(( $(date +%s) - build_start ))s; corpus and crashes in $work"

failed=()
rows=()
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "seeds/$t" ]; then cp -n "seeds/$t"/* "$corpus/" 2>/dev/null || true; fi
  log="$work/$t.log"
  echo "== $t for ${secs}s"
  t0=$(date +%s)
  set +e
  cargo +nightly fuzz run "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - t0 ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  # The last status line (`#N DONE cov: C ft: F corp: …`) holds the final coverage.
  status=$(grep -E '^#[0-9]+[[:space:]]+[A-Z]+ +cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  crash=""
  found=0
  if [ "$rc" -ne 0 ]; then
    crash=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
    failed+=("$t")
    found=1
    echo "!! $t failed (exit $rc): ${crash:-no input written, see $log}"
    grep -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" -A 2 "$log" | head -n 12 || true
  fi
  printf '   executions %s in %ss, %s exec/s, cov %s, ft %s\n' "${runs:-?}" "$took" "${rate:-?}" "${cov:-?}" "${ft:-?}"
  rows+=("| \`$t\` | ${runs:-?} | ${took} s | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${found}${crash:+ (\`$crash\`)} |")
done

echo
echo "| target | executions | time | exec/s | cov | ft | crashes |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]} (logs and inputs in $work)"
  exit 1
fi
if $scratch; then rm -rf "$work"; fi
