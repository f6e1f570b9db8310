#!/usr/bin/env bash
# End-to-end capture load against the simulated Oz API, on loopback.
#
#   benches/capture_e2e.sh            # about 3 minutes
#   QUICK=1 benches/capture_e2e.sh    # about 50 seconds
#
# Part 1, passthrough latency while captures run. A constant 1,000 req/s of GET /1k (h2load --h1
# --rps, 16 connections) goes through oz-capture-proxy, in runs that rotate between three capture
# modes:
#   none:   no captures;
#   paced:  $IN_FLIGHT capture clients (h2load, one connection each) post a $CAPTURE_MIB MiB
#           capture of real JPEG frames back to back, so $IN_FLIGHT captures are always in
#           flight, through the default flow: upload, start the analyses, wait for the verdict
#           (the simulated Oz API answers after one poll, 100-200 ms later);
#   stress: the same clients on a route with `wait_for_result: 0s`, so the next capture follows
#           as soon as the upload is done: the proxy receives, parses, decodes, zips and uploads
#           as fast as it can, hundreds of MB/s on one core.
# Each run is repeated with the passthrough load sent directly to the backend, under the same
# capture traffic, as a control: it shows how much of a rise comes from the shared
# load-generator core rather than from the proxy.
#
# Part 2, memory budget. $BURST clients post a maximum-size capture ($MAX_MIB MiB,
# = capture.max_body_bytes) at the same moment, with `Expect:` turned off so every body is sent
# as a browser would send it. RSS of the proxy is sampled every 20 ms. With
# capture.memory_budget_bytes = $BUDGET_MIB MiB, the captures that do not fit must get 503 with
# Retry-After, and RSS must not grow by more than the budget.
#
# CPU placement: the proxy on CPU $CPU_SUT, everything else (generators, backend, Oz simulator)
# on CPU $CPU_LOAD, as in benches/load.sh; the simulator and the capture clients at nice
# $REMOTE_NICE (they stand in for remote parties).
#
# Knobs: QUICK, DURATION, ROUNDS, RATE, CONNS, IN_FLIGHT, CAPTURE_MIB, MAX_MIB, BURST,
# MAX_CONCURRENT, BUDGET_MIB, ESCAPED=1 (`\/`-escaped bodies, the parser's copying path),
# TRANSFORM_PRIORITY (capture.transform_priority; unset: the binary's default), CPU_SUT, CPU_LOAD,
# NICE, REMOTE_NICE, OUT, SKIP_BUILD, BIN (a binary to measure instead of the one built here).
set -euo pipefail

source "$(dirname "$0")/common.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-4}
    ROUNDS=${ROUNDS:-1}
else
    DURATION=${DURATION:-8}
    ROUNDS=${ROUNDS:-3}
fi
RATE=${RATE:-1000}
CONNS=${CONNS:-16}
IN_FLIGHT=${IN_FLIGHT:-4}
CAPTURE_MIB=${CAPTURE_MIB:-5}
# The Oz API refuses a file part over 10 MB (OZ_ATTACHMENT_MAX_SIZE, docs/oz-api.md §6.1); a 12 MiB
# capture makes a ZIP of about 9 MiB, so 12 MiB is about the largest body Oz would take.
MAX_MIB=${MAX_MIB:-12}
BURST=${BURST:-16}
MAX_CONCURRENT=${MAX_CONCURRENT:-4}
BUDGET_MIB=${BUDGET_MIB:-$((MAX_CONCURRENT * 2 * MAX_MIB))}
ESCAPED=${ESCAPED:-0}
TRANSFORM_PRIORITY=${TRANSFORM_PRIORITY:-}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
REMOTE_NICE=${REMOTE_NICE:-19}
OUT=${OUT:-$root/target/bench/e2e-$(date +%Y%m%d-%H%M%S)}

ensure_tools
build_release
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$root" && cargo build --release --quiet --example bench_captures)
fi
mkdir -p "$OUT/raw"
: >"$OUT/results.jsonl"
read -r P_BACKEND P_BACKEND_H2 P_PROXY P_ADMIN P_OZ <<<"$(free_ports 5)"

log "generating captures of $CAPTURE_MIB and $MAX_MIB MiB"
gen_args=()
[[ $ESCAPED == 1 ]] && gen_args+=(--escaped)
"$root/target/release/examples/bench_captures" "${gen_args[@]}" "$tmp/captures" \
    "$CAPTURE_MIB" "$MAX_MIB" | tee "$OUT/captures.txt" >&2
CAPTURE_FILE="$tmp/captures/capture-${CAPTURE_MIB}mib.json"
MAX_FILE="$tmp/captures/capture-${MAX_MIB}mib.json"

start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"
# The simulated Oz API and the capture clients stand in for parties on other machines: they run
# at the lowest priority so their CPU time (the simulator checks every upload in full) comes out
# of idle time on the load core, not out of the passthrough generator's and backend's.
NICE=$REMOTE_NICE start_bg "$CPU_LOAD" "$tmp/oz-sim.log" "$BIN" simulate-oz \
    --listen "127.0.0.1:$P_OZ" --token bench-token --polls-until-final 1

MAX_BYTES=$((MAX_MIB * 1024 * 1024))
BUDGET_BYTES=$((BUDGET_MIB * 1024 * 1024))
cat >"$tmp/proxy.yaml" <<EOF
listen: "127.0.0.1:$P_PROXY"
admin_listen: "127.0.0.1:$P_ADMIN"
backend:
  url: "http://127.0.0.1:$P_BACKEND"
reload:
  interval: "0s"
shutdown:
  drain_delay: "0s"
  drain_deadline: "5s"
oz:
  url: "http://127.0.0.1:$P_OZ"
  auth:
    token: "bench-token"
capture:
  routes:
    - path: "/api/liveness/check"
      on_result: respond
      result_mode: safe
    - path: "/api/liveness/check-nowait"
      on_result: respond
      result_mode: safe
      wait_for_result: "0s"
  max_body_bytes: $MAX_BYTES
  max_concurrent: $MAX_CONCURRENT
  memory_budget_bytes: $BUDGET_BYTES
  # h2load posts one capture file again and again; the replay guard would refuse every repeat.
  replay:
    enabled: false
EOF
if [[ -n $TRANSFORM_PRIORITY ]]; then
    echo "  transform_priority: $TRANSFORM_PRIORITY" >>"$tmp/proxy.yaml"
fi
start_bg "$CPU_SUT" "$tmp/proxy.log" "$BIN" --config "$tmp/proxy.yaml"
PROXY_PID=$last_pid
wait_http "http://127.0.0.1:$P_BACKEND/1k"
wait_http "http://127.0.0.1:$P_ADMIN/ready"
wait_http "http://127.0.0.1:$P_OZ/_sim/uploads"
CAPTURE_URL="http://127.0.0.1:$P_PROXY/api/liveness/check"

# One capture through first: proves the route works end to end before anything is timed.
code=$(curl -s -o "$tmp/first.json" -w '%{http_code}' -H 'content-type: application/json' \
    -H 'Expect:' --data-binary "@$CAPTURE_FILE" "$CAPTURE_URL")
if [[ $code != 200 ]]; then
    log "a single capture failed with $code: $(cat "$tmp/first.json")"
    tail -n 20 "$tmp/proxy.log" >&2
    exit 1
fi
log "single capture ok: $(cat "$tmp/first.json")"

per_conn_rate=$(python3 -c "print(f'{$RATE/$CONNS:g}')")

passthrough_run() { # ROUND MODE PATH
    local r=$1 mode=$2 path=$3
    local port=$P_PROXY n=0 cap_url=""
    [[ $path == direct ]] && port=$P_BACKEND
    case $mode in
        paced) n=$IN_FLIGHT cap_url="http://127.0.0.1:$P_PROXY/api/liveness/check" ;;
        stress) n=$IN_FLIGHT cap_url="http://127.0.0.1:$P_PROXY/api/liveness/check-nowait" ;;
    esac
    local prefix="$OUT/raw/pt.r$r.$mode.$path" cap_pid=""
    if ((n > 0)); then
        NICE=$REMOTE_NICE on_cpu "$CPU_LOAD" h2load --h1 -c "$n" -D $((DURATION + 2)) -d "$CAPTURE_FILE" \
            -H 'content-type: application/json' "$cap_url" >"$prefix.captures" 2>&1 &
        cap_pid=$!
        bg_pids+=("$cap_pid")
        sleep 1 # let the captures get going
    fi
    local c0 c1 load
    c0=$(cpu_ticks "$PROXY_PID")
    load=$(cut -d' ' -f1 /proc/loadavg)
    on_cpu "$CPU_LOAD" h2load --h1 -c"$CONNS" --rps="$per_conn_rate" -D "$DURATION" \
        --log-file="$prefix.log" "http://127.0.0.1:$port/1k" >"$prefix.out" 2>&1 || true
    c1=$(cpu_ticks "$PROXY_PID")
    if [[ -n $cap_pid ]]; then wait "$cap_pid" || true; fi
    local stats
    stats=$(python3 "$bench_dir/loadstat.py" h2load "$prefix.out" "$prefix.log")
    python3 "$bench_dir/loadstat.py" e2e-run "$stats" "$r" "$mode" "$n" "$path" \
        "$prefix.captures" "$((c1 - c0))" "$TICK" "$load" "$DURATION" >>"$OUT/results.jsonl"
    tail -n1 "$OUT/results.jsonl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("  round %d  %-6s %-6s: %6.0f req/s  p50 %.3f  p99 %.3f  p99.9 %.3f ms  proxy core %.2f  captures %s" % (
    d["round"], d["mode"], d["path"], d["rps"] or 0, d["p50_us"] / 1e3, d["p99_us"] / 1e3,
    d["p999_us"] / 1e3, d["proxy_core"], d["captures"]))' >&2
}

MODES=(none paced stress)
log "part 1: passthrough at $RATE req/s, ${ROUNDS} round(s) of ${DURATION}s runs; captures: none, $IN_FLIGHT x $CAPTURE_MIB MiB paced, $IN_FLIGHT x $CAPTURE_MIB MiB stress"
echo "uptime before: $(uptime)" >"$OUT/load.txt"
# Warm-up: pools, caches, the Oz token.
on_cpu "$CPU_LOAD" h2load --h1 -c"$CONNS" --rps="$per_conn_rate" -D 1 \
    "http://127.0.0.1:$P_PROXY/1k" >/dev/null 2>&1 || true
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < 3; k++)); do
        mode=${MODES[$(((k + r - 1) % 3))]}
        passthrough_run "$r" "$mode" proxy
        passthrough_run "$r" "$mode" direct
    done
done

# RSS 2 s after the last capture, and 10 s after: once the capture threads have had no job for
# 5 s, runtime::trim hands the freed heap back to the kernel.
sleep 2
rss_retained=$(rss_kb "$PROXY_PID")
sleep 8
rss_retained_10s=$(rss_kb "$PROXY_PID")
log "RSS after part 1: $rss_retained KiB 2 s after, $rss_retained_10s KiB 10 s after; restarting the proxy for part 2"
# Part 2 runs on a fresh process, so its RSS starts at the idle level and the growth it shows
# is the burst's own, not a mix with heap the allocator kept from part 1.
kill -TERM "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
start_bg "$CPU_SUT" "$tmp/proxy.log" "$BIN" --config "$tmp/proxy.yaml"
PROXY_PID=$last_pid
wait_http "http://127.0.0.1:$P_ADMIN/ready"
sleep 1

log "part 2: $BURST concurrent captures of $MAX_MIB MiB, budget $BUDGET_MIB MiB"
rss_before=$(rss_kb "$PROXY_PID")
python3 "$bench_dir/loadstat.py" rss-sampler "$PROXY_PID" "$tmp/rss.samples" &
sampler=$!
bg_pids+=("$sampler")
burst_pids=()
for ((i = 0; i < BURST; i++)); do
    on_cpu "$CPU_LOAD" curl -s -o "$tmp/burst.$i.body" -D "$tmp/burst.$i.head" \
        -w '%{http_code}\n' -H 'content-type: application/json' -H 'Expect:' \
        --data-binary "@$MAX_FILE" "$CAPTURE_URL" >"$tmp/burst.$i.code" 2>/dev/null &
    burst_pids+=($!)
done
for p in "${burst_pids[@]}"; do wait "$p" || true; done
sleep 0.5
touch "$tmp/rss.samples.stop"
wait "$sampler" || true
cp "$tmp/rss.samples" "$OUT/raw/burst-rss.samples"
ok=0 busy=0 busy_ra=0 other=0
for ((i = 0; i < BURST; i++)); do
    c=$(cat "$tmp/burst.$i.code" 2>/dev/null || echo 000)
    case $c in
        2*) ok=$((ok + 1)) ;;
        503)
            busy=$((busy + 1))
            if grep -qi '^retry-after:' "$tmp/burst.$i.head"; then busy_ra=$((busy_ra + 1)); fi
            ;;
        *) other=$((other + 1)) ;;
    esac
done
rss_peak=$(awk 'BEGIN{m=0} {if ($2 > m) m = $2} END{print m}' "$tmp/rss.samples")
sleep 2
rss_after=$(rss_kb "$PROXY_PID")
sleep 8
rss_after_10s=$(rss_kb "$PROXY_PID")
echo "{\"kind\":\"burst\",\"concurrency\":$BURST,\"escaped\":$ESCAPED,\"body_bytes\":$(stat -c %s "$MAX_FILE"),\"ok\":$ok,\"busy\":$busy,\"busy_retry_after\":$busy_ra,\"other\":$other,\"rss_before_kb\":$rss_before,\"rss_peak_kb\":$rss_peak,\"rss_after_kb\":$rss_after,\"rss_after_10s_kb\":$rss_after_10s,\"rss_after_part1_kb\":$rss_retained,\"rss_after_part1_10s_kb\":$rss_retained_10s}" \
    >>"$OUT/results.jsonl"
log "burst: $ok ok, $busy busy ($busy_ra with Retry-After), $other other; RSS $rss_before -> peak $rss_peak KiB (2 s later: $rss_after, 10 s later: $rss_after_10s)"
curl -s "http://127.0.0.1:$P_ADMIN/metrics" | grep -E '^oz_proxy_(capture|process_resident)' \
    >"$OUT/metrics.txt" || true
echo "uptime after: $(uptime)" >>"$OUT/load.txt"

cat >"$OUT/meta.json" <<EOF
{"max_body_bytes": $MAX_BYTES, "budget_bytes": $BUDGET_BYTES, "max_concurrent": $MAX_CONCURRENT,
 "capture_mib": $CAPTURE_MIB, "in_flight": $IN_FLIGHT, "rate": $RATE, "duration_s": $DURATION,
 "conns": $CONNS}
EOF
{
    echo "### Captures end to end ($(date -u +%Y-%m-%dT%H:%MZ), QUICK=$QUICK)"
    echo
    sed 's/^/Load: /' "$OUT/load.txt"
    echo
    python3 "$bench_dir/loadstat.py" e2e "$OUT/results.jsonl" "$OUT/meta.json"
} >"$OUT/results.md"
cat "$OUT/results.md"
log "raw data and results.md in $OUT"
