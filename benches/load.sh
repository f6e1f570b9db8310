#!/usr/bin/env bash
# Passthrough load benchmark: direct vs oz-capture-proxy vs nginx vs HAProxy, in one run, on one
# machine, in one of two settings (SETTING):
#   engine       no proxy writes an access log: the cost of the proxying itself (the default);
#   as_deployed  every proxy with its default access log (oz-capture-proxy's JSON lines on
#                stdout, nginx's unbuffered file, HAProxy's httplog on stdout), plus nginx with a
#                buffered log (`nginx_buffered`).
#
#   benches/load.sh                       # engine setting, full run
#   SETTING=as_deployed benches/load.sh   # every proxy logging as it does by default
#   QUICK=1 benches/load.sh               # shorter runs, one round
#
# What it does (BENCHMARKS.md explains the choices):
#   1. installs wrk, h2load (nghttp2-client), nginx and haproxy with apt-get when missing;
#   2. builds the release binary;
#   3. starts a static nginx as the loopback backend (1 KiB and 1 MiB files, no access log), and
#      in front of it oz-capture-proxy, an nginx reverse proxy (proxy_pass, upstream keepalive)
#      and HAProxy (nbthread 1, http-reuse always), all on 127.0.0.1; as deployed, also an nginx
#      with a buffered access log;
#   4. runs every scenario on every path (direct, then each proxy), round after round, in
#      rotating order, recording req/s, p50/p99/p99.9, CPU per 10k requests and RSS;
#   5. prints the Markdown tables (medians, ratios) and keeps raw outputs in $OUT.
#
# CPU placement on this 2-core machine: the systems under test (oz-capture-proxy, nginx,
# HAProxy) are pinned to CPU $CPU_SUT, only the measured one under load; the load generator and
# the backend share CPU $CPU_LOAD. Each proxy therefore gets exactly one core of its own (tokio
# sizes its worker pool from the affinity mask, so the proxy runs one worker; nginx runs
# worker_processes 1, HAProxy nbthread 1), and the generator and the backend are placed
# identically for every path.
#
# Environment knobs: QUICK, DURATION (s), ROUNDS, CONNS, RATE (req/s of the constant-rate
# scenario), CPU_SUT, CPU_LOAD, OUT (results directory), SKIP_BUILD=1, SCENARIOS (space-separated
# subset of: h1_1k h1_1m h1_1k_rate h2_1k h2_1m), SETTING (engine or as_deployed), NGINX_LOG_BUFFER
# (the buffer of `nginx_buffered` in as_deployed; default 64k, with `flush=1s`, the counterpart
# of oz-capture-proxy writing its lines when its worker goes idle), PRESERVE_HEADER_CASE (the
# proxy's forwarding.preserve_header_case; default false, as the proxy's own default).
set -euo pipefail

source "$(dirname "$0")/common.sh"
here=$bench_dir

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}
    ROUNDS=${ROUNDS:-1}
    WARMUP=${WARMUP:-1}
else
    DURATION=${DURATION:-10}
    ROUNDS=${ROUNDS:-3}
    WARMUP=${WARMUP:-1}
fi
CONNS=${CONNS:-32}
RATE=${RATE:-1000}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
SCENARIOS=${SCENARIOS:-"h1_1k h1_1m h1_1k_rate h2_1k h2_1m"}
SETTING=${SETTING:-engine}
NGINX_LOG_BUFFER=${NGINX_LOG_BUFFER:-64k}
OUT=${OUT:-$root/target/bench/load-$SETTING-$(date +%Y%m%d-%H%M%S)}
case $SETTING in
    engine) PATHS=(direct proxy nginx haproxy) ;;
    as_deployed) PATHS=(direct proxy nginx nginx_buffered haproxy) ;;
    *) log "SETTING must be engine or as_deployed, not $SETTING"; exit 2 ;;
esac
NPATHS=${#PATHS[@]}

ensure_tools
build_release
mkdir -p "$OUT"
read -r P_BACKEND P_BACKEND_H2 P_PROXY P_ADMIN P_NGINX P_NGINX_H2 P_OZ P_NGINXB P_NGINXB_H2 \
    P_HAPROXY <<<"$(free_ports 10)"

# --- the backend: static nginx on CPU_LOAD -----------------------------------------------------
start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"
mkdir -p "$tmp/nginx"

# --- the reference proxies on CPU_SUT -----------------------------------------------------------
# nginx proxy_pass with upstream keepalive. Does the same header work as oz-capture-proxy:
# X-Forwarded-For appended, X-Forwarded-Proto, X-Forwarded-Host, a request id when absent, Host
# passed on. proxy_max_temp_file_size 0 keeps 1 MiB responses in memory (no spill to a temp file),
# as oz-capture-proxy streams them. Its access log: none in the engine setting; as deployed, one
# unbuffered write per request (nginx's default), and for `nginx_buffered` a 64k buffer flushed
# every second.
NGINXB_MASTER=""
if [[ $SETTING == engine ]]; then
    peer_nginx_conf nginx "$P_NGINX" "$P_NGINX_H2" "$P_BACKEND" "access_log off;"
else
    peer_nginx_conf nginx "$P_NGINX" "$P_NGINX_H2" "$P_BACKEND" "access_log $tmp/nginx/access.log;"
    peer_nginx_conf nginx_buffered "$P_NGINXB" "$P_NGINXB_H2" "$P_BACKEND" \
        "access_log $tmp/nginx_buffered/access.log combined buffer=$NGINX_LOG_BUFFER flush=1s;"
    start_bg "$CPU_SUT" "$tmp/nginx_buffered/stderr" "$NGINX" -p "$tmp/nginx_buffered" \
        -c "$tmp/nginx_buffered/nginx.conf" -g 'daemon off;'
    NGINXB_MASTER=$last_pid
fi
start_bg "$CPU_SUT" "$tmp/nginx/stderr" "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" \
    -g 'daemon off;'
NGINX_MASTER=$last_pid

# HAProxy (Debian's 2.6): one thread, connection reuse on (`http-reuse always`: an idle backend
# connection serves any client's next request, as nginx's keepalive pool and oz-capture-proxy's
# do), HTTP/1.1 and h2c prior knowledge on one clear-text port (HAProxy tells them apart by the
# HTTP/2 preface), the same forwarding headers (`option forwardfor`, a request id when absent).
# Its access log: none in the engine setting; as deployed, `option httplog` to stdout (a file
# here), one line per request, as a container would run it.
mkdir -p "$tmp/haproxy"
haproxy_log=""
if [[ $SETTING == as_deployed ]]; then
    haproxy_log=$'    log stdout format raw local0\n    option httplog'
fi
peer_haproxy_conf "$tmp/haproxy/haproxy.cfg" "$P_HAPROXY" "$P_BACKEND" "$haproxy_log"
start_bg "$CPU_SUT" "$tmp/haproxy/stdout" "$HAPROXY" -db -f "$tmp/haproxy/haproxy.cfg"
HAPROXY_PID=$last_pid

# --- oz-capture-proxy on CPU_SUT, production defaults ------------------------------------------
# As deployed: its default JSON access log on stdout, which goes to a file, as a container
# runtime would collect it. Engine: the same with access lines filtered out (`access=off`).
if [[ $SETTING == engine ]]; then
    proxy_log=$'log:\n  level: "info,access=off"'
else
    proxy_log=""
fi
cat >"$tmp/proxy.yaml" <<EOF
listen: "127.0.0.1:$P_PROXY"
admin_listen: "127.0.0.1:$P_ADMIN"
backend:
  url: "http://127.0.0.1:$P_BACKEND"
oz:
  url: "http://127.0.0.1:$P_OZ"
  auth:
    token: "bench-token"
forwarding:
  preserve_header_case: ${PRESERVE_HEADER_CASE:-false}
capture:
  routes:
    - path: "/api/liveness/capture"
$proxy_log
EOF
start_bg "$CPU_SUT" "$tmp/proxy.log" "$BIN" --config "$tmp/proxy.yaml"
PROXY_PID=$last_pid

wait_http "http://127.0.0.1:$P_BACKEND/1k"
wait_http "http://127.0.0.1:$P_NGINX/1k"
wait_http "http://127.0.0.1:$P_HAPROXY/1k"
[[ -n $NGINXB_MASTER ]] && wait_http "http://127.0.0.1:$P_NGINXB/1k"
wait_http "http://127.0.0.1:$P_ADMIN/ready"
wait_http "http://127.0.0.1:$P_PROXY/1k"
NGINX_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"
NGINXB_PIDS=""
[[ -n $NGINXB_MASTER ]] && NGINXB_PIDS="$NGINXB_MASTER $(pgrep -P "$NGINXB_MASTER" | tr '\n' ' ')"

sut_pids() {
    case $1 in
        direct) echo "" ;;
        proxy) echo "$PROXY_PID" ;;
        nginx) echo "$NGINX_PIDS" ;;
        nginx_buffered) echo "$NGINXB_PIDS" ;;
        haproxy) echo "$HAPROXY_PID" ;;
    esac
}
access_log_of() {
    [[ $SETTING == engine ]] && { echo ""; return; }
    case $1 in
        proxy) echo "$tmp/proxy.log" ;;
        nginx) echo "$tmp/nginx/access.log" ;;
        nginx_buffered) echo "$tmp/nginx_buffered/access.log" ;;
        haproxy) echo "$tmp/haproxy/stdout" ;;
        *) echo "" ;;
    esac
}
h1_port() {
    case $1 in
        direct) echo "$P_BACKEND" ;; proxy) echo "$P_PROXY" ;; nginx) echo "$P_NGINX" ;;
        nginx_buffered) echo "$P_NGINXB" ;; haproxy) echo "$P_HAPROXY" ;;
    esac
}
h2_port() {
    case $1 in
        direct) echo "$P_BACKEND_H2" ;; proxy) echo "$P_PROXY" ;; nginx) echo "$P_NGINX_H2" ;;
        nginx_buffered) echo "$P_NGINXB_H2" ;; haproxy) echo "$P_HAPROXY" ;;
    esac
}

# Idle RSS: after start-up and the readiness probes above, before any load.
sleep 1
declare -A RSS_IDLE=([direct]=null)
for p in "${PATHS[@]}"; do
    [[ $p == direct ]] && continue
    # shellcheck disable=SC2046 # one word per PID
    RSS_IDLE[$p]=$(rss_kb $(sut_pids "$p"))
done
log "idle RSS (KiB): $(for p in "${PATHS[@]}"; do printf '%s %s  ' "$p" "${RSS_IDLE[$p]}"; done)"

# --- scenarios ---------------------------------------------------------------------------------
per_conn_rate=$(python3 -c "print(f'{$RATE/$CONNS:g}')")
declare -A DESCR=(
    [h1_1k]="HTTP/1.1 keep-alive, GET 1 KiB response, wrk closed loop, $CONNS connections (saturation)"
    [h1_1m]="HTTP/1.1 keep-alive, GET 1 MiB response, wrk closed loop, $CONNS connections (saturation)"
    [h1_1k_rate]="HTTP/1.1 keep-alive, GET 1 KiB, constant $RATE req/s (h2load --h1 --rps), $CONNS connections"
    [h2_1k]="HTTP/2 h2c prior knowledge, GET 1 KiB, h2load closed loop, 4 connections x 4 streams"
    [h2_1m]="HTTP/2 h2c prior knowledge, GET 1 MiB, h2load closed loop, 4 connections x 4 streams"
)

# run_tool SCENARIO PATH SECONDS PREFIX: runs the generator on CPU_LOAD; leaves PREFIX.out/.log
run_tool() {
    local s=$1 p=$2 secs=$3 prefix=$4
    local h1="http://127.0.0.1:$(h1_port "$p")" h2="http://127.0.0.1:$(h2_port "$p")"
    local gen=(on_cpu "$CPU_LOAD")
    case $s in
        h1_1k) "${gen[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "$here/wrk_stats.lua" "$h1/1k" ;;
        h1_1m) "${gen[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "$here/wrk_stats.lua" "$h1/1m" ;;
        h1_1k_rate) "${gen[@]}" h2load --h1 -c"$CONNS" --rps="$per_conn_rate" -D "$secs" \
            --log-file="$prefix.log" "$h1/1k" ;;
        h2_1k) "${gen[@]}" h2load -c4 -m4 -D "$secs" --log-file="$prefix.log" "$h2/1k" ;;
        h2_1m) "${gen[@]}" h2load -c4 -m4 -D "$secs" --log-file="$prefix.log" "$h2/1m" ;;
    esac >"$prefix.out" 2>&1
}

measure() { # SCENARIO PATH ROUND
    local s=$1 p=$2 r=$3
    local prefix="$OUT/raw/$s.$p.r$r"
    local pids_sut
    pids_sut=$(sut_pids "$p")
    # Warm-up: fills connection pools and caches; not measured.
    run_tool "$s" "$p" "$WARMUP" "$prefix.warmup" || true
    local alog
    alog=$(access_log_of "$p")
    [[ -n $alog ]] && : >"$alog"
    local c0=0 c1=0 sampler=""
    if [[ -n $pids_sut ]]; then
        c0=$(cpu_ticks $pids_sut)
        rss_sampler "$prefix.rss" 0.1 $pids_sut &
        sampler=$!
    fi
    local t0 t1 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    run_tool "$s" "$p" "$DURATION" "$prefix" || log "generator failed for $s/$p (see $prefix.out)"
    t1=$(date +%s.%N)
    local rss_load=null cpu_s=null
    if [[ -n $sampler ]]; then
        c1=$(cpu_ticks $pids_sut)
        kill -TERM "$sampler"
        wait "$sampler" 2>/dev/null || true
        rss_load=$(cat "$prefix.rss" 2>/dev/null || echo null)
        cpu_s=$(python3 -c "print(($c1-$c0)/$TICK)")
    fi
    local lines=null
    [[ -n $alog ]] && lines=$(wc -l <"$alog")
    local stats
    case $s in
        h1_1k | h1_1m) stats=$(python3 "$here/loadstat.py" wrk "$prefix.out") ;;
        *) stats=$(python3 "$here/loadstat.py" h2load "$prefix.out" "$prefix.log") ;;
    esac
    python3 - "$stats" "$s" "$p" "$r" "$cpu_s" "$rss_load" "$t0" "$t1" "$load" "$lines" \
        >>"$OUT/results.jsonl" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
s, p, r, cpu, rss, t0, t1, load, lines = sys.argv[2:]
d.update(scenario=s, path=p, round=int(r), loadavg=float(load),
         wall_s=float(t1) - float(t0),
         cpu_s=None if cpu == "null" else float(cpu),
         rss_load_kb=None if rss == "null" else int(rss),
         access_log_lines=None if lines == "null" else int(lines))
if d["cpu_s"] is not None and d.get("requests"):
    d["cpu_per_10k_s"] = d["cpu_s"] / d["requests"] * 10000
    d["core_use"] = d["cpu_s"] / d["wall_s"]
print(json.dumps(d))
EOF
    tail -n1 "$OUT/results.jsonl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
f = lambda v, k=1000: "-" if v is None else "%.3f" % (v / k)
print("  %-10s %-6s r%d  %9.0f req/s  p50 %s  p99 %s  p99.9 %s ms  cpu/10k %s s  log lines %s" % (
    d["scenario"], d["path"], d["round"], d.get("rps") or 0, f(d.get("p50_us")), f(d.get("p99_us")),
    f(d.get("p999_us")), f(d.get("cpu_per_10k_s"), 1), d.get("access_log_lines")))' >&2
}

mkdir -p "$OUT/raw"
: >"$OUT/results.jsonl"
{
    echo "uptime before: $(uptime)"
} >"$OUT/load.txt"

log "results in $OUT; $ROUNDS round(s) of ${DURATION}s runs; scenarios: $SCENARIOS"
read -r -a scen_list <<<"$SCENARIOS"
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    i=0
    for s in "${scen_list[@]}"; do
        for ((k = 0; k < NPATHS; k++)); do
            p=${PATHS[$(((k + r + i) % NPATHS))]}
            measure "$s" "$p" "$r"
        done
        i=$((i + 1))
    done
done
echo "uptime after: $(uptime)" >>"$OUT/load.txt"

# --- report ------------------------------------------------------------------------------------
python3 - "$OUT/meta.json" "$SCENARIOS" <<EOF
import json, sys, platform, subprocess
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip() or \
            subprocess.run(c, shell=True, capture_output=True, text=True).stderr.strip()
    except Exception as e:
        return str(e)
descr = {
$(for s in h1_1k h1_1m h1_1k_rate h2_1k h2_1m; do printf '    "%s": "%s",\n' "$s" "${DESCR[$s]}"; done)
}
meta = {
    "rss_idle_kb": {$(for p in "${PATHS[@]}"; do [[ $p == direct ]] || printf '"%s": %s, ' "$p" "${RSS_IDLE[$p]}"; done)},
    "setting": "$SETTING",
    "paths": [$(printf '"%s", ' "${PATHS[@]}")],
    "scenarios": descr,
    "duration_s": $DURATION, "rounds": $ROUNDS, "conns": $CONNS, "rate": $RATE,
    "cpu_sut": $CPU_SUT, "cpu_load": $CPU_LOAD,
    "nproc": sh("nproc"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    "kernel": platform.release(),
    "rustc": sh("rustc --version"),
    "nginx": sh("$NGINX -v 2>&1"),
    "haproxy": sh("$HAPROXY -v 2>&1 | head -1"),
    "wrk": sh("wrk -v 2>&1 | head -1"),
    "h2load": sh("h2load --version 2>&1 | head -1"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF

{
    echo "### Passthrough load, $SETTING ($(date -u +%Y-%m-%dT%H:%MZ), QUICK=$QUICK)"
    echo
    python3 -c "
import json; m = json.load(open('$OUT/meta.json'))
print(f\"Machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}; {m['rustc']}; {m['nginx']}; {m['haproxy']}; {m['wrk']}; {m['h2load']}.\")
print(f\"Runs of {m['duration_s']} s after a 1 s warm-up; SUT on CPU {m['cpu_sut']}, generator + backend on CPU {m['cpu_load']}.\")"
    sed 's/^/Load: /' "$OUT/load.txt"
    echo
    python3 "$here/loadstat.py" report "$OUT/results.jsonl" "$OUT/meta.json"
} >"$OUT/results.md"
cat "$OUT/results.md"
log "raw data and results.md in $OUT"
