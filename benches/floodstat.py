#!/usr/bin/env python3
"""Markdown tables of benches/flood.sh (standard library only).

  floodstat.py OUT_DIR
      Reads meta.json and whichever of memory.jsonl, keepalive.jsonl, limit.jsonl and
      flood.jsonl exist in OUT_DIR; prints the tables for BENCHMARKS.md and RELIABILITY.md.
"""

import json
import os
import statistics
import sys

NAMES = {"proxy": "oz-capture-proxy", "nginx": "nginx proxy_pass"}
FLOODS = {
    "none": "none",
    "slowloris": "slowloris heads",
    "stall": "stalled bodies",
    "both": "both",
}


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1, thousands=True):
    if v is None:
        return "—"
    if abs(v) < 0.5 * 10 ** -digits:
        v = 0.0
    if digits == 0:
        return f"{v:,.0f}" if thousands else f"{v:.0f}"
    return f"{v:,.{digits}f}" if thousands else f"{v:.{digits}f}"


def mib(kb):
    return None if kb is None else kb / 1024.0


def ms(us):
    return None if us is None else us / 1000.0


def ratio(a, b):
    return None if a is None or not b else a / b


def memory(meta, rs, out):
    if not rs:
        return
    out.append(
        f"#### Memory per idle keep-alive connection ({meta['idle_conns']:,} connections, one GET "
        f"each, then idle)"
    )
    out.append("")
    out.append(
        "| SUT | pass | answered | opened in (s) | RSS before | RSS with them | RSS after they close "
        "| growth | **KiB per connection** |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    per = {}
    for r in rs:
        growth = r["rss_with_kb"] - r["rss_before_kb"]
        per.setdefault(r["path"], {})[r["pass_"]] = r["kib_per_conn"]
        out.append(
            f"| {NAMES[r['path']]} | {r['pass_']} | {r['answered']:,} | {fmt(r['open_s'], 1)} | "
            f"{fmt(mib(r['rss_before_kb']))} | {fmt(mib(r['rss_with_kb']))} | "
            f"{fmt(mib(r['rss_after_close_kb']))} | {fmt(mib(growth))} | "
            f"**{fmt(r['kib_per_conn'], 2)}** |"
        )
    out.append("")
    if "proxy" in per and "nginx" in per:
        out.append(
            "proxy/nginx, KiB per connection, first pass: "
            f"{fmt(ratio(per['proxy'].get(1), per['nginx'].get(1)), 1)}×. Pass 2 opens as many "
            "again on the same process after the first ones closed. RSS in MiB (nginx: "
            f"master + worker); timeouts {meta['mem_timeout']} so that nothing is closed; nginx "
            f"`worker_connections {meta['nginx_worker_connections']:,}` (preallocated at start, in "
            f"its RSS before). Errors: "
            + ", ".join(
                f"{NAMES[r['path']]} pass {r['pass_']}: "
                f"{sum(r['connect_errors'].values()) + sum(r['get_errors'].values())}"
                for r in rs
            )
            + "."
        )
        out.append("")


def keepalive(meta, rs, out):
    if not rs:
        return
    out.append(
        f"#### Idle keep-alive connections under each SUT's defaults ({meta['ka_conns']:,} "
        f"connections, held {meta['ka_hold']} s after their answer)"
    )
    out.append("")
    out.append(
        "| SUT | settings | answered | closed by the server | closed after (s since the answer) "
        "min / median / max |"
    )
    out.append("|---|---|---:|---:|---|")
    settings = {
        "proxy": "`header_read_timeout` 10s (default)",
        "nginx": "`client_header_timeout` 10s, `keepalive_timeout` 300s",
    }
    for r in rs:
        d = r["closed_after_answer_s"]
        when = (
            f"{fmt(d['min'], 2)} / {fmt(d['p50'], 2)} / {fmt(d['max'], 2)}" if d.get("n") else "—"
        )
        out.append(
            f"| {NAMES[r['path']]} | {settings[r['path']]} | {r['answered']:,} | "
            f"{r['closed_by_server']:,} | {when} |"
        )
    out.append("")


def limit(meta, rs, out):
    if not rs:
        return
    out.append(
        f"#### {meta['idle_conns']:,} connections against `server.max_connections: "
        f"{meta['limit_max']:,}` (oz-capture-proxy)"
    )
    out.append("")
    out.append(
        "| phase | answered so far | answered, still open | connected, no answer yet | still connecting | failed | "
        "`oz_proxy_connections_open` | `oz_proxy_connection_limit_reached_total` | accept queue "
        "(queued/backlog) |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rs:
        if "answered" in r:
            out.append(
                f"| {r['phase']} (t = {fmt(r['t'], 1)} s) | {r['served']:,} | {r['answered']:,} | "
                f"{r['waiting_for_answer']:,} | {r['connecting']:,} | {r['failed']:,} | "
                f"{fmt(r['connections_open'], 0)} | {fmt(r['limit_reached_total'], 0)} | "
                f"{r['accept_queue']} |"
            )
        else:
            out.append(
                f"| {r['phase']} | — | — | — | — | — | {fmt(r['connections_open'], 0)} | "
                f"{fmt(r['limit_reached_total'], 0)} | — |"
            )
    out.append("")


def flood(meta, rs, out):
    if not rs:
        return
    scen = []
    for r in rs:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
    rounds = max(r["round"] for r in rs)
    out.append(
        f"#### Normal traffic under floods: GET /1k at {meta['rate']:,} req/s (h2load --h1 --rps, "
        f"{meta['conns']} connections), timeouts {meta['timeout_s']} s"
    )
    out.append("")
    out.append(
        f"Slowloris: {meta['slow_conns']:,} connections, a request head sent one byte every "
        f"{meta['slow_interval']:g} s; stalled bodies: {meta['stall_conns']:,} POSTs sending "
        f"{meta['stall_body']:,} of {2 * meta['stall_body']:,} body bytes, then nothing; a cut "
        f"connection is replaced at once. Medians of {rounds} round(s) of {meta['duration_s']} s, "
        f"measured from {meta['flood_warmup']} s after the flood started. Latency in ms; core = "
        f"the SUT's CPU time / wall time over the measured run; peak RSS in MiB, per round (the same "
        f"SUT processes serve every round, so memory kept from an earlier flood shows in later "
        f"rounds)."
    )
    out.append("")
    out.append(
        "| flood | SUT | req/s | p50 | p99 | p99.9 | max | errors | p99 per round | p99 vs no flood "
        "| SUT core | peak RSS per round |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    m = {}
    for s in scen:
        for p in ("proxy", "nginx"):
            rr = sorted((r for r in rs if r["scenario"] == s and r["path"] == p),
                        key=lambda r: r["round"])
            if not rr:
                continue
            d = {
                "rps": med([r.get("rps") for r in rr]),
                "p50": med([r.get("p50_us") for r in rr]),
                "p99": med([r.get("p99_us") for r in rr]),
                "p999": med([r.get("p999_us") for r in rr]),
                "max": med([r.get("max_us") for r in rr]),
                "errors": sum((r.get("errors") or 0) + (r.get("status_errors") or 0) for r in rr),
                "core": med([r.get("core_use") for r in rr]),
                "rss": " / ".join(fmt(mib(r.get("rss_peak_kb")), 0) for r in rr),
                "per_round": " / ".join(fmt(ms(r.get("p99_us")), 2) for r in rr),
            }
            m[(s, p)] = d
    for s in scen:
        for p in ("proxy", "nginx"):
            d = m.get((s, p))
            if not d:
                continue
            base = m.get(("none", p))
            vs = ratio(d["p99"], base["p99"]) if base and s != "none" else None
            out.append(
                f"| {FLOODS.get(s, s)} | {NAMES[p]} | {fmt(d['rps'], 0)} | {fmt(ms(d['p50']), 3)} | "
                f"{fmt(ms(d['p99']), 3)} | {fmt(ms(d['p999']), 3)} | {fmt(ms(d['max']), 1)} | "
                f"{d['errors']} | {d['per_round']} | {'—' if vs is None else fmt(vs, 2) + '×'} | "
                f"{fmt(d['core'], 2)} | {d['rss']} |"
            )
    out.append("")
    out.append("| flood | p50 proxy/nginx | p99 proxy/nginx | p99.9 proxy/nginx |")
    out.append("|---|---:|---:|---:|")
    for s in scen:
        a, b = m.get((s, "proxy")), m.get((s, "nginx"))
        if a and b:
            out.append(
                f"| {FLOODS.get(s, s)} | {fmt(ratio(a['p50'], b['p50']), 2)} | "
                f"{fmt(ratio(a['p99'], b['p99']), 2)} | {fmt(ratio(a['p999'], b['p999']), 2)} |"
            )
    out.append("")

    out.append(
        "#### Flood connections: cut by the server? (over the whole flood of each run: warm-up + "
        "measured run)"
    )
    out.append("")
    out.append(
        "| flood | kind | SUT | open at the end (median) | cut per run (median) | cut after, s "
        "(median p50 / highest p99 / max) | measured from | answer to the cut connection | oldest "
        "open at the end, s (max) | connect errors |"
    )
    out.append("|---|---|---|---:|---:|---|---|---|---:|---|")
    for s in scen:
        for kind in ("slowloris", "stall"):
            for p in ("proxy", "nginx"):
                rr = [r[kind] for r in rs if r["scenario"] == s and r["path"] == p and kind in r]
                if not rr:
                    continue
                key = "cut_since_first_byte_s" if kind == "slowloris" else "cut_since_last_byte_s"
                dists = [c[key] for c in rr if c[key].get("n")]
                when = "—"
                if dists:
                    when = (
                        f"{fmt(med([d['p50'] for d in dists]), 2)} / "
                        f"{fmt(max(d['p99'] for d in dists), 2)} / "
                        f"{fmt(max(d['max'] for d in dists), 2)}"
                    )
                answers = {}
                for c in rr:
                    for k, v in c["answers"].items():
                        answers[k] = answers.get(k, 0) + v
                ans = ", ".join(
                    f"{'no answer' if k == 'none' else k} × {v:,}" for k, v in sorted(answers.items())
                )
                errs = {}
                for c in rr:
                    for k, v in c["connect_errors"].items():
                        errs[k] = errs.get(k, 0) + v
                oldest = max((c["open_age_at_end_s"].get("max") or 0) for c in rr)
                out.append(
                    f"| {FLOODS.get(s, s)} | {kind} | {NAMES[p]} | "
                    f"{fmt(med([c['open_at_end'] for c in rr]), 0)} | "
                    f"{fmt(med([c['cuts'] for c in rr]), 0)} | {when} | "
                    f"{'first byte' if kind == 'slowloris' else 'last body byte'} | {ans or '—'} | "
                    f"{fmt(oldest, 2)} | "
                    f"{', '.join(f'{k} × {v}' for k, v in errs.items()) or 'none'} |"
                )
    out.append("")


def main():
    d = sys.argv[1]
    meta = json.load(open(os.path.join(d, "meta.json"), encoding="utf-8"))
    out = [
        f"Commit {meta['commit']}; {meta['nproc']} CPUs ({meta['cpu'].strip()}), kernel "
        f"{meta['kernel']}; {meta['nginx']}; {meta['h2load']}; Python {meta['python']}. SUT on "
        f"CPU {meta['cpu_sut']}, generator, flood clients and backend on CPU {meta['cpu_load']}. "
        f"Wall time {meta['wall_s']} s.",
        "",
    ]
    memory(meta, rows(os.path.join(d, "memory.jsonl")), out)
    keepalive(meta, rows(os.path.join(d, "keepalive.jsonl")), out)
    limit(meta, rows(os.path.join(d, "limit.jsonl")), out)
    flood(meta, rows(os.path.join(d, "flood.jsonl")), out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
