#!/usr/bin/env python3
"""Checks the Grafana dashboard against the metrics the proxy really exposes.

Every `oz_proxy_*` name in a panel query must be a metric family the proxy serves. Names are
compared as families: `_bucket`, `_sum` and `_count` are stripped from histogram samples, and a
counter family `x` (OpenMetrics `# TYPE x counter`) stands for the sample `x_total`.

Usage:
    check_dashboard.py DASHBOARD.json --metrics-doc src/metrics.rs   # the module doc table
    check_dashboard.py DASHBOARD.json --scrape metrics.txt           # a real /metrics response

Also checks the dashboard's shape: unique panel ids, no overlapping panels, a datasource and a
query on every panel, histogram_quantile only over `_bucket` series of histograms. Exit 0 when all is well.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

NAME = re.compile(r"\boz_proxy_[a-zA-Z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def family(sample: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def dashboard_queries(dash: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """(panel title, expr) for every query, plus problems with the dashboard's shape."""
    problems, queries, ids = [], [], set()

    def walk(panels):
        for p in panels:
            if p.get("type") == "row":
                walk(p.get("panels") or [])
                continue
            title = p.get("title", "?")
            if p.get("id") in ids:
                problems.append(f"panel {title!r}: duplicate id {p.get('id')}")
            ids.add(p.get("id"))
            if not p.get("datasource"):
                problems.append(f"panel {title!r}: no datasource")
            targets = p.get("targets") or []
            if not targets:
                problems.append(f"panel {title!r}: no query")
            for t in targets:
                if not t.get("expr"):
                    problems.append(f"panel {title!r}: target {t.get('refId')} has no expr")
                else:
                    queries.append((title, t["expr"]))

    walk(dash.get("panels") or [])
    # Panels must not overlap on Grafana's 24-column grid (Grafana would silently move them).
    taken: dict[tuple[int, int], str] = {}
    for p in dash.get("panels") or []:
        g = p.get("gridPos") or {}
        if g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {p.get('title')!r} is wider than the grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in taken and taken[(x, y)] != p.get("title"):
                    problems.append(f"panel {p.get('title')!r} overlaps {taken[(x, y)]!r}")
                    break
                taken[(x, y)] = p.get("title")
            else:
                continue
            break
    for var in (dash.get("templating") or {}).get("list") or []:
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if var.get("type") == "query" and q:
            queries.append((f"variable ${var['name']}", q))
    return queries, problems


def families_from_doc(path: str) -> dict[str, str]:
    """{family: type} from the `//! | \\`name\\` | type | labels |` table of src/metrics.rs."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"//!\s*\|\s*`(oz_proxy_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def families_from_scrape(path: str) -> dict[str, str]:
    """{family or sample name: type} from Prometheus or OpenMetrics text."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            m = re.match(r"#\s*TYPE\s+(\S+)\s+(\S+)", line)
            if m:
                name, kind = m.groups()
                out[name] = kind
                if kind == "counter" and not name.endswith("_total"):
                    out[name + "_total"] = kind  # OpenMetrics names the family without _total
                continue
            if line and not line.startswith("#"):
                sample = re.split(r"[{\s]", line, maxsplit=1)[0]
                out.setdefault(family(sample), "untyped")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboard")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics-doc", help="src/metrics.rs: compare with its module doc table")
    src.add_argument("--scrape", help="a saved /metrics response")
    args = ap.parse_args()

    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    queries, problems = dashboard_queries(dash)
    known = families_from_doc(args.metrics_doc) if args.metrics_doc else families_from_scrape(args.scrape)
    if not known:
        problems.append(f"no oz_proxy_* metric found in {args.metrics_doc or args.scrape}")

    used: dict[str, set[str]] = {}
    for title, expr in queries:
        for sample in NAME.findall(expr):
            used.setdefault(sample, set()).add(title)
        for m in re.finditer(r"histogram_quantile\([^,]+,\s*(.*)", expr):
            for sample in NAME.findall(m.group(1)):
                if not sample.endswith("_bucket"):
                    problems.append(f"histogram_quantile over {sample}, not a _bucket series")

    for sample, titles in sorted(used.items()):
        fam = family(sample)
        kind = known.get(sample) or known.get(fam)
        where = ", ".join(sorted(titles))
        if kind is None:
            problems.append(f"{sample} (in {where}) is not exposed by the proxy")
        elif sample != fam and kind not in ("histogram", "untyped"):
            problems.append(f"{sample} (in {where}) is a {kind}, not a histogram")
        else:
            print(f"  ok  {sample:48} {kind}")

    used_families = {family(s) for s in used} | {s.removesuffix("_total") for s in used}
    unused = sorted({f.removesuffix("_total") for f in known
                     if f.startswith("oz_proxy_") and f.removesuffix("_total") not in used_families})
    if unused:
        print("  note: exposed but not on the dashboard:", ", ".join(unused))
    for p in problems:
        print(f"  FAIL {p}")
    print(f"{len(used)} metric names in {len(queries)} queries; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
