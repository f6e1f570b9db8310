#!/usr/bin/env bash
# Floods and slow clients: oz-capture-proxy vs an nginx reverse proxy, side by side, in one run.
#
#   benches/flood.sh                # full run, about 11.5 minutes on 2 cores
#   QUICK=1 benches/flood.sh        # about 3 minutes: 5 s flood runs, one round
#
# Parts (PARTS, space-separated, default all four, in this order):
#   memory     memory per idle keep-alive connection: IDLE_CONNS (10,000) connections that each
#              made one GET and stay idle; RSS before and with them, (RSS delta) / IDLE_CONNS;
#              then they close, RSS after, and a second pass on the same process. One SUT at a
#              time, with timeouts long enough (MEM_TIMEOUT, 300s) that nothing is closed.
#   keepalive  what each SUT does with idle keep-alive connections under its defaults (proxy:
#              header_read_timeout 10s; nginx: client_header_timeout 10s, keepalive_timeout 300s):
#              KA_CONNS connections held KA_HOLD seconds, server closes counted and timed.
#   limit      oz-capture-proxy with server.max_connections LIMIT_MAX (5,000) and IDLE_CONNS
#              connections arriving at once: how many are served, how many wait (client view,
#              the listener's accept queue, oz_proxy_connections_open and
#              oz_proxy_connection_limit_reached_total), then RELEASE of the served connections
#              close and the waiting ones are served.
#   flood      a constant RATE req/s of GET /1k (h2load --h1 --rps, CONNS connections, as
#              load.sh's h1_1k_rate) through each SUT, with no flood, with a slowloris flood
#              (SLOW_CONNS connections sending a request head one byte every SLOW_INTERVAL s,
#              replaced when cut), with stalled bodies (STALL_CONNS POSTs that send STALL_BODY
#              bytes of a 2 x STALL_BODY body and stop, replaced when cut) and with both; the
#              timeouts are TIMEOUT (5s: header_read_timeout = client_header_timeout,
#              body_idle_timeout = client_body_timeout). ROUNDS rounds, order rotating; each run
#              waits FLOOD_WARMUP s after the flood starts, then measures DURATION s.
#
# Placement as in load.sh: the SUT on CPU $CPU_SUT (one tokio worker; nginx worker_processes 1),
# the load generator, the flood clients (at nice $FLOOD_NICE) and the static nginx backend on
# CPU $CPU_LOAD. The backend gets one more location, /post, that reads a whole request body before
# answering (nginx buffers it, then fetches /1k from itself), so a stalled body is held by
# whichever proxy streams it.
#
# Prints Markdown tables; raw outputs (per-run JSON, flood client summaries, h2load logs, SUT
# logs) stay in $OUT (target/bench/flood-<time>/). Other knobs: CPU_SUT, CPU_LOAD, OUT,
# SKIP_BUILD=1, BIN (a binary to measure instead of the one built here), NICE.
set -euo pipefail

source "$(dirname "$0")/common.sh"
here=$bench_dir

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-5}
    ROUNDS=${ROUNDS:-1}
else
    DURATION=${DURATION:-15}
    ROUNDS=${ROUNDS:-3}
fi
PARTS=${PARTS:-"memory keepalive limit flood"}
IDLE_CONNS=${IDLE_CONNS:-10000}
MEM_TIMEOUT=${MEM_TIMEOUT:-300s}
KA_CONNS=${KA_CONNS:-1000}
KA_HOLD=${KA_HOLD:-15}
LIMIT_MAX=${LIMIT_MAX:-5000}
RELEASE=${RELEASE:-1000}
TIMEOUT=${TIMEOUT:-5}
SLOW_CONNS=${SLOW_CONNS:-2000}
SLOW_INTERVAL=${SLOW_INTERVAL:-2}
STALL_CONNS=${STALL_CONNS:-500}
STALL_BODY=${STALL_BODY:-32768}
FLOOD_WARMUP=${FLOOD_WARMUP:-$((TIMEOUT + 2))}
SCENARIOS=${SCENARIOS:-"none slowloris stall both"}
CONNS=${CONNS:-16}
RATE=${RATE:-1000}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
FLOOD_NICE=${FLOOD_NICE:-19}
OUT=${OUT:-$root/target/bench/flood-$(date +%Y%m%d-%H%M%S)}
PATHS=(proxy nginx)

# Every process started here inherits this: 10,000 connections need 10,000 descriptors in the
# client and in the SUT.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < IDLE_CONNS + 1000)); then
    log "ulimit -n is $(ulimit -n); IDLE_CONNS=$IDLE_CONNS needs $((IDLE_CONNS + 1000))"
    exit 1
fi
NGINX_CONNS=$((IDLE_CONNS + 2000))
NGINX_NOFILE=$(ulimit -n)

ensure_tools
build_release
mkdir -p "$OUT/raw"
read -r P_BACKEND P_BACKEND_H2 P_PROXY P_ADMIN P_NGINX P_OZ <<<"$(free_ports 6)"
user_line=$(nginx_user_line)
{
    echo "uptime before: $(uptime)"
} >"$OUT/load.txt"
log "results in $OUT; parts: $PARTS"

# --- the backend: static nginx on CPU_LOAD, plus /post --------------------------------------------
BACKEND_EXTRA="        location = /post {
            client_max_body_size 64m;
            client_body_timeout 600s;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_pass http://127.0.0.1:$P_BACKEND/1k;
        }"
start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"
wait_http "http://127.0.0.1:$P_BACKEND/1k"

# --- the systems under test ------------------------------------------------------------------------
# start_proxy NAME HEADER_TIMEOUT BODY_TIMEOUT [MAX_CONNECTIONS]: oz-capture-proxy on CPU_SUT with
# load.sh's defaults (JSON access log on stdout, to a file). Sets PROXY_PID, SUT_PIDS.
start_proxy() {
    local name=$1 hdr=$2 body=$3 maxc=${4:-}
    cat >"$tmp/$name.yaml" <<EOF
listen: "127.0.0.1:$P_PROXY"
admin_listen: "127.0.0.1:$P_ADMIN"
backend:
  url: "http://127.0.0.1:$P_BACKEND"
server:
  header_read_timeout: "$hdr"
  body_idle_timeout: "$body"
${maxc:+  max_connections: $maxc}
oz:
  url: "http://127.0.0.1:$P_OZ"
  auth:
    token: "bench-token"
capture:
  routes:
    - path: "/api/liveness/capture"
EOF
    cp "$tmp/$name.yaml" "$OUT/raw/$name.yaml"
    start_bg "$CPU_SUT" "$OUT/raw/$name.log" "$BIN" --config "$tmp/$name.yaml"
    PROXY_PID=$last_pid
    SUT_PIDS=$PROXY_PID
    wait_http "http://127.0.0.1:$P_ADMIN/ready"
    wait_http "http://127.0.0.1:$P_PROXY/1k"
}

# start_nginx NAME CLIENT_HEADER_TIMEOUT CLIENT_BODY_TIMEOUT: the nginx reverse proxy of load.sh
# (proxy_pass, upstream keepalive, the same header work, access log on) on CPU_SUT, one worker,
# keepalive_timeout 300s, room for IDLE_CONNS client connections. Sets NGINX_MASTER, SUT_PIDS.
start_nginx() {
    local name=$1 hdr=$2 body=$3 d=$tmp/$1
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
$user_line
worker_processes 1;
worker_rlimit_nofile $NGINX_NOFILE;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $NGINX_CONNS; }
http {
    access_log $d/access.log;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_header_timeout $hdr;
    client_body_timeout $body;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 3s;
    }
    map \$http_x_request_id \$req_id { "" \$request_id; default \$http_x_request_id; }
    server {
        listen 127.0.0.1:$P_NGINX backlog=1024;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Request-Id \$req_id;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    cp "$d/nginx.conf" "$OUT/raw/$name.nginx.conf"
    start_bg "$CPU_SUT" "$OUT/raw/$name.stderr" "$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
    NGINX_MASTER=$last_pid
    wait_http "http://127.0.0.1:$P_NGINX/1k"
    SUT_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"
}

start_sut() { # PATH NAME HEADER_TIMEOUT BODY_TIMEOUT
    case $1 in
        proxy) start_proxy "$2" "$3" "$4" ;;
        nginx) start_nginx "$2" "$3" "$4" ;;
    esac
}
sut_port() { case $1 in proxy) echo "$P_PROXY" ;; nginx) echo "$P_NGINX" ;; esac }

stop_pid() { # PID: TERM, wait
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_sut() { # PATH
    case $1 in
        proxy) stop_pid "$PROXY_PID" ;;
        # nginx's fast shutdown is TERM to the master; it waits for its workers.
        nginx) stop_pid "$NGINX_MASTER" ;;
    esac
}

metric() { # NAME: a metric of the proxy's /metrics, or null
    curl -fs "http://127.0.0.1:$P_ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print "null" }'
}
accept_queue() { # PORT: the listener's accept queue length and backlog, as "queued/backlog"
    ss -ltnH "sport = :$1" | awk '{ print $2 "/" $3; exit }'
}

# start_client NAME MODE PORT N [ARGS...]: a flood client on CPU_LOAD at nice FLOOD_NICE;
# status in $OUT/raw/NAME.status.json, summary in $OUT/raw/NAME.json. Sets CLIENT_PID.
start_client() {
    local name=$1 mode=$2 port=$3 n=$4
    shift 4
    NICE=$FLOOD_NICE start_bg "$CPU_LOAD" "$OUT/raw/$name.client.log" python3 "$here/flood_client.py" \
        "$mode" 127.0.0.1 "$port" "$n" --status "$OUT/raw/$name.status.json" \
        --out "$OUT/raw/$name.json" "$@"
    CLIENT_PID=$last_pid
}
status_field() { # NAME PYTHON-EXPR over d (the status JSON): prints it, or "" before the first write
    python3 - "$OUT/raw/$1.status.json" "$2" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("")
    sys.exit()
v = eval(sys.argv[2], {"d": d})
print("" if v is None else v)
EOF
}
# wait_stable NAME EXPR SECONDS GUARD: waits until EXPR over the status has not changed for
# SECONDS (and has a value); gives up after GUARD seconds (a script guard, not a measurement).
wait_stable() {
    local name=$1 expr=$2 still=$3 guard=$4 last="" v since=$SECONDS end=$((SECONDS + $4))
    while ((SECONDS < end)); do
        sleep 0.5
        v=$(status_field "$name" "$expr")
        if [[ -z $v || $v != "$last" ]]; then
            last=$v
            since=$SECONDS
        elif ((SECONDS - since >= still)); then
            return 0
        fi
    done
    log "$name: '$expr' still changing after ${guard}s"
}

# --- part: memory per idle keep-alive connection ------------------------------------------------
part_memory() {
    local p pass name r0 r1 r2 gauge t_open
    : >"$OUT/memory.jsonl"
    for p in "${PATHS[@]}"; do
        start_sut "$p" "memory-$p" "$MEM_TIMEOUT" "$MEM_TIMEOUT"
        # Warm-up (pools, caches, the allocator's first arenas), not measured.
        on_cpu "$CPU_LOAD" h2load --h1 -n 5000 -c "$CONNS" "http://127.0.0.1:$(sut_port "$p")/1k" \
            >"$OUT/raw/memory-$p.warmup.out" 2>&1
        sleep 1
        r0=$(rss_kb $SUT_PIDS)
        for pass in 1 2; do
            name=memory-$p-$pass
            start_client "$name" idle "$(sut_port "$p")" "$IDLE_CONNS" --concurrency 200
            wait_stable "$name" 'd["all_answered_or_failed_after_s"]' 1 300
            sleep 2
            r1=$(rss_kb $SUT_PIDS)
            gauge=null
            [[ $p == proxy ]] && gauge=$(metric oz_proxy_connections_open)
            stop_pid "$CLIENT_PID"
            sleep 2
            r2=$(rss_kb $SUT_PIDS)
            python3 - "$OUT/raw/$name.json" "$p" "$pass" "$r0" "$r1" "$r2" "$gauge" "$IDLE_CONNS" \
                >>"$OUT/memory.jsonl" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
p, pss, r0, r1, r2, gauge, n = sys.argv[2:]
answered = c["statuses"].get("200", 0)
print(json.dumps(dict(path=p, pass_=int(pss), rss_before_kb=int(r0), rss_with_kb=int(r1),
    rss_after_close_kb=int(r2), conns=int(n), answered=answered,
    closed_by_server=c["closed_by_server"], connect_errors=c["connect_errors"],
    get_errors=c["get_errors"], open_s=c["all_answered_or_failed_after_s"],
    connections_open_gauge=None if gauge == "null" else float(gauge),
    kib_per_conn=(int(r1) - int(r0)) / int(n))))
EOF
            tail -n1 "$OUT/memory.jsonl" | sed "s/^/  memory: /" >&2
            r0=$r2
        done
        stop_sut "$p"
    done
}

# --- part: idle keep-alive connections under each SUT's defaults -------------------------------
part_keepalive() {
    : >"$OUT/keepalive.jsonl"
    start_proxy keepalive-proxy 10s 60s
    start_nginx keepalive-nginx 10s 60s
    local pc nc
    start_client keepalive-proxy idle "$P_PROXY" "$KA_CONNS"
    pc=$CLIENT_PID
    start_client keepalive-nginx idle "$P_NGINX" "$KA_CONNS"
    nc=$CLIENT_PID
    sleep "$KA_HOLD"
    stop_pid "$pc"
    stop_pid "$nc"
    local p
    for p in proxy nginx; do
        python3 - "$OUT/raw/keepalive-$p.json" "$p" "$KA_HOLD" >>"$OUT/keepalive.jsonl" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
print(json.dumps(dict(path=sys.argv[2], hold_s=float(sys.argv[3]), conns=c["n"],
    answered=c["statuses"].get("200", 0), closed_by_server=c["closed_by_server"],
    closed_after_answer_s=c["closed_after_answer_s"])))
EOF
    done
    stop_sut proxy
    stop_sut nginx
}

# --- part: more connections than server.max_connections --------------------------------------------
limit_snapshot() { # LABEL
    python3 - "$OUT/raw/limit.status.json" "$1" "$(metric oz_proxy_connections_open)" \
        "$(metric oz_proxy_connection_limit_reached_total)" "$(accept_queue "$P_PROXY")" \
        >>"$OUT/limit.jsonl" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
label, gauge, waits, queue = sys.argv[2:]
c = d.get("counts", {})
print(json.dumps(dict(phase=label, t=d["t"], answered=c.get("answered", 0),
    served=c.get("answered", 0) + c.get("released", 0) + c.get("closed", 0),
    waiting_for_answer=c.get("waiting", 0), connecting=c.get("connecting", 0),
    failed=c.get("failed", 0), released=d["released"], closed_by_server=d["closed_by_server"],
    connect_errors=d["connect_errors"], get_errors=d["get_errors"],
    connections_open=None if gauge == "null" else float(gauge),
    limit_reached_total=None if waits == "null" else float(waits), accept_queue=queue)))
EOF
    tail -n1 "$OUT/limit.jsonl" | sed "s/^/  limit: /" >&2
}
part_limit() {
    : >"$OUT/limit.jsonl"
    start_proxy limit-proxy "$MEM_TIMEOUT" "$MEM_TIMEOUT" "$LIMIT_MAX"
    start_client limit idle "$P_PROXY" "$IDLE_CONNS" --concurrency "$IDLE_CONNS" --release "$RELEASE"
    wait_stable limit 'd["counts"].get("answered", 0)' 3 120
    limit_snapshot "$IDLE_CONNS connections arrive"
    kill -USR1 "$CLIENT_PID"
    wait_stable limit 'd["counts"].get("answered", 0)' 3 60
    limit_snapshot "$RELEASE served connections close"
    stop_pid "$CLIENT_PID"
    sleep 2
    python3 - "$(metric oz_proxy_connections_open)" "$(metric oz_proxy_connection_limit_reached_total)" \
        >>"$OUT/limit.jsonl" <<'EOF'
import json, sys
g, w = sys.argv[1:]
print(json.dumps(dict(phase="client gone (2 s later)", connections_open=float(g),
    limit_reached_total=float(w))))
EOF
    stop_sut proxy
}

# --- part: normal traffic under floods ---------------------------------------------------------
per_conn_rate=$(python3 -c "print(f'{$RATE/$CONNS:g}')")
flood_run() { # SCENARIO PATH ROUND
    local s=$1 p=$2 r=$3 port prefix clients=() c
    port=$(sut_port "$p")
    prefix=$OUT/raw/flood.$s.$p.r$r
    # Warm-up of the normal load (pools), not measured.
    on_cpu "$CPU_LOAD" h2load --h1 -c "$CONNS" --rps="$per_conn_rate" -D 1 "http://127.0.0.1:$port/1k" \
        >"$prefix.warmup.out" 2>&1 || true
    if [[ $s == slowloris || $s == both ]]; then
        start_client "flood.$s.$p.r$r.slowloris" slowloris "$port" "$SLOW_CONNS" --interval "$SLOW_INTERVAL"
        clients+=("$CLIENT_PID:slowloris")
    fi
    if [[ $s == stall || $s == both ]]; then
        start_client "flood.$s.$p.r$r.stall" stall "$port" "$STALL_CONNS" --body "$STALL_BODY"
        clients+=("$CLIENT_PID:stall")
    fi
    ((${#clients[@]})) && sleep "$FLOOD_WARMUP"
    local c0 c1 sampler t0 t1 load gauge=null
    c0=$(cpu_ticks $SUT_PIDS)
    rss_sampler "$prefix.rss" 0.1 $SUT_PIDS &
    sampler=$!
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    on_cpu "$CPU_LOAD" h2load --h1 -c "$CONNS" --rps="$per_conn_rate" -D "$DURATION" \
        --log-file="$prefix.log" "http://127.0.0.1:$port/1k" >"$prefix.out" 2>&1 ||
        log "h2load failed for $s/$p (see $prefix.out)"
    t1=$(date +%s.%N)
    c1=$(cpu_ticks $SUT_PIDS)
    kill -TERM "$sampler"
    wait "$sampler" 2>/dev/null || true
    [[ $p == proxy ]] && gauge=$(metric oz_proxy_connections_open)
    local summaries=()
    for c in "${clients[@]}"; do
        stop_pid "${c%%:*}"
        summaries+=("${c#*:}=$OUT/raw/flood.$s.$p.r$r.${c#*:}.json")
    done
    local stats
    stats=$(python3 "$here/loadstat.py" h2load "$prefix.out" "$prefix.log")
    python3 - "$stats" "$s" "$p" "$r" "$(((c1 - c0)))" "$TICK" "$(cat "$prefix.rss" 2>/dev/null || echo null)" \
        "$t0" "$t1" "$load" "$gauge" "${summaries[@]}" >>"$OUT/flood.jsonl" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
s, p, r, ticks, tick, rss, t0, t1, load, gauge = sys.argv[2:12]
wall = float(t1) - float(t0)
d.update(scenario=s, path=p, round=int(r), loadavg=float(load), wall_s=wall,
         cpu_s=int(ticks) / int(tick), core_use=int(ticks) / int(tick) / wall,
         rss_peak_kb=None if rss == "null" else int(rss),
         connections_open_gauge=None if gauge == "null" else float(gauge))
for kv in sys.argv[12:]:
    k, f = kv.split("=", 1)
    d[k] = json.load(open(f))
print(json.dumps(d))
EOF
    tail -n1 "$OUT/flood.jsonl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
f = lambda v: "-" if v is None else "%.3f" % (v / 1000)
extra = "".join("  %s: %d open, %d cut" % (k, d[k]["open"], d[k]["cuts"]) for k in ("slowloris", "stall") if k in d)
print("  %-9s %-5s r%d  %6.0f req/s  p50 %s  p99 %s  p99.9 %s ms  errors %s  core %.2f%s" % (
    d["scenario"], d["path"], d["round"], d.get("rps") or 0, f(d.get("p50_us")), f(d.get("p99_us")),
    f(d.get("p999_us")), (d.get("errors") or 0) + (d.get("status_errors") or 0), d["core_use"], extra))' >&2
    sleep 1
}
part_flood() {
    : >"$OUT/flood.jsonl"
    start_proxy flood-proxy "${TIMEOUT}s" "${TIMEOUT}s"
    start_nginx flood-nginx "${TIMEOUT}s" "${TIMEOUT}s"
    SUT_PIDS_proxy=$PROXY_PID
    SUT_PIDS_nginx="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"
    local r s k p i
    read -r -a scen_list <<<"$SCENARIOS"
    for ((r = 1; r <= ROUNDS; r++)); do
        log "flood round $r/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
        i=0
        for s in "${scen_list[@]}"; do
            for ((k = 0; k < 2; k++)); do
                p=${PATHS[$(((k + r + i) % 2))]}
                if [[ $p == proxy ]]; then SUT_PIDS=$SUT_PIDS_proxy; else SUT_PIDS=$SUT_PIDS_nginx; fi
                flood_run "$s" "$p" "$r"
            done
            i=$((i + 1))
        done
    done
    stop_sut proxy
    stop_sut nginx
}

t_start=$SECONDS
for part in $PARTS; do
    log "part $part"
    "part_$part"
done
echo "uptime after: $(uptime)" >>"$OUT/load.txt"

python3 - "$OUT/meta.json" <<EOF
import json, sys, platform, subprocess
def sh(c):
    r = subprocess.run(c, shell=True, capture_output=True, text=True)
    return r.stdout.strip() or r.stderr.strip()
json.dump({
    "quick": $QUICK, "parts": "$PARTS", "wall_s": $((SECONDS - t_start)),
    "idle_conns": $IDLE_CONNS, "mem_timeout": "$MEM_TIMEOUT", "ka_conns": $KA_CONNS,
    "ka_hold": $KA_HOLD, "limit_max": $LIMIT_MAX, "release": $RELEASE, "timeout_s": $TIMEOUT,
    "slow_conns": $SLOW_CONNS, "slow_interval": $SLOW_INTERVAL, "stall_conns": $STALL_CONNS,
    "stall_body": $STALL_BODY, "flood_warmup": $FLOOD_WARMUP, "duration_s": $DURATION,
    "rounds": $ROUNDS, "conns": $CONNS, "rate": $RATE, "cpu_sut": $CPU_SUT, "cpu_load": $CPU_LOAD,
    "nginx_worker_connections": $NGINX_CONNS,
    "commit": sh("git -C '$root' rev-parse --short HEAD"), "bin": "$BIN",
    "nproc": sh("nproc"), "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    "kernel": platform.release(), "nginx": sh("$NGINX -v 2>&1"),
    "h2load": sh("h2load --version 2>&1 | head -1"), "python": platform.python_version(),
}, open(sys.argv[1], "w"), indent=1)
EOF
{
    echo "### Floods and slow clients ($(date -u +%Y-%m-%dT%H:%MZ), QUICK=$QUICK)"
    echo
    sed 's/^/Load: /' "$OUT/load.txt"
    echo
    python3 "$here/floodstat.py" "$OUT"
} >"$OUT/results.md"
cat "$OUT/results.md"
log "raw data and results.md in $OUT"
