# Shared by benches/load.sh and benches/capture_e2e.sh (sourced, not run).
#
# Provides: log, ensure_tools, ensure_profilers, apt_install, proxy_bench_yaml, build_release, a scratch dir $tmp removed on exit,
# start_bg (every background process is killed by PID on exit), free_ports, wait_http,
# peer_nginx_conf and peer_haproxy_conf (the proxies compared with), start_backend (static nginx
# on loopback), cpu_ticks, rss_kb, rss_sampler.

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/.." && pwd)
script_name=$(basename "$0")

log() { printf '[%s %s] %s\n' "$script_name" "$(date +%T)" "$*" >&2; }

# ensure_tools: installs wrk, h2load (nghttp2-client), nginx, haproxy, curl and python3 with
# apt-get when missing (apt-get update first).
ensure_tools() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v h2load >/dev/null || need+=(nghttp2-client)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
    apt_install "${need[@]}"
    # Debian starts the packages' own services on install; the benchmarks run their own.
    if [[ " ${need[*]} " == *" haproxy "* ]]; then
        as_root service haproxy stop >/dev/null 2>&1 || true
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
}

# ensure_profilers: installs valgrind, perf (linux-perf), strace and glibc's debug symbols
# (libc6-dbg, without which malloc's and memcpy's internals have no names in a profile) with
# apt-get when missing.
ensure_profilers() {
    local need=()
    command -v valgrind >/dev/null || need+=(valgrind)
    command -v perf >/dev/null || need+=(linux-perf)
    command -v strace >/dev/null || need+=(strace)
    dpkg -s libc6-dbg >/dev/null 2>&1 || need+=(libc6-dbg)
    apt_install "${need[@]}"
}

# as_root CMD...: CMD, through sudo unless this already runs as root.
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install [PACKAGE...]: installs the packages with apt-get (nothing when none is given).
apt_install() {
    (($#)) || return 0
    log "installing $* with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# proxy_bench_yaml FILE LISTEN_PORT ADMIN_PORT BACKEND_PORT [LOG_LEVEL]: the oz-capture-proxy
# configuration the passthrough benchmarks run: the defaults, one capture route (never hit), an Oz
# URL nothing listens on; LOG_LEVEL (e.g. "info,access=off" for the engine setting) when given;
# PRESERVE_HEADER_CASE, when set, as forwarding.preserve_header_case.
proxy_bench_yaml() {
    local file=$1 port=$2 admin=$3 backend_port=$4 level=${5:-}
    cat >"$file" <<YAML
listen: "127.0.0.1:$port"
admin_listen: "127.0.0.1:$admin"
backend:
  url: "http://127.0.0.1:$backend_port"
oz:
  url: "http://127.0.0.1:1"
  auth:
    token: "bench-token"
capture:
  routes:
    - path: "/api/liveness/capture"
${level:+log:
  level: \"$level\"}
${PRESERVE_HEADER_CASE:+forwarding:
  preserve_header_case: $PRESERVE_HEADER_CASE}
YAML
}

# build_release [extra cargo args]: the release binary (skipped with SKIP_BUILD=1).
build_release() {
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "building the release binary"
        (cd "$root" && cargo build --release --quiet --bin oz-capture-proxy "$@")
    fi
    BIN=${BIN:-$root/target/release/oz-capture-proxy}
}

tmp=$(mktemp -d "/tmp/oz-bench.XXXXXX")
chmod 755 "$tmp"
bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${bg_pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Priority of every process the benchmarks start (the proxies, the backend, the generators): the
# machine is shared, so they run at nice -10 by default to be shielded from other people's
# compile jobs; NICE=0 turns that off. Negative values need root; for anyone else it is 0.
NICE=${NICE:--10}
[[ $(id -u) == 0 ]] || NICE=0

# on_cpu CPU CMD...: runs CMD pinned to CPU (unpinned when CPU is "-") at priority $NICE.
on_cpu() {
    local cpu=$1
    shift
    if [[ $cpu == - ]]; then
        nice -n "$NICE" "$@"
    else
        nice -n "$NICE" taskset -c "$cpu" "$@"
    fi
}

# start_bg CPU LOGFILE CMD...: starts CMD pinned to CPU (or unpinned when CPU is "-") in the
# background, output to LOGFILE; its PID is in $last_pid and killed on exit.
start_bg() {
    local cpu=$1 out=$2
    shift 2
    # Not through on_cpu: a function in the background would be a subshell, and $! its PID.
    # nice and taskset exec the command, so $! is the command's own PID.
    if [[ $cpu == - ]]; then
        nice -n "$NICE" "$@" >>"$out" 2>&1 &
    else
        nice -n "$NICE" taskset -c "$cpu" "$@" >>"$out" 2>&1 &
    fi
    last_pid=$!
    bg_pids+=("$last_pid")
}

free_ports() { # N: prints N free loopback ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_http() { # URL [seconds]
    local deadline=$((SECONDS + ${2:-10}))
    until curl -fs -o /dev/null "$1"; do
        ((SECONDS < deadline)) || { log "timed out waiting for $1"; return 1; }
        sleep 0.1
    done
}

# nginx runs as root here only when the script does; its workers then need `user root` to read
# files in $tmp.
nginx_user_line() { [[ $(id -u) == 0 ]] && echo "user root;" || true; }

# peer_nginx_conf NAME PORT PORT_H2 BACKEND_PORT ACCESS_LOG_DIRECTIVE: writes $tmp/NAME/nginx.conf,
# the nginx reverse proxy every benchmark compares with (benches/load.sh, benches/perfstat.sh):
# one worker, upstream keepalive, the same forwarding headers as oz-capture-proxy (see load.sh).
peer_nginx_conf() {
    local name=$1 port=$2 port_h2=$3 backend_port=$4 access=$5
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/nginx.conf" <<EOF
$(nginx_user_line)
worker_processes 1;
pid $tmp/$name/nginx.pid;
error_log $tmp/$name/error.log warn;
events { worker_connections 4096; }
http {
    $access
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $tmp/$name/body;
    proxy_temp_path $tmp/$name/proxy;
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 3s;
    }
    map \$http_x_request_id \$req_id { "" \$request_id; default \$http_x_request_id; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$port_h2 http2;
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
}

# peer_haproxy_conf FILE PORT BACKEND_PORT LOG_LINES: writes the HAProxy configuration every
# benchmark compares with (see benches/load.sh): one thread, `http-reuse always`, HTTP/1.1 and h2c
# on one port, the same forwarding headers; LOG_LINES (empty: no log) go in `defaults`.
peer_haproxy_conf() {
    local file=$1 port=$2 backend_port=$3 log_lines=$4
    cat >"$file" <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
    http-reuse always
$log_lines
frontend fe
    bind 127.0.0.1:$port
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid] unless { req.hdr(x-request-id) -m found }
    default_backend be
backend be
    server b1 127.0.0.1:$backend_port
EOF
}

# start_backend CPU PORT H2PORT: static nginx serving $tmp/www/{1k,1m}, no access log, one
# worker, keep-alive without a request cap. Sets BACKEND_PID. $BACKEND_EXTRA (optional) is added
# inside its server block (benches/flood.sh adds a location that reads a whole request body).
start_backend() {
    local cpu=$1 port=$2 h2port=$3
    mkdir -p "$tmp/www" "$tmp/backend"
    head -c 1024 /dev/urandom >"$tmp/www/1k"
    head -c 1048576 /dev/urandom >"$tmp/www/1m"
    chmod 644 "$tmp/www/"*
    cat >"$tmp/backend/nginx.conf" <<EOF
$(nginx_user_line)
worker_processes 1;
pid $tmp/backend/nginx.pid;
error_log $tmp/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_body_temp_path $tmp/backend/body;
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$h2port http2;
        root $tmp/www;
${BACKEND_EXTRA:-}
    }
}
EOF
    start_bg "$cpu" "$tmp/backend/stderr" "$NGINX" -p "$tmp/backend" -c "$tmp/backend/nginx.conf" \
        -g 'daemon off;'
    BACKEND_PID=$last_pid
}

cpu_ticks() { # PIDS...: sum of utime+stime in clock ticks
    local t=0 p f
    for p in "$@"; do
        read -r -a f <"/proc/$p/stat"
        # comm (field 2) has no spaces for these binaries; utime and stime are fields 14 and 15.
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}

rss_kb() { # PIDS...: sum of VmRSS in KiB
    local t=0 p k v _
    for p in "$@"; do
        while read -r k v _; do
            [[ $k == VmRSS: ]] && t=$((t + v))
        done <"/proc/$p/status"
    done
    echo "$t"
}

# rss_sampler OUTFILE INTERVAL PIDS...: run in the background; on SIGTERM writes the highest
# RSS (KiB) seen, sampled every INTERVAL seconds.
rss_sampler() {
    local out=$1 every=$2 peak=0 now
    shift 2
    trap 'echo "$peak" >"$out"; exit 0' TERM
    while :; do
        now=$(rss_kb "$@")
        ((now > peak)) && peak=$now
        sleep "$every"
    done
}

TICK=$(getconf CLK_TCK)
