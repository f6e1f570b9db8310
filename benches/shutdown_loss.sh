#!/usr/bin/env bash
# Shutdown under load without loss: K keep-alive clients send requests back to back through
# oz-capture-proxy; the proxy gets SIGTERM mid-run; every request is counted as answered, refused
# at connect (the listener is closed: legitimate, the pod is out of the endpoints) or lost (sent
# on an open connection, no complete answer). Old and new binaries alternate, round after round.
#
#   benches/shutdown_loss.sh                                  # this worktree's binary, 5 rounds, ~35 s
#   OLD_BIN=/path/to/old/oz-capture-proxy benches/shutdown_loss.sh   # old and new, alternating, ~70 s
#   QUICK=1 ...                                               # 2 rounds
#
# Each round starts a fresh proxy (release binary run directly with a config file,
# shutdown.drain_delay DRAIN_DELAY, shutdown.drain_deadline DRAIN_DEADLINE, everything else at its
# default) on CPU $CPU_SUT in front of the static nginx backend of load.sh (CPU $CPU_LOAD),
# starts K clients (benches/shutdown_client.py, CPU $CPU_LOAD) sending GET /1k, sends SIGTERM
# after PRE seconds, waits for the proxy to exit (exit code, time from SIGTERM), lets the
# clients run POST more seconds against the closed port, and stops them.
#
# Knobs: QUICK, ROUNDS, K (16), PRE (3 s), POST (1 s), DRAIN_DELAY (2s), DRAIN_DEADLINE (5s),
# OLD_BIN, BIN, SKIP_BUILD=1, CPU_SUT, CPU_LOAD, OUT, NICE.
set -euo pipefail

source "$(dirname "$0")/common.sh"
here=$bench_dir

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-2}
else
    ROUNDS=${ROUNDS:-5}
fi
K=${K:-16}
PRE=${PRE:-3}
POST=${POST:-1}
DRAIN_DELAY=${DRAIN_DELAY:-2s}
DRAIN_DEADLINE=${DRAIN_DEADLINE:-5s}
CPU_SUT=${CPU_SUT:-1}
CPU_LOAD=${CPU_LOAD:-0}
OLD_BIN=${OLD_BIN:-}
OUT=${OUT:-$root/target/bench/shutdown-$(date +%Y%m%d-%H%M%S)}

ensure_tools
build_release
NEW_BIN=$BIN
mkdir -p "$OUT/raw"
read -r P_BACKEND P_BACKEND_H2 P_PROXY P_ADMIN P_OZ <<<"$(free_ports 5)"
echo "uptime before: $(uptime)" >"$OUT/load.txt"
start_backend "$CPU_LOAD" "$P_BACKEND" "$P_BACKEND_H2"
wait_http "http://127.0.0.1:$P_BACKEND/1k"

cat >"$OUT/proxy.yaml" <<EOF
listen: "127.0.0.1:$P_PROXY"
admin_listen: "127.0.0.1:$P_ADMIN"
backend:
  url: "http://127.0.0.1:$P_BACKEND"
shutdown:
  drain_delay: "$DRAIN_DELAY"
  drain_deadline: "$DRAIN_DEADLINE"
oz:
  url: "http://127.0.0.1:$P_OZ"
  auth:
    token: "bench-token"
capture:
  routes:
    - path: "/api/liveness/capture"
EOF

bins=(new)
[[ -n $OLD_BIN ]] && bins=(old new)
bin_path() { case $1 in old) echo "$OLD_BIN" ;; new) echo "$NEW_BIN" ;; esac }

: >"$OUT/results.jsonl"
log "results in $OUT; $ROUNDS round(s) of: ${bins[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#bins[@]}; i++)); do
        b=${bins[$(((i + r) % ${#bins[@]}))]}
        prefix=$OUT/raw/$b.r$r
        # The proxy is started here, not through start_bg, so that `wait` gives its exit code;
        # it is still killed on exit if something goes wrong (bg_pids).
        nice -n "$NICE" taskset -c "$CPU_SUT" "$(bin_path "$b")" --config "$OUT/proxy.yaml" \
            >"$prefix.proxy.log" 2>&1 &
        proxy=$!
        bg_pids+=("$proxy")
        wait_http "http://127.0.0.1:$P_ADMIN/ready"
        start_bg "$CPU_LOAD" "$prefix.client.log" python3 "$here/shutdown_client.py" 127.0.0.1 \
            "$P_PROXY" "$K" --out "$prefix.client.json"
        client=$last_pid
        sleep "$PRE"
        t_term=$(date +%s.%N)
        kill -TERM "$proxy"
        rc=0
        wait "$proxy" || rc=$?
        t_exit=$(date +%s.%N)
        sleep "$POST"
        kill -TERM "$client"
        wait "$client" || true
        python3 - "$prefix.client.json" "$b" "$r" "$rc" "$t_term" "$t_exit" "$prefix.proxy.log" \
            "$(bin_path "$b")" >>"$OUT/results.jsonl" <<'EOF'
import json, re, sys
c = json.load(open(sys.argv[1]))
b, r, rc, t_term, t_exit, plog, path = sys.argv[2:]
t_term, t_exit = float(t_term), float(t_exit)
after = [a for a in c["answers"] if a[0] >= t_term]
log = open(plog, errors="replace").read()
# The proxy logs how many connections were open when its listener closed.
m = re.search(r'"message":"listener closed, draining","open_connections":(\d+)', log)
kinds = {}
for l in c["lost"]:
    k = f"{l['kind']} ({l['stage']}, {'new' if l['first_on_connection'] else 'reused'} connection)"
    kinds[k] = kinds.get(k, 0) + 1
print(json.dumps(dict(
    binary=b, path=path, round=int(r), exit_code=int(rc), term_to_exit_s=t_exit - t_term,
    answered=c["answered"], statuses=c["statuses"], answered_after_term=len(after),
    close_answers_after_term=sum(1 for a in after if a[1]),
    last_answer_after_term_s=None if c["last_answer"] is None else c["last_answer"] - t_term,
    first_refused_after_term_s=None if c["first_refused"] is None else c["first_refused"] - t_term,
    refused=c["refused"], connect_errors=c["connect_errors"], connects=c["connects"],
    lost=len(c["lost"]), lost_kinds=kinds,
    lost_after_term_s=[round(l["t"] - t_term, 3) for l in c["lost"]],
    open_at_listener_close=int(m.group(1)) if m else None,
    drained=("drained, exiting" in log), deadline_passed=("drain deadline passed" in log))))
EOF
        tail -n1 "$OUT/results.jsonl" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("  %-3s r%d  answered %6d (after SIGTERM %5d, %5d with Connection: close)  refused %4d  lost %3d %s  exit %d after %.2f s" % (
    d["binary"], d["round"], d["answered"], d["answered_after_term"], d["close_answers_after_term"],
    d["refused"], d["lost"], d["lost_kinds"] or "", d["exit_code"], d["term_to_exit_s"]))' >&2
    done
done
echo "uptime after: $(uptime)" >>"$OUT/load.txt"

python3 - "$OUT/results.jsonl" "$K" "$PRE" "$DRAIN_DELAY" "$DRAIN_DEADLINE" "$OUT/load.txt" \
    >"$OUT/results.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k, pre, dd, ddl, loadf = sys.argv[2:]
print(f"### Shutdown under load: {k} keep-alive clients, SIGTERM after {pre} s, "
      f"drain_delay {dd}, drain_deadline {ddl}")
print()
for l in open(loadf):
    print("Load: " + l.rstrip())
print()
print("| binary | round | answered | answered after SIGTERM | of which `Connection: close` | "
      "refused at connect (attempts) | other connect errors | connections open at listener close | **lost** | "
      "lost: kind (stage, connection) | lost at (s after SIGTERM) | exit code | SIGTERM → exit (s) |")
print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|---:|")
for d in sorted(rows, key=lambda d: (d["binary"] != "old", d["round"])):
    kinds = ", ".join(f"{v} × {k}" for k, v in d["lost_kinds"].items()) or "—"
    at = ", ".join(f"{t:.2f}" for t in sorted(d["lost_after_term_s"])[:6])
    if len(d["lost_after_term_s"]) > 6:
        at += ", …"
    print(f"| {d['binary']} | {d['round']} | {d['answered']:,} | {d['answered_after_term']:,} | "
          f"{d['close_answers_after_term']:,} | {d['refused']:,} | "
          f"{', '.join(f'{v} × {k}' for k, v in d['connect_errors'].items()) or '—'} | "
          f"{'—' if d['open_at_listener_close'] is None else d['open_at_listener_close']} | "
          f"**{d['lost']}** | {kinds} | "
          f"{at or '—'} | {d['exit_code']} | {d['term_to_exit_s']:.2f} |")
print()
print("| binary | runs | lost per run | lost, median | lost / connections open at listener close | exit codes | SIGTERM → exit (s), median | non-2xx answers |")
print("|---|---:|---|---:|---:|---|---:|---:|")
for b in ("old", "new"):
    rs = [d for d in rows if d["binary"] == b]
    if not rs:
        continue
    rs.sort(key=lambda d: d["round"])
    non2xx = sum(v for d in rs for s, v in d["statuses"].items() if not s.startswith("2"))
    print(f"| {b} ({rs[0]['path']}) | {len(rs)} | {' / '.join(str(d['lost']) for d in rs)} | "
          f"{statistics.median(d['lost'] for d in rs):g} | "
          f"{sum(d['lost'] for d in rs)} / {sum(d['open_at_listener_close'] or 0 for d in rs)} | "
          f"{', '.join(sorted(set(str(d['exit_code']) for d in rs)))} | "
          f"{statistics.median(d['term_to_exit_s'] for d in rs):.2f} | {non2xx} |")
EOF
cat "$OUT/results.md"
log "raw data and results.md in $OUT"
