#!/usr/bin/env bash
# Instructions per passthrough request, counted by callgrind: a deterministic measure of the
# proxy's user-space cost, for comparing code changes on a noisy, shared machine. Kernel time
# (most of a proxied request on loopback) is not counted; benches/load.sh measures that.
#
#   benches/callgrind.sh [BIN]       # default: target/profiling/oz-capture-proxy
#                                    # (cargo build --profile profiling: release + line tables)
#
# Starts the static nginx backend and the proxy under `valgrind --tool=callgrind`, sends a
# warm-up, zeroes the counters, sends $REQUESTS GET /1k over $CONNS keep-alive HTTP/1.1
# connections (h2load), dumps the counters, and prints instructions per request and every one of
# them summed by whose source code ran it (hyper, http, tokio, this crate, glibc's allocator and
# memcpy...; benches/callgrind_buckets.py). Knobs: REQUESTS, CONNS, OUT, NICE, SETTING (engine:
# no access log, the default, as benches/load.sh's engine setting; as_deployed: the default
# access log on stdout), PRESERVE_HEADER_CASE (forwarding.preserve_header_case; unset: the
# proxy's default).
set -euo pipefail

source "$(dirname "$0")/common.sh"

BIN=${1:-$root/target/profiling/oz-capture-proxy}
REQUESTS=${REQUESTS:-5000}
CONNS=${CONNS:-4}
SETTING=${SETTING:-engine}
OUT=${OUT:-$root/target/bench/callgrind-$(date +%Y%m%d-%H%M%S)}
case $SETTING in
engine) log_level="info,access=off" ;;
as_deployed) log_level="" ;;
*)
    log "SETTING is engine or as_deployed, not $SETTING"
    exit 2
    ;;
esac
ensure_tools
ensure_profilers
mkdir -p "$OUT"
read -r P_BACKEND P_BACKEND_H2 P_PROXY P_ADMIN <<<"$(free_ports 4)"
start_backend - "$P_BACKEND" "$P_BACKEND_H2"
proxy_bench_yaml "$tmp/proxy.yaml" "$P_PROXY" "$P_ADMIN" "$P_BACKEND" "$log_level"
start_bg - "$OUT/proxy.log" valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/callgrind.out" "$BIN" --config "$tmp/proxy.yaml"
VG_PID=$last_pid
wait_http "http://127.0.0.1:$P_BACKEND/1k"
wait_http "http://127.0.0.1:$P_ADMIN/ready" 60
h2load --h1 -c"$CONNS" -n 500 "http://127.0.0.1:$P_PROXY/1k" >/dev/null
callgrind_control -z "$VG_PID" >/dev/null
h2load --h1 -c"$CONNS" -n "$REQUESTS" "http://127.0.0.1:$P_PROXY/1k" >"$OUT/h2load.txt"
if ! grep -q "$REQUESTS succeeded" "$OUT/h2load.txt"; then
    log "not every request succeeded"
    cat "$OUT/h2load.txt" >&2
    exit 1
fi
callgrind_control -d "$VG_PID" >/dev/null
kill "$VG_PID"
wait "$VG_PID" 2>/dev/null || true
# callgrind_control -d writes callgrind.out.1 (the measured requests); the final dump at exit
# goes to callgrind.out itself and holds only the shutdown.
dump="$OUT/callgrind.out.1"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null >"$OUT/inclusive.txt" || true
callgrind_annotate --threshold=100 --inclusive=no "$dump" 2>/dev/null >"$OUT/self.txt" || true
echo "instructions per request: $((total / REQUESTS)) ($total over $REQUESTS requests)"
python3 "$bench_dir/callgrind_buckets.py" "$OUT/self.txt" "$REQUESTS" | tee "$OUT/buckets.md"
echo "annotations: $OUT/inclusive.txt, $OUT/self.txt; by whose code: $OUT/buckets.md"
