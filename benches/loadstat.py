#!/usr/bin/env python3
"""Helpers for benches/load.sh and benches/capture_e2e.sh (standard library only).

  loadstat.py h2load STDOUT_FILE LOG_FILE
      One JSON object from an h2load run: requests/s from its summary, latency percentiles
      computed from its per-request --log-file (microseconds, nearest rank).
  loadstat.py wrk STDOUT_FILE
      The WRKJSON line that benches/wrk_stats.lua printed, with req/s added.
  loadstat.py report RESULTS_JSONL META_JSON
      The Markdown tables (medians over rounds, ratios) for BENCHMARKS.md.
  loadstat.py e2e RESULTS_JSONL META_JSON
      The Markdown tables of benches/capture_e2e.sh.
  loadstat.py e2e-run STATS ROUND MODE N PATH CAPTURES_OUT TICKS TICK LOADAVG DURATION
      One passthrough run of capture_e2e.sh as a JSON line.
  loadstat.py rss-sampler PID OUTFILE
      Samples VmRSS every 20 ms until OUTFILE.stop exists.
"""

import json
import os
import re
import statistics
import sys
import time


def pct(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def h2load(stdout_file, log_file):
    text = open(stdout_file, encoding="utf-8", errors="replace").read()
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    r = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    lat = []
    with open(log_file, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1].startswith("2"):
                lat.append(int(parts[2]))
    lat.sort()
    out = {
        "duration_s": float(m.group(1)) if m else None,
        "rps": float(m.group(2)) if m else None,
        "requests": int(r.group(3)) if r else len(lat),
        "errors": (int(r.group(5)) + int(r.group(6)) + int(r.group(7))) if r else None,
        "status_errors": (int(codes.group(3)) + int(codes.group(4))) if codes else None,
        "p50_us": pct(lat, 50),
        "p99_us": pct(lat, 99),
        "p999_us": pct(lat, 99.9),
        "max_us": lat[-1] if lat else None,
        "samples": len(lat),
    }
    print(json.dumps(out))


def wrk(stdout_file):
    text = open(stdout_file, encoding="utf-8", errors="replace").read()
    m = re.search(r"^WRKJSON (.*)$", text, re.M)
    if not m:
        print(json.dumps({"error": "no WRKJSON line"}))
        return
    d = json.loads(m.group(1))
    d["duration_s"] = d["duration_us"] / 1e6
    d["rps"] = d["requests"] / d["duration_s"] if d["duration_s"] else None
    print(json.dumps(d))


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, nd=2, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    return f"{v:.{nd}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


PATHS = ["direct", "proxy", "nginx", "nginx_buffered", "haproxy"]
PATH_NAMES = {
    "direct": "direct (no proxy)",
    "proxy": "oz-capture-proxy",
    "nginx": "nginx proxy_pass",
    "nginx_buffered": "nginx, buffered log",
    "haproxy": "HAProxy",
}


def load_rows(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def report(results, meta_file):
    rows = load_rows(results)
    meta = json.load(open(meta_file, encoding="utf-8"))
    scen_order = []
    for r in rows:
        if r["scenario"] not in scen_order:
            scen_order.append(r["scenario"])
    descr = meta.get("scenarios", {})
    idle = meta.get("rss_idle_kb", {})
    out = []
    rounds = max((r["round"] for r in rows), default=0)
    out.append(
        f"Medians of {rounds} round(s); each round runs every scenario on every path, "
        f"in rotating order. Latency in ms. CPU = the proxy process's utime+stime "
        f"(nginx: master + worker) per 10,000 requests; core = its CPU time / wall time "
        f"(1.00 = the one pinned core is saturated). RSS in MiB (nginx: master + worker)."
    )
    out.append("")
    summary = []
    for s in scen_order:
        out.append(f"#### {s}: {descr.get(s, '')}")
        out.append("")
        out.append(
            "| path | CPU s/10k req | req/s | p50 | p99 | p99.9 | errors | core | RSS idle | RSS load |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        m = {}
        for p in PATHS:
            rs = [r for r in rows if r["scenario"] == s and r["path"] == p]
            if not rs:
                continue
            d = {
                "rps": med([r.get("rps") for r in rs]),
                "p50": med([r.get("p50_us") for r in rs]),
                "p99": med([r.get("p99_us") for r in rs]),
                "p999": med([r.get("p999_us") for r in rs]),
                "errors": sum((r.get("errors") or 0) + (r.get("status_errors") or 0) for r in rs),
                "cpu10k": med([r.get("cpu_per_10k_s") for r in rs]),
                "core": med([r.get("core_use") for r in rs]),
                "rss_load": med([r.get("rss_load_kb") for r in rs]),
                "n": len(rs),
            }
            m[p] = d
            ms = lambda us: None if us is None else us / 1000.0
            mib = lambda kb: None if kb is None else kb / 1024.0
            out.append(
                f"| {PATH_NAMES[p]} | {fmt(d['cpu10k'], 3)} | {fmt(d['rps'], 0)} | "
                f"{fmt(ms(d['p50']), 3)} | {fmt(ms(d['p99']), 3)} | {fmt(ms(d['p999']), 3)} | "
                f"{d['errors']} | {fmt(d['core'], 2)} | "
                f"{fmt(mib(idle.get(p)), 1)} | {fmt(mib(d['rss_load']), 1)} |"
            )
        out.append("")
        lines = []
        pairs = (
            ("proxy", "nginx"),
            ("proxy", "nginx_buffered"),
            ("proxy", "haproxy"),
            ("proxy", "direct"),
            ("nginx", "direct"),
            ("haproxy", "direct"),
        )
        for a, b in pairs:
            if a in m and b in m:
                lines.append(
                    f"| {a}/{b} | {fmt(ratio(m[a]['cpu10k'], m[b]['cpu10k']), 2)} | "
                    f"{fmt(ratio(m[a]['rps'], m[b]['rps']), 2)} | "
                    f"{fmt(ratio(m[a]['p50'], m[b]['p50']), 2)} | "
                    f"{fmt(ratio(m[a]['p99'], m[b]['p99']), 2)} | "
                    f"{fmt(ratio(m[a]['p999'], m[b]['p999']), 2)} |"
                )
        if lines:
            out.append("| ratio | CPU/req | req/s | p50 | p99 | p99.9 |")
            out.append("|---|---:|---:|---:|---:|---:|")
            out.extend(lines)
            out.append("")
        added = []
        for p in ("proxy", "nginx", "nginx_buffered", "haproxy"):
            if p in m and "direct" in m:
                added.append(
                    f"| {PATH_NAMES[p]} | "
                    + " | ".join(
                        fmt(None if m[p][k] is None or m["direct"][k] is None
                            else (m[p][k] - m["direct"][k]) / 1000.0, 3)
                        for k in ("p50", "p99", "p999")
                    )
                    + " |"
                )
        if added:
            out.append("| added latency over direct (ms) | p50 | p99 | p99.9 |")
            out.append("|---|---:|---:|---:|")
            out.extend(added)
            out.append("")
        summary.append((s, m))
    print("\n".join(headline(summary) + out))


def headline(summary):
    """One row per scenario: each proxy's CPU per 10k requests and p99, and the proxy's ratios."""
    peers = [p for p in ("nginx", "nginx_buffered", "haproxy") if any(p in m for _, m in summary)]
    names = {"nginx": "nginx", "nginx_buffered": "nginx, buffered log", "haproxy": "HAProxy"}
    head = "| scenario | CPU s/10k req: oz-capture-proxy | " + " | ".join(names[p] for p in peers)
    head += " | " + " | ".join(f"proxy/{names[p]}" for p in peers)
    head += " | p99 ms: oz-capture-proxy | " + " | ".join(names[p] for p in peers) + " |"
    cols = 3 + 3 * len(peers)
    out = ["#### Headline: CPU per request and p99, medians", "", head,
           "|---|" + "---:|" * (cols - 1)]
    for s, m in summary:
        if "proxy" not in m:
            continue
        cell = lambda p, k, nd, scale=1.0: fmt(None if p not in m or m[p][k] is None
                                               else m[p][k] * scale, nd)
        row = [s, cell("proxy", "cpu10k", 3)]
        row += [cell(p, "cpu10k", 3) for p in peers]
        row += [fmt(ratio(m["proxy"]["cpu10k"], m[p]["cpu10k"]) if p in m else None, 2)
                for p in peers]
        row += [cell("proxy", "p99", 3, 0.001)] + [cell(p, "p99", 3, 0.001) for p in peers]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    return out


def e2e_run(stats, r, mode, n, path, capfile, ticks, tick, load, dur):
    """One passthrough run of capture_e2e.sh as a JSON line, with the capture clients' counts."""
    d = json.loads(stats)
    caps = {"ok": 0, "busy": 0, "other": 0, "per_s": 0.0}
    if os.path.exists(capfile):
        t = open(capfile, encoding="utf-8", errors="replace").read()
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
        f = re.search(r"finished in ([\d.]+)s", t)
        if m:
            caps["ok"] = int(m.group(1))
            caps["other"] = int(m.group(2)) + int(m.group(3))
            caps["busy"] = int(m.group(4))  # 5xx: 503 over a limit, 502/504 on Oz failures
        if m and f:
            caps["per_s"] = int(m.group(1)) / float(f.group(1))
    d.update(
        kind="passthrough", round=int(r), mode=mode, in_flight=int(n), path=path,
        loadavg=float(load), proxy_cpu_s=int(ticks) / int(tick),
        proxy_core=int(ticks) / int(tick) / float(dur), captures=caps,
    )
    print(json.dumps(d))


def rss_sampler(pid, out):
    """Writes "<time> <VmRSS KiB>" every 20 ms until OUT.stop exists."""
    stop = out + ".stop"
    with open(out, "w", encoding="utf-8") as f:
        while not os.path.exists(stop):
            try:
                with open(f"/proc/{pid}/status", encoding="utf-8") as s:
                    for line in s:
                        if line.startswith("VmRSS:"):
                            f.write(f"{time.time():.3f} {line.split()[1]}\n")
            except FileNotFoundError:
                return
            time.sleep(0.02)


MODE_TEXT = {"none": "no captures", "paced": "captures, paced", "stress": "captures, stress"}


def e2e(results, meta_file):
    rows = load_rows(results)
    meta = json.load(open(meta_file, encoding="utf-8"))
    out = []
    pt = [r for r in rows if r.get("kind") == "passthrough"]
    if pt:
        out.append(
            f"Passthrough: constant {meta['rate']:,} req/s of GET /1k (h2load --h1 --rps, "
            f"{meta['conns']} connections, {meta['duration_s']} s per run) through the proxy and, as a "
            f"control, direct to the backend, while {meta['in_flight']} capture clients post "
            f"{meta['capture_mib']} MiB captures back to back (paced: with the Oz verdict wait; "
            f"stress: without). Latency in ms; proxy core = the proxy's CPU time / wall time."
        )
        out.append("")
        out.append("| captures | path | runs | req/s | p50 | p99 | p99.9 | proxy core | captures/s (2xx) | capture 5xx |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        med_of = {}
        for mode in ("none", "paced", "stress"):
            for path in ("proxy", "direct"):
                rs = [r for r in pt if r["mode"] == mode and r["path"] == path]
                if not rs:
                    continue
                m = {k: med([r[k] for r in rs]) for k in ("rps", "p50_us", "p99_us", "p999_us", "proxy_core")}
                m["caps"] = med([r["captures"]["per_s"] for r in rs])
                m["busy"] = sum(r["captures"]["busy"] for r in rs)
                med_of[(mode, path)] = m
                out.append(
                    f"| {MODE_TEXT[mode]} | {path} | {len(rs)} | {fmt(m['rps'], 0)} | "
                    f"{fmt(m['p50_us'] / 1000, 3)} | {fmt(m['p99_us'] / 1000, 3)} | "
                    f"{fmt(m['p999_us'] / 1000, 3)} | {fmt(m['proxy_core'], 2)} | "
                    f"{fmt(m['caps'], 1)} | {m['busy']} |"
                )
        out.append("")
        base = med_of.get(("none", "proxy"))
        dbase = med_of.get(("none", "direct"))
        for mode in ("paced", "stress"):
            l = med_of.get((mode, "proxy"))
            dl = med_of.get((mode, "direct"))
            if not (base and l):
                continue
            line = (
                f"- {MODE_TEXT[mode]}: proxy p99 {base['p99_us'] / 1000:.3f} → "
                f"{l['p99_us'] / 1000:.3f} ms, **{(l['p99_us'] / base['p99_us'] - 1) * 100:+.1f} %** "
                f"(p50 {(l['p50_us'] / base['p50_us'] - 1) * 100:+.1f} %, "
                f"p99.9 {(l['p999_us'] / base['p999_us'] - 1) * 100:+.1f} %)"
            )
            if dbase and dl:
                line += (
                    f"; control, direct: p99 {(dl['p99_us'] / dbase['p99_us'] - 1) * 100:+.1f} %; "
                    f"added p99 (proxy − direct) {(base['p99_us'] - dbase['p99_us']) / 1000:.3f} → "
                    f"{(l['p99_us'] - dl['p99_us']) / 1000:.3f} ms"
                )
            out.append(line + ".")
        out.append("")
    for r in [r for r in rows if r.get("kind") == "burst"]:
        escaped = " (every `/` escaped as `\\/`)" if r.get("escaped") else ""
        out.append(
            f"Burst: {r['concurrency']} concurrent captures of {r['body_bytes'] / 1048576:.1f} MiB"
            f"{escaped} "
            f"(capture.max_body_bytes {meta['max_body_bytes'] / 1048576:.0f} MiB, "
            f"memory_budget_bytes {meta['budget_bytes'] / 1048576:.0f} MiB, "
            f"max_concurrent {meta['max_concurrent']})."
        )
        out.append("")
        out.append("| 2xx | 503 | 503 with Retry-After | other | RSS before | peak RSS | peak − before | budget | within budget | RSS 2 s after | RSS 10 s after |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        grow = (r["rss_peak_kb"] - r["rss_before_kb"]) / 1024
        out.append(
            f"| {r['ok']} | {r['busy']} | {r['busy_retry_after']} | {r['other']} | "
            f"{r['rss_before_kb'] / 1024:.1f} MiB | {r['rss_peak_kb'] / 1024:.1f} MiB | {grow:.1f} MiB | "
            f"{meta['budget_bytes'] / 1048576:.0f} MiB | "
            f"{'yes' if grow * 1048576 <= meta['budget_bytes'] else '**no**'} | "
            f"{r['rss_after_kb'] / 1024:.1f} MiB | {r.get('rss_after_10s_kb', 0) / 1024:.1f} MiB |"
        )
        out.append("")
        if r.get("rss_after_part1_kb"):
            out.append(
                f"The burst runs on a freshly started proxy. After part 1 (sustained captures) the "
                f"first process held {r['rss_after_part1_kb'] / 1024:.1f} MiB 2 s after the last "
                f"capture and {r.get('rss_after_part1_10s_kb', 0) / 1024:.1f} MiB 10 s after "
                f"(runtime::trim returns freed heap once the capture threads have been idle 5 s)."
            )
            out.append("")
    print("\n".join(out))


def main():
    cmd = sys.argv[1]
    if cmd == "h2load":
        h2load(sys.argv[2], sys.argv[3])
    elif cmd == "wrk":
        wrk(sys.argv[2])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3])
    elif cmd == "e2e":
        e2e(sys.argv[2], sys.argv[3])
    elif cmd == "e2e-run":
        e2e_run(*sys.argv[2:12])
    elif cmd == "rss-sampler":
        rss_sampler(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
