#!/usr/bin/env bash
# Hardware counters per passthrough request: `perf stat` on oz-capture-proxy (or nginx, or
# HAProxy) while wrk drives HTTP/1.1 GET 1 KiB through it, in benches/load.sh's engine setting
# (no access log). Cycles, instructions, task-clock and context switches are divided by the
# requests wrk completed, user and kernel together, so the figures compare code changes (before
# and after) and proxies (same run) on what a request costs the machine, not on wall-clock time.
# On a virtual machine without a PMU (this project's 2-vCPU machines) cycles and instructions are
# "not supported" and left out; task-clock and context switches remain, and benches/callgrind.sh
# counts user-space instructions instead.
#
#   benches/perfstat.sh [BIN]              # default: target/release/oz-capture-proxy
#   PEER=nginx benches/perfstat.sh         # the nginx or HAProxy of benches/load.sh instead
#                                          # (the same configuration: common.sh's peer_*_conf)
#   RECORD=1 benches/perfstat.sh [BIN]     # also `perf record -g`: every sample's function in
#                                          # $OUT/perf.txt, summed by component (the kernel, hyper,
#                                          # tokio, malloc, this crate...) by benches/perfbuckets.py
#   STRACE=1 benches/perfstat.sh [BIN]     # also system calls per request (strace -c, 20,000
#                                          # requests by h2load --h1; slow, counts only)
#
# The proxy is pinned to CPU $CPU_SUT, wrk and the static nginx backend to CPU $CPU_LOAD, as in
# benches/load.sh. Knobs: DURATION (s, default 10), CONNS (32), ROUNDS (3; the median of each
# counter is printed), PRESERVE_HEADER_CASE (unset: the proxy's default), OUT, NICE.
set -euo pipefail

source "$(dirname "$0")/common.sh"

BIN=${1:-$root/target/release/oz-capture-proxy}
PEER=${PEER:-proxy}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
RECORD=${RECORD:-0}
STRACE=${STRACE:-0}
OUT=${OUT:-$root/target/bench/perfstat-$PEER-$(date +%Y%m%d-%H%M%S)}
ensure_tools
ensure_profilers
mkdir -p "$OUT"
read -r P_BACKEND P_BACKEND_H2 P_SUT P_SUT_H2 P_ADMIN <<<"$(free_ports 5)"
start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"

case $PEER in
proxy)
    proxy_bench_yaml "$tmp/proxy.yaml" "$P_SUT" "$P_ADMIN" "$P_BACKEND" "info,access=off"
    start_bg "$CPU_SUT" "$OUT/sut.log" "$BIN" --config "$tmp/proxy.yaml"
    SUT_PIDS=$last_pid
    wait_http "http://127.0.0.1:$P_ADMIN/ready" 60
    ;;
nginx)
    peer_nginx_conf nginx "$P_SUT" "$P_SUT_H2" "$P_BACKEND" "access_log off;"
    start_bg "$CPU_SUT" "$OUT/sut.log" "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" \
        -g 'daemon off;'
    wait_http "http://127.0.0.1:$P_SUT/1k"
    # The master (start_bg execs it, so it is $last_pid) and its worker.
    SUT_PIDS="$last_pid,$(pgrep -d, -P "$last_pid")"
    ;;
haproxy)
    mkdir -p "$tmp/haproxy"
    peer_haproxy_conf "$tmp/haproxy/haproxy.cfg" "$P_SUT" "$P_BACKEND" ""
    start_bg "$CPU_SUT" "$OUT/sut.log" "$HAPROXY" -db -f "$tmp/haproxy/haproxy.cfg"
    SUT_PIDS=$last_pid
    wait_http "http://127.0.0.1:$P_SUT/1k"
    ;;
*)
    log "PEER is proxy, nginx or haproxy, not $PEER"
    exit 2
    ;;
esac

url="http://127.0.0.1:$P_SUT/1k"
on_cpu "$CPU_LOAD" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null # warm-up
events=cycles,instructions,task-clock,context-switches,cpu-migrations
for ((r = 1; r <= ROUNDS; r++)); do
    perf stat -x, -e "$events" -p "$SUT_PIDS" -o "$OUT/stat-$r.csv" &
    perf_pid=$!
    bg_pids+=("$perf_pid")
    on_cpu "$CPU_LOAD" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" >"$OUT/wrk-$r.txt"
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" || true
done
if [[ $RECORD == 1 ]]; then
    perf record -o "$OUT/perf.data" -p "$SUT_PIDS" -- sleep "$DURATION" >/dev/null 2>&1 &
    rec_pid=$!
    bg_pids+=("$rec_pid")
    on_cpu "$CPU_LOAD" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" >"$OUT/wrk-record.txt"
    wait "$rec_pid" || true
    perf report -i "$OUT/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' >"$OUT/perf.txt" || true
    python3 "$bench_dir/perfbuckets.py" "$OUT/perf.txt" | tee "$OUT/buckets.md"
fi

if [[ $STRACE == 1 ]]; then
    strace_args=()
    for pid in ${SUT_PIDS//,/ }; do strace_args+=(-p "$pid"); done
    strace -c -S calls -f -o "$OUT/strace.txt" "${strace_args[@]}" &
    strace_pid=$!
    bg_pids+=("$strace_pid")
    sleep 1 # strace attaches asynchronously; nothing measured depends on this pause
    on_cpu "$CPU_LOAD" h2load --h1 -c"$CONNS" -n 20000 "$url" >"$OUT/h2load-strace.txt"
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" || true
    awk '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "  %-16s %6.2f per request\n", $NF, $4 / 20000 }' \
        "$OUT/strace.txt" | head -6
    awk '$NF == "total" { printf "  %-16s %6.2f per request\n", "all calls", $4 / 20000 }' \
        "$OUT/strace.txt"
fi

python3 - "$OUT" "$ROUNDS" "$PEER" <<'PY'
import csv, re, statistics, sys
out, rounds, peer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
per = {}
for r in range(1, rounds + 1):
    wrk = open(f"{out}/wrk-{r}.txt").read()
    m = re.search(r"(\d+) requests in", wrk)
    requests = int(m.group(1))
    for row in csv.reader(l for l in open(f"{out}/stat-{r}.csv") if l.strip() and not l.startswith("#")):
        value, event = row[0], row[2]
        if value in ("<not counted>", "<not supported>"):
            continue
        scale = 1000.0 if event == "task-clock" else 1.0  # perf reports msec; shown in µs
        per.setdefault(event, []).append(float(value) * scale / requests)
    per.setdefault("req/s", []).append(float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1)))
if "task-clock" not in per:
    sys.exit(f"perf stat counted nothing for {peer} (see {out}/stat-1.csv): was the PID right?")
print(f"{peer}: medians of {rounds} rounds, per request")
for event, values in per.items():
    name = {"task-clock": "task-clock (µs)"}.get(event, event)
    v = statistics.median(values)
    print(f"  {name:<22} {v:>12,.3f}   rounds: {', '.join(f'{x:,.3f}' for x in values)}")
PY
[[ $RECORD == 1 ]] && echo "profile: $OUT/perf.txt, by component: $OUT/buckets.md"
exit 0
