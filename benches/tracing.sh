#!/usr/bin/env bash
# Tracing cost: passthrough CPU per request before tracing existed, with tracing off, and with
# tracing on at the default sample ratio and at 1.0, side by side in one run, on one machine.
#
#   benches/tracing.sh              # full run, about 15.5 minutes on 2 cores with the builds
#                                   # cached (the BEFORE build alone: 3-4 min from cold, 2 min after)
#   QUICK=1 benches/tracing.sh      # smoke run: 3 s runs, one round, one callgrind count (~3.5 min)
#
# What it does (BENCHMARKS.md, "Tracing cost", explains the choices):
#   1. installs wrk, h2load (nghttp2-client), nginx and valgrind with apt-get when missing;
#   2. builds two release binaries: AFTER, the current tree (target/release), and BEFORE, the
#      commit before tracing ($BEFORE_REV), from a `git worktree add --detach` in a scratch
#      directory, built into target/before (its dependencies stay cached there between runs;
#      the worktree is removed once built, and at exit);
#   3. starts a static nginx as the loopback backend, and a second nginx as a fake OTLP
#      collector (`POST /v1/traces` answered 200, the body discarded; each POST's size logged);
#   4. starts four oz-capture-proxy processes, all with load.sh's configuration (JSON access log
#      on stdout, to a file): `before` (BEFORE binary), `off` (AFTER, no `telemetry` section),
#      `ratio_0.01` and `ratio_1` (AFTER, `telemetry.otlp.endpoint` = the fake collector,
#      `sample_ratio` 0.01, the default, and 1.0);
#   5. runs every scenario on the four variants, round after round, in rotating order, only the
#      measured proxy under load; records req/s, p50/p99/p99.9, the proxy's CPU (utime+stime,
#      and the threads' schedstat run time, which has nanosecond resolution) per request, and for
#      the tracing variants the change of `oz_proxy_trace_spans_total{result}` over the run;
#   6. counts instructions per passthrough request with callgrind, benches/callgrind.sh's way,
#      for each of the four variants: the noise-free answer to "off costs nothing", and the
#      user-space instructions tracing adds at 0.01 and 1.0;
#   7. prints the Markdown tables (medians, ratios, added CPU per request) and keeps raw outputs
#      (results.jsonl, generator outputs, the proxies' configurations and start-up logs, anything
#      but access lines they logged during each run, the collector's log, callgrind outputs) in
#      $OUT.
#
# CPU placement on this 2-core machine, as in benches/load.sh: the four proxies are pinned to
# CPU $CPU_SUT (one tokio worker each; the three not measured are idle: an idle proxy, and an
# idle export task, wake up for nothing); the load generator, the backend and the fake collector
# share CPU $CPU_LOAD. So at ratio 1.0 the collector's work (one POST per batch of up to 512
# spans) is on the generator's core, and the proxy's export work (encoding, the POST) on its own.
#
# Measuring a run: a 1 s warm-up, then $SETTLE s of quiet (the warm-up's spans go out: a batch
# leaves after at most 1 s), then the proxy's CPU and span counters are read, the generator runs
# for $DURATION s, and after another $SETTLE s (the last batch goes out) they are read again. The
# CPU therefore includes exporting every span the run made. The same quiet periods are kept for
# every variant.
#
# Environment knobs: QUICK, DURATION (s), ROUNDS, WARMUP (s), SETTLE (s), CONNS, RATE (req/s of
# the constant-rate scenario), CPU_SUT, CPU_LOAD, OUT (results directory), SCENARIOS
# (space-separated subset of: h1_1k h1_1k_rate), BEFORE_REV (default bfc4021, the commit before
# tracing), BEFORE_BIN / AFTER_BIN (use these binaries, skip that build), SKIP_BUILD=1 (skip the
# AFTER build, as in load.sh), CALLGRIND (1: run the instruction counts, the default; 0: skip),
# CALLGRIND_ROUNDS (default 3, QUICK 1), REQUESTS (requests counted by callgrind, default 5000),
# NICE. OTEL_* variables are unset: they would change the proxies' tracing.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/common.sh"
here=$bench_dir

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}
    ROUNDS=${ROUNDS:-1}
else
    DURATION=${DURATION:-10}
    ROUNDS=${ROUNDS:-5}
fi
WARMUP=${WARMUP:-1}
SETTLE=${SETTLE:-2}
CONNS=${CONNS:-16}
RATE=${RATE:-1000}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
SCENARIOS=${SCENARIOS:-"h1_1k h1_1k_rate"}
BEFORE_REV=${BEFORE_REV:-bfc4021}
CALLGRIND=${CALLGRIND:-1}
REQUESTS=${REQUESTS:-5000}
if [[ $QUICK == 1 ]]; then CALLGRIND_ROUNDS=${CALLGRIND_ROUNDS:-1}; else CALLGRIND_ROUNDS=${CALLGRIND_ROUNDS:-3}; fi
OUT=${OUT:-$root/target/bench/tracing-$(date +%Y%m%d-%H%M%S)}
VARIANTS=(before off ratio_0.01 ratio_1)
nvar=${#VARIANTS[@]}

# The proxies read OTEL_* (OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_ENDPOINT…): none may leak in.
for v in "${!OTEL_@}"; do
    unset "$v"
done

# The BEFORE worktree goes when it is built, or at exit if the build is interrupted.
worktree=""
remove_worktree() {
    if [[ -n $worktree ]]; then
        git -C "$root" worktree remove --force "$worktree" 2>/dev/null || true
        worktree=""
    fi
}
trap 'remove_worktree; cleanup' EXIT

ensure_tools
if [[ $CALLGRIND == 1 ]] && ! command -v valgrind >/dev/null; then
    apt_install valgrind
fi

# --- the two binaries --------------------------------------------------------------------------
if [[ -n ${AFTER_BIN:-} ]]; then
    BIN=$AFTER_BIN
    SKIP_BUILD=1
fi
# shellcheck disable=SC2119 # no extra cargo arguments
build_release
AFTER_BIN=$BIN
after_rev="$(git -C "$root" rev-parse --short HEAD)"
after_dirty=$(git -C "$root" status --porcelain --untracked-files=no | wc -l)
((after_dirty == 0)) || after_rev="$after_rev + $after_dirty changed file(s)"

before_rev=$(git -C "$root" rev-parse --short "$BEFORE_REV^{commit}")
if [[ -z ${BEFORE_BIN:-} ]]; then
    worktree="$tmp/before-src"
    git -C "$root" worktree add --quiet --detach "$worktree" "$before_rev"
    log "building $BEFORE_REV ($before_rev) into target/before"
    (cd "$worktree" && cargo build --release --locked --quiet --bin oz-capture-proxy \
        --target-dir "$root/target/before")
    remove_worktree
    BEFORE_BIN=$root/target/before/release/oz-capture-proxy
else
    before_rev="$before_rev (BEFORE_BIN=$BEFORE_BIN)"
fi
# Copies of the two executables (not of any target dir): a rebuild in the tree during the run
# must not swap what callgrind measures at the end.
mkdir -p "$tmp/bin"
cp "$BEFORE_BIN" "$tmp/bin/before"
cp "$AFTER_BIN" "$tmp/bin/after"
declare -A BIN_OF=([before]=$tmp/bin/before [off]=$tmp/bin/after [ratio_0.01]=$tmp/bin/after
    [ratio_1]=$tmp/bin/after)
declare -A RATIO_OF=([before]="" [off]="" [ratio_0.01]=0.01 [ratio_1]=1.0)

mkdir -p "$OUT/raw"
read -r -a ports <<<"$(free_ports $((4 + 2 * nvar)))"
P_BACKEND=${ports[0]} P_BACKEND_H2=${ports[1]} P_COLLECTOR=${ports[2]} P_OZ=${ports[3]}
declare -A P_PROXY P_ADMIN
for ((k = 0; k < nvar; k++)); do
    P_PROXY[${VARIANTS[k]}]=${ports[4 + 2 * k]}
    P_ADMIN[${VARIANTS[k]}]=${ports[5 + 2 * k]}
done
user_line=$(nginx_user_line)

# --- the backend: static nginx on CPU_LOAD -----------------------------------------------------
start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"

# --- the fake OTLP collector: nginx on CPU_LOAD, 200 to every POST /v1/traces --------------------
# `return 200` discards the request body; client_max_body_size 0 lets any batch through. The log
# has one line per export POST: its body's size (Content-Length; nginx's \$request_length leaves
# out a discarded body) and the status.
mkdir -p "$tmp/collector"
cat >"$tmp/collector/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $tmp/collector/nginx.pid;
error_log $tmp/collector/error.log warn;
events { worker_connections 1024; }
http {
    log_format otlp '\$http_content_length \$status';
    access_log $tmp/collector/access.log otlp;
    client_max_body_size 0;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $tmp/collector/body;
    server {
        listen 127.0.0.1:$P_COLLECTOR;
        location /v1/traces { return 200; }
        location / { return 404; }
    }
}
EOF
start_bg "$CPU_LOAD" "$tmp/collector/stderr" "$NGINX" -p "$tmp/collector" \
    -c "$tmp/collector/nginx.conf" -g 'daemon off;'
COLLECTOR_LOG=$tmp/collector/access.log

# --- the four proxies on CPU_SUT -----------------------------------------------------------------
declare -A PID_OF
for v in "${VARIANTS[@]}"; do
    cat >"$tmp/$v.yaml" <<EOF
listen: "127.0.0.1:${P_PROXY[$v]}"
admin_listen: "127.0.0.1:${P_ADMIN[$v]}"
backend:
  url: "http://127.0.0.1:$P_BACKEND"
oz:
  url: "http://127.0.0.1:$P_OZ"
  auth:
    token: "bench-token"
# Header case kept, as the default was when BENCHMARKS.md "Tracing cost" was measured (issue 17).
forwarding:
  preserve_header_case: true
capture:
  routes:
    - path: "/api/liveness/capture"
EOF
    if [[ -n ${RATIO_OF[$v]} ]]; then
        cat >>"$tmp/$v.yaml" <<EOF
telemetry:
  otlp:
    endpoint: "http://127.0.0.1:$P_COLLECTOR"
    sample_ratio: ${RATIO_OF[$v]}
EOF
    fi
    # stdout (the access log) goes to a file, as a container runtime would collect it.
    start_bg "$CPU_SUT" "$tmp/$v.log" "${BIN_OF[$v]}" --config "$tmp/$v.yaml"
    PID_OF[$v]=$last_pid
done

wait_http "http://127.0.0.1:$P_BACKEND/1k"
wait_http "http://127.0.0.1:$P_COLLECTOR/v1/traces"
for v in "${VARIANTS[@]}"; do
    wait_http "http://127.0.0.1:${P_ADMIN[$v]}/ready"
    wait_http "http://127.0.0.1:${P_PROXY[$v]}/1k"
done
for v in "${VARIANTS[@]}"; do
    cp "$tmp/$v.yaml" "$OUT/$v.yaml"
    cp "$tmp/$v.log" "$OUT/$v.startup.log"
done
# The collector must answer an export POST with 200, or every span would count as failed.
head -c 200000 /dev/urandom >"$tmp/collector/probe.bin"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/x-protobuf' \
    --data-binary @"$tmp/collector/probe.bin" "http://127.0.0.1:$P_COLLECTOR/v1/traces")
[[ $code == 200 ]] || { log "the fake collector answered $code to a POST, not 200"; exit 1; }
log "fake OTLP collector on 127.0.0.1:$P_COLLECTOR answers POST /v1/traces with 200"

# spans PORT: exported queue_full export_failed shutdown, from the admin /metrics ("- - - -" when
# the binary has no such counter, as before tracing).
spans() {
    curl -fs "http://127.0.0.1:$1/metrics" | awk '
        /^oz_proxy_trace_spans_total\{/ {
            split($0, a, "\""); n[a[2]] = $NF; seen = 1
        }
        END {
            if (!seen) { print "- - - -"; exit }
            printf "%d %d %d %d\n", n["exported"], n["queue_full"], n["export_failed"], n["shutdown"]
        }'
}

# sched_ns PID: run time of the process's threads in ns (first field of each task's schedstat).
sched_ns() {
    local t=0 f a _
    for f in /proc/"$1"/task/*/schedstat; do
        { read -r a _ <"$f"; } 2>/dev/null && t=$((t + a))
    done
    echo "$t"
}

# collector_posts: number and total body bytes of the export POSTs the collector has logged.
collector_posts() {
    awk '$1 != "-" { n++; b += $1 } END { printf "%d %d\n", n, b }' "$COLLECTOR_LOG" 2>/dev/null ||
        echo "0 0"
}

# --- scenarios ---------------------------------------------------------------------------------
per_conn_rate=$(python3 -c "print(f'{$RATE/$CONNS:g}')")
declare -A DESCR=(
    [h1_1k]="HTTP/1.1 keep-alive, GET 1 KiB response, wrk closed loop, $CONNS connections (saturation)"
    [h1_1k_rate]="HTTP/1.1 keep-alive, GET 1 KiB, constant $RATE req/s (h2load --h1 --rps), $CONNS connections"
)

# run_tool SCENARIO VARIANT SECONDS PREFIX: runs the generator on CPU_LOAD; leaves PREFIX.out/.log
run_tool() {
    local s=$1 v=$2 secs=$3 prefix=$4
    local h1="http://127.0.0.1:${P_PROXY[$v]}"
    local gen=(on_cpu "$CPU_LOAD")
    case $s in
        h1_1k) "${gen[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "$here/wrk_stats.lua" "$h1/1k" ;;
        h1_1k_rate) "${gen[@]}" h2load --h1 -c"$CONNS" --rps="$per_conn_rate" -D "$secs" \
            --log-file="$prefix.log" "$h1/1k" ;;
        *) log "unknown scenario $s"; return 1 ;;
    esac >"$prefix.out" 2>&1
}

measure() { # SCENARIO VARIANT ROUND
    local s=$1 v=$2 r=$3
    local prefix="$OUT/raw/$s.$v.r$r" pid=${PID_OF[$v]} admin=${P_ADMIN[$v]}
    # Warm-up: fills connection pools and caches; not measured. Then quiet, so the warm-up's
    # spans are exported before the counters are read.
    run_tool "$s" "$v" "$WARMUP" "$prefix.warmup" || true
    sleep "$SETTLE"
    : >"$tmp/$v.log"
    local sp0 sp1 co0 co1 c0 c1 n0 n1 t0 t1 load
    sp0=$(spans "$admin")
    co0=$(collector_posts)
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_ticks "$pid")
    n0=$(sched_ns "$pid")
    t0=$(date +%s.%N)
    run_tool "$s" "$v" "$DURATION" "$prefix" || log "generator failed for $s/$v (see $prefix.out)"
    t1=$(date +%s.%N)
    # The last batch leaves at most 1 s after its first span; its export is part of the cost.
    sleep "$SETTLE"
    c1=$(cpu_ticks "$pid")
    n1=$(sched_ns "$pid")
    sp1=$(spans "$admin")
    co1=$(collector_posts)
    local lines other rss stats
    lines=$(wc -l <"$tmp/$v.log")
    # Anything the proxy logged beside access lines (a failed export would be a warning here).
    grep -v '"target":"access"}$' "$tmp/$v.log" >"$prefix.proxy-other.log" || true
    other=$(wc -l <"$prefix.proxy-other.log")
    rss=$(rss_kb "$pid")
    case $s in
        h1_1k) stats=$(python3 "$here/loadstat.py" wrk "$prefix.out") ;;
        *) stats=$(python3 "$here/loadstat.py" h2load "$prefix.out" "$prefix.log") ;;
    esac
    python3 - "$stats" "$s" "$v" "$r" "$c0" "$c1" "$TICK" "$n0" "$n1" "$t0" "$t1" "$load" \
        "$lines" "$other" "$rss" "$sp0" "$sp1" "$co0" "$co1" "${RATIO_OF[$v]}" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
s, v, r, c0, c1, tick, n0, n1, t0, t1, load, lines, other, rss, sp0, sp1, co0, co1, ratio = sys.argv[2:]
d.update(scenario=s, variant=v, round=int(r), loadavg=float(load),
         sample_ratio=float(ratio) if ratio else None,
         wall_s=float(t1) - float(t0),
         cpu_ticks=int(c1) - int(c0),
         cpu_s=(int(c1) - int(c0)) / int(tick),
         sched_cpu_s=(int(n1) - int(n0)) / 1e9,
         rss_after_kb=int(rss), access_log_lines=int(lines), other_log_lines=int(other))
keys = ("exported", "queue_full", "export_failed", "shutdown")
a, b = sp0.split(), sp1.split()
if "-" not in a + b:
    d["spans"] = {k: int(y) - int(x) for k, x, y in zip(keys, a, b)}
    d["spans_total"] = {k: int(y) for k, y in zip(keys, b)}
(p0, b0), (p1, b1) = (map(int, co0.split()), map(int, co1.split()))
d["collector_posts"], d["collector_bytes"] = p1 - p0, b1 - b0
if d.get("requests"):
    n = d["requests"]
    d["cpu_per_10k_s"] = d["cpu_s"] / n * 10000
    d["cpu_per_req_us"] = d["cpu_s"] / n * 1e6
    d["sched_per_req_us"] = d["sched_cpu_s"] / n * 1e6
    d["core_use"] = d["cpu_s"] / d["wall_s"]
print(json.dumps(d))
EOF
    tail -n1 "$OUT/results.jsonl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
f = lambda v, k=1000: "-" if v is None else "%.3f" % (v / k)
line = "  %-10s %-10s r%d  %9.0f req/s  p50 %s  p99 %s ms  cpu/10k %s s (%d ticks)  sched %s us/req  log lines %s" % (
    d["scenario"], d["variant"], d["round"], d.get("rps") or 0, f(d.get("p50_us")), f(d.get("p99_us")),
    f(d.get("cpu_per_10k_s"), 1), d["cpu_ticks"], f(d.get("sched_per_req_us"), 1), d["access_log_lines"])
if d["other_log_lines"]:
    line += "  (+%d other log lines)" % d["other_log_lines"]
sp = d.get("spans")
if sp is not None and d.get("sample_ratio") is not None:
    line += "\n  %32s spans exported %d, queue_full %d, export_failed %d, shutdown %d; %d POSTs, %d bytes to the collector" % (
        "", sp["exported"], sp["queue_full"], sp["export_failed"], sp["shutdown"],
        d["collector_posts"], d["collector_bytes"])
print(line)' >&2
}

: >"$OUT/results.jsonl"
echo "uptime before: $(uptime)" >"$OUT/load.txt"

log "results in $OUT; $ROUNDS round(s) of ${DURATION}s runs; scenarios: $SCENARIOS"
log "BEFORE $before_rev, AFTER $after_rev"
read -r -a scen_list <<<"$SCENARIOS"
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    i=0
    for s in "${scen_list[@]}"; do
        for ((k = 0; k < nvar; k++)); do
            measure "$s" "${VARIANTS[$(((k + r + i) % nvar))]}" "$r"
        done
        i=$((i + 1))
    done
done
echo "uptime after: $(uptime)" >>"$OUT/load.txt"
cp "$COLLECTOR_LOG" "$OUT/collector.log"

# --- callgrind: instructions per passthrough request, every variant ----------------------------
# benches/callgrind.sh's procedure (the proxy unpinned under `valgrind --tool=callgrind`, 500
# requests of warm-up, counters zeroed, $REQUESTS GET /1k over 4 keep-alive HTTP/1.1 connections
# with h2load, counters dumped), run here on each variant's binary and configuration against this
# script's backend and collector, with $SETTLE s of quiet before zeroing and before dumping so the
# count holds the export of exactly the measured requests' spans. User-space instructions only:
# no noise from the machine, no kernel time. Counts still move by a few hundred instructions per
# request from one run to the next (two tokio workers, scheduled as it happens), hence
# $CALLGRIND_ROUNDS rounds in rotating order.
count_instructions() { # VARIANT ROUND
    local v=$1 r=$2
    local dir="$OUT/callgrind/$v.r$r" pp pa vg sp0 sp1 co0 co1 total
    mkdir -p "$dir"
    read -r pp pa <<<"$(free_ports 2)"
    sed -e "s/^listen: .*/listen: \"127.0.0.1:$pp\"/" \
        -e "s/^admin_listen: .*/admin_listen: \"127.0.0.1:$pa\"/" "$tmp/$v.yaml" >"$dir/proxy.yaml"
    start_bg - "$dir/proxy.log" valgrind --tool=callgrind \
        --callgrind-out-file="$dir/callgrind.out" "${BIN_OF[$v]}" --config "$dir/proxy.yaml"
    vg=$last_pid
    wait_http "http://127.0.0.1:$pa/ready" 60
    h2load --h1 -c4 -n 500 "http://127.0.0.1:$pp/1k" >/dev/null
    sleep "$SETTLE"
    sp0=$(spans "$pa")
    co0=$(collector_posts)
    callgrind_control -z "$vg" >/dev/null
    h2load --h1 -c4 -n "$REQUESTS" "http://127.0.0.1:$pp/1k" >"$dir/h2load.txt"
    sleep "$SETTLE"
    callgrind_control -d "$vg" >/dev/null
    co1=$(collector_posts)
    sp1=$(spans "$pa")
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    if ! grep -q "$REQUESTS succeeded" "$dir/h2load.txt"; then
        log "callgrind $v: not every request succeeded (see $dir/h2load.txt)"
        return 1
    fi
    # callgrind_control -d writes callgrind.out.1 (the measured requests).
    total=$(callgrind_annotate "$dir/callgrind.out.1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [[ -n $total ]] || { log "callgrind $v: no totals in $dir/callgrind.out.1"; return 1; }
    callgrind_annotate --inclusive=yes "$dir/callgrind.out.1" >"$dir/inclusive.txt" 2>/dev/null || true
    rm -f "$dir/callgrind.out" # the final dump at exit: only the shutdown
    log "callgrind $v r$r: $((total / REQUESTS)) instructions per request; spans $sp0 -> $sp1"
    echo "$v $r $total $REQUESTS $sp0 $sp1 $((${co1% *} - ${co0% *}))" >>"$OUT/callgrind.txt"
}
: >"$OUT/callgrind.txt"
if [[ $CALLGRIND == 1 ]]; then
    for ((r = 1; r <= CALLGRIND_ROUNDS; r++)); do
        for ((k = 0; k < nvar; k++)); do
            count_instructions "${VARIANTS[$(((k + r) % nvar))]}" "$r" || true
        done
    done
fi

# --- report ------------------------------------------------------------------------------------
python3 - "$OUT/meta.json" <<EOF
import json, sys, platform, subprocess
def sh(c):
    r = subprocess.run(c, shell=True, capture_output=True, text=True)
    return r.stdout.strip() or r.stderr.strip()
meta = {
    "scenarios": {
$(for s in h1_1k h1_1k_rate; do printf '        "%s": "%s",\n' "$s" "${DESCR[$s]}"; done)
    },
    "before": "$before_rev", "after": "$after_rev",
    "duration_s": $DURATION, "rounds": $ROUNDS, "warmup_s": $WARMUP, "settle_s": $SETTLE,
    "conns": $CONNS, "rate": $RATE, "cpu_sut": $CPU_SUT, "cpu_load": $CPU_LOAD, "tick_hz": $TICK,
    "nproc": sh("nproc"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    "kernel": platform.release(),
    "rustc": sh("rustc --version"),
    "nginx": sh("$NGINX -v 2>&1"),
    "wrk": sh("wrk -v 2>&1 | head -1"),
    "h2load": sh("h2load --version 2>&1 | head -1"),
    "valgrind": sh("valgrind --version 2>/dev/null"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF

{
    echo "### Tracing cost ($(date -u +%Y-%m-%dT%H:%MZ), QUICK=$QUICK)"
    echo
    python3 -c "
import json; m = json.load(open('$OUT/meta.json'))
print(f\"Machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}; {m['rustc']}; {m['nginx']}; {m['wrk']}; {m['h2load']}.\")
print(f\"BEFORE = {m['before']}, AFTER = {m['after']}. Runs of {m['duration_s']} s after a {m['warmup_s']} s warm-up and {m['settle_s']} s of quiet, CPU read {m['settle_s']} s after the run; proxies on CPU {m['cpu_sut']}, generator + backend + fake collector on CPU {m['cpu_load']}.\")"
    sed 's/^/Load: /' "$OUT/load.txt"
    echo
    python3 - "$OUT/results.jsonl" "$OUT/meta.json" "$OUT/callgrind.txt" <<'EOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
meta = json.load(open(sys.argv[2], encoding="utf-8"))
VARIANTS = ["before", "off", "ratio_0.01", "ratio_1"]
NAMES = {
    "before": "before (BEFORE binary)",
    "off": "off (no telemetry)",
    "ratio_0.01": "on, sample_ratio 0.01",
    "ratio_1": "on, sample_ratio 1.0",
}

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, nd=2):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"

def sfmt(v, nd=3):
    return "—" if v is None else f"{v:+.{nd}f}"

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

rounds = max((r["round"] for r in rows), default=0)
out = [
    f"Medians of {rounds} round(s); each round runs every scenario on every variant, in rotating "
    "order. Latency in ms. CPU = the proxy process's utime+stime (clock ticks of "
    f"{1000 / meta['tick_hz']:.0f} ms) per 10,000 requests, export of the run's spans included; "
    "range = lowest–highest run. ÷ before, ÷ off: ratio of the medians. Added µs/req: the "
    "variant's median CPU per request minus that of `off` (for `off`, minus that of `before`). "
    "sched: the same from the threads' schedstat run time (ns resolution).",
    "",
]
scen = []
for r in rows:
    if r["scenario"] not in scen:
        scen.append(r["scenario"])
for s in scen:
    out.append(f"#### {s}: {meta['scenarios'].get(s, '')}")
    out.append("")
    out.append("| variant | req/s | p50 | p99 | errors | CPU s/10k req | range | ÷ before | ÷ off "
               "| added µs/req | sched µs/req | sched ÷ off | sched added µs/req |")
    out.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    m = {}
    for v in VARIANTS:
        rs = [r for r in rows if r["scenario"] == s and r["variant"] == v]
        if not rs:
            continue
        c10 = [r.get("cpu_per_10k_s") for r in rs if r.get("cpu_per_10k_s") is not None]
        m[v] = {
            "rps": med([r.get("rps") for r in rs]),
            "p50": med([r.get("p50_us") for r in rs]),
            "p99": med([r.get("p99_us") for r in rs]),
            "errors": sum((r.get("errors") or 0) + (r.get("status_errors") or 0) for r in rs),
            "cpu10k": med(c10),
            "lo": min(c10) if c10 else None,
            "hi": max(c10) if c10 else None,
            "us": med([r.get("cpu_per_req_us") for r in rs]),
            "sus": med([r.get("sched_per_req_us") for r in rs]),
            "rows": rs,
        }
    for v, d in m.items():
        base = "before" if v == "off" else "off"
        added = None if v == "before" or base not in m else d["us"] - m[base]["us"]
        sadded = None if v == "before" or base not in m else d["sus"] - m[base]["sus"]
        ms = lambda us: None if us is None else us / 1000.0
        out.append(
            f"| {NAMES[v]} | {fmt(d['rps'], 0)} | {fmt(ms(d['p50']), 3)} | {fmt(ms(d['p99']), 3)} | "
            f"{d['errors']} | {fmt(d['cpu10k'], 4)} | {fmt(d['lo'], 4)}–{fmt(d['hi'], 4)} | "
            f"{fmt(ratio(d['cpu10k'], m.get('before', {}).get('cpu10k')), 3)} | "
            f"{fmt(ratio(d['cpu10k'], m.get('off', {}).get('cpu10k')), 3) if v != 'before' else '—'} | "
            f"{sfmt(added)} | {fmt(d['sus'], 3)} | "
            f"{fmt(ratio(d['sus'], m.get('off', {}).get('sus')), 3) if v != 'before' else '—'} | "
            f"{sfmt(sadded)} |"
        )
    out.append("")
    traced = [v for v in ("ratio_0.01", "ratio_1") if v in m]
    if traced:
        out.append("| variant | requests (all runs) | spans exported | queue_full | export_failed "
                   "| shutdown | exported spans / request | POSTs to the collector | body bytes posted |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for v in traced:
            rs = m[v]["rows"]
            n = sum(r.get("requests") or 0 for r in rs)
            sp = {k: sum(r.get("spans", {}).get(k, 0) for r in rs)
                  for k in ("exported", "queue_full", "export_failed", "shutdown")}
            posts = sum(r.get("collector_posts", 0) for r in rs)
            nbytes = sum(r.get("collector_bytes", 0) for r in rs)
            out.append(
                f"| {NAMES[v]} | {n:,} | {sp['exported']:,} | {sp['queue_full']:,} | "
                f"{sp['export_failed']:,} | {sp['shutdown']:,} | "
                f"{(sp['exported'] / n if n else 0):.4f} | {posts:,} | {nbytes:,} |"
            )
        out.append("")

cg = {}
for line in open(sys.argv[3], encoding="utf-8"):
    p = line.split()
    if len(p) != 13:
        continue
    v, total, n = p[0], int(p[2]), int(p[3])
    sp = None if "-" in p[4:] else {
        k: int(b) - int(a) for k, a, b in
        zip(("exported", "queue_full", "export_failed", "shutdown"), p[4:8], p[8:12])}
    cg.setdefault(v, []).append({"n": n, "per": total / n, "spans": sp, "posts": int(p[12])})
if cg:
    n = next(iter(cg.values()))[0]["n"]
    runs = max(len(x) for x in cg.values())
    out.append(f"Instructions per passthrough request, counted by callgrind (benches/callgrind.sh's "
               f"procedure: GET /1k, {n:,} requests over 4 keep-alive HTTP/1.1 connections, the "
               f"proxy unpinned; export of the measured requests' spans included); median of "
               f"{runs} count(s) per variant, range = lowest–highest:")
    out.append("")
    out.append("| variant | binary | instructions per request | range | ÷ before | ÷ off "
               "| added per request vs off | spans exported per count (queue_full, export_failed; POSTs) |")
    out.append("|---|---|---:|---|---:|---:|---:|---|")
    per = {v: med([x["per"] for x in xs]) for v, xs in cg.items()}
    for v in VARIANTS:
        if v not in cg:
            continue
        xs = cg[v]
        b = "before" if v == "before" else "after"
        rb = ratio(per[v], per.get("before"))
        ro = ratio(per[v], per.get("off")) if v != "before" else None
        base = "before" if v == "off" else "off"
        added = None if v == "before" or base not in per else per[v] - per[base]
        sps = "—"
        if v not in ("before", "off") and all(x["spans"] for x in xs):
            sps = ", ".join(f"{x['spans']['exported']:,} ({x['spans']['queue_full']}, "
                            f"{x['spans']['export_failed']}; {x['posts']})" for x in xs)
        lo, hi = min(x["per"] for x in xs), max(x["per"] for x in xs)
        out.append(f"| {NAMES[v]} | {meta[b]} | {per[v]:,.0f} | {lo:,.0f}–{hi:,.0f} | "
                   f"{fmt(rb, 4)} | {fmt(ro, 4)} | "
                   f"{'—' if added is None else f'{added:+,.0f}'}"
                   f"{' (vs before)' if v == 'off' else ''} | {sps} |")
    out.append("")
print("\n".join(out))
EOF
} >"$OUT/results.md"
cat "$OUT/results.md"
log "raw data and results.md in $OUT"
