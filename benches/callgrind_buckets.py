#!/usr/bin/env python3
"""Sums callgrind's self cost (instructions) by whose source code ran it.

Reads `callgrind_annotate --inclusive=no --threshold=100` output, where each function is named
`file:function`. The file is the source line's own file, so code hyper or http inlined into one
of the proxy's functions counts as hyper's or http's: the buckets say whose code the proxy's
instructions are, crate by crate, with glibc's allocator and memcpy apart. Every instruction of
the measured requests is in one bucket, so the table accounts for all of them.

    python3 benches/callgrind_buckets.py annotate.txt REQUESTS
"""
import re
import sys
from collections import defaultdict

ROW = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?):(.*?)(?: \[.*\])?$")


def crate_of(function):
    """The first path segment of a demangled Rust symbol (`<a::B as c::D>::f` gives a)."""
    m = re.match(r"[<&*\s]*(?:dyn |mut |impl )?([A-Za-z_][A-Za-z0-9_]*)::", function)
    return m.group(1) if m else None


def bucket(path, function):
    crate = re.search(r"index\.crates\.io-[0-9a-f]+/([A-Za-z0-9_\-]+?)-\d+\.\d+\.\d+", path)
    if crate:
        name = crate.group(1)
        if name in ("hyper", "httparse", "want"):
            return "hyper (HTTP/1 codec, dispatch, body channels)"
        if name == "hyper-util":
            return "hyper-util (server auto-detection, graceful shutdown)"
        if name in ("http", "http-body", "http-body-util", "bytes"):
            return "http, bytes (header maps, names, values)"
        if name in ("tokio", "tokio-util", "mio"):
            return "tokio (scheduler, I/O readiness, timers, channels)"
        if name in ("tracing", "tracing-core", "tracing-subscriber"):
            return "tracing (log level checks)"
        return f"other crates ({name})" if name else "other crates"
    if "/work/" in path or path.startswith("src/"):
        return "oz-capture-proxy's own source"
    if "malloc" in path or re.search(r"malloc|free|realloc|calloc", function):
        return "glibc malloc and free"
    if "memmove" in path or "memcpy" in path or "memset" in path or "memcmp" in path:
        return "glibc memcpy, memmove, memset"
    if "/rustc/" in path:
        # The standard library inlined into a function (moves, drops, iterators, slices) is
        # that function's work: bucketed by the function's crate.
        owner = crate_of(function)
        if owner and owner not in ("std", "core", "alloc"):
            return bucket(f"index.crates.io-0/{owner.replace('_', '-')}-0.0.0", function) \
                if owner != "oz_capture_proxy" else "oz-capture-proxy's own source"
        return "Rust std (time, threads, formatting)"
    if "sysdeps" in path or "libc" in path or "nptl" in path:
        return "glibc system call wrappers and the rest"
    return "other"


def main():
    lines = open(sys.argv[1]).read().splitlines()
    requests = int(sys.argv[2])
    total = None
    shares = defaultdict(int)
    top = defaultdict(list)
    in_table = False
    for line in lines:
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        # The function table sits between its "file:function" header and the next rule; what
        # follows is annotated source, whose lines are not functions.
        if line.rstrip().endswith("file:function"):
            in_table = True
            continue
        if in_table and line.startswith("-----"):
            if shares:
                break
            continue
        m = ROW.match(line)
        if not in_table or not m or total is None:
            continue
        count = int(m.group(1).replace(",", ""))
        # callgrind_annotate lists the threads' entry functions with (nearly) the whole program
        # as "self": an artifact of how it folds the recursion of the task loop; not a cost.
        if re.search(r"(^|:)(clone|start_thread)$|thread_start|__rust_begin_short_backtrace|"
                     r"vtable\.shim", m.group(3)) and count >= 0.5 * total:
            continue
        b = bucket(m.group(2), m.group(3))
        shares[b] += count
        top[b].append((count, m.group(3)))
    listed = sum(shares.values())
    print("| whose code | instructions per request | share | largest functions (self) |")
    print("|---|---:|---:|---|")
    for b, count in sorted(shares.items(), key=lambda kv: -kv[1]):
        biggest = ", ".join(f"`{f[:55]}`" for _, f in sorted(top[b], reverse=True)[:2])
        print(f"| {b} | {count / requests:,.0f} | {100 * count / total:.1f}% | {biggest} |")
    print(f"| all listed | {listed / requests:,.0f} | {100 * listed / total:.1f}% | |")


if __name__ == "__main__":
    main()
