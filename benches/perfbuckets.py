#!/usr/bin/env python3
"""Sums a `perf report --no-children --sort dso,sym -g none --stdio` listing by component.

Every sampled function is put in one bucket: the kernel (split into the TCP/IP stack, system-call
entry and exit, and the rest), the C library (allocator, memcpy, other), hyper and its codec
crates, tokio, this crate, Rust's std, and anything else. The table says where each share of the
proxy's CPU time goes; benches/perfstat.sh RECORD=1 prints it (BENCHMARKS.md quotes it).

Two limits: a sample counts for the symbol it landed in, so with fat LTO code inlined across
crates (hyper's into tokio's task poll, the proxy's into hyper's dispatcher) counts for the
outer function's crate (benches/callgrind_buckets.py splits by source line instead); and without
a PMU perf samples on a timer, so `_raw_spin_unlock_irqrestore`, where interrupts come back on,
also takes the time of the interrupt work that was held (softirq TCP processing), which inflates
"kernel: wake-ups, locks".

    python3 benches/perfbuckets.py perf.txt
"""
import re
import sys
from collections import defaultdict

ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")

KERNEL_NET = ("tcp", "ip_", "__ip", "ipv4", "inet", "sock", "skb", "__skb", "net_", "__netif",
              "netif", "napi", "__napi", "loopback", "dev_", "__dev", "__tcp", "bbr", "sk_",
              "__sk", "release_sock", "lock_sock", "kfree_skb", "__kfree_skb", "raw_local",
              "process_backlog", "validate_xmit", "eth_", "nf_", "__inet", "__sys_recv",
              "__sys_send", "sys_recv", "sys_send", "_copy_to_iter", "_copy_from_iter",
              "__check_object", "check_heap", "__virt_addr", "simple_copy", "skb_")
KERNEL_SYSCALL = ("entry_syscall", "do_syscall", "syscall_", "__x64_sys", "x64_sys",
                  "exit_to_user", "fdget", "__fdget", "fput", "__fget", "vfs_", "do_iter",
                  "import_iovec", "__import_iovec", "rw_verify", "security_", "ksys_", "do_writev",
                  "do_readv", "__fsnotify", "fsnotify", "rcu_", "__rcu")
KERNEL_POLL = ("ep_", "do_epoll", "__x64_sys_epoll", "epoll", "ep_poll", "__pollwait", "wake_up",
               "__wake_up", "try_to_wake", "_raw_spin", "schedule", "__schedule", "pick_next",
               "finish_task", "update_", "dequeue", "enqueue", "hrtimer", "ktime")
HYPER = ("hyper", "hyper_util", "httparse", "http", "http_body", "http_body_util", "want",
         "bytes", "h2")
TOKIO = ("tokio", "tokio_util", "mio")
STD = ("std", "core", "alloc")


def crate_of(sym):
    """The first path segment of a demangled Rust symbol (`<a::B as c::D>::f` -> a)."""
    s = sym.lstrip("<&*")
    s = re.sub(r"^(dyn |mut |impl )", "", s)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    return m.group(1) if m else None


def bucket(dso, kind, sym):
    if kind == "k" or dso.startswith("[kernel"):
        low = sym.lower()
        if low.startswith(KERNEL_NET) or "tcp" in low or "skb" in low:
            return "kernel: TCP/IP over loopback, socket copies"
        if low.startswith(KERNEL_SYSCALL):
            return "kernel: system call entry, exit, file lookup"
        if low.startswith(KERNEL_POLL):
            return "kernel: wake-ups, locks, epoll, scheduler"
        return "kernel: other"
    if dso.startswith("libc"):
        if re.search(r"malloc|free|realloc|calloc|arena|tcache|sysmalloc|unlink_chunk|consolidate",
                     sym):
            return "libc: malloc and free"
        if re.search(r"mem(cpy|move|set|cmp)|str", sym):
            return "libc: memcpy, memmove, memset"
        return "libc: other (system call wrappers)"
    if dso.startswith("[vdso"):
        return "vdso: clock_gettime (Instant::now)"
    crate = crate_of(sym)
    if crate in HYPER:
        return "hyper, http, httparse, bytes (HTTP/1 codec, header maps)"
    if crate in TOKIO:
        return "tokio (scheduler, I/O driver, timers, channels)"
    if crate == "oz_capture_proxy":
        return "oz-capture-proxy's own code (filters, pool, observation)"
    if crate in STD:
        return "Rust std, core, alloc"
    if crate in ("tracing", "tracing_core", "tracing_subscriber"):
        return "tracing (log filter checks)"
    return "other"


def main():
    shares = defaultdict(float)
    tops = defaultdict(list)
    total = 0.0
    for line in open(sys.argv[1]):
        m = ROW.match(line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        b = bucket(dso, kind, sym)
        shares[b] += pct
        tops[b].append((pct, sym))
        total += pct
    print("| component | share of the process's CPU samples | largest functions |")
    print("|---|---:|---|")
    for b, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        top = ", ".join(f"`{s[:60]}` {p:.1f}%" for p, s in sorted(tops[b], reverse=True)[:3])
        print(f"| {b} | {pct:.1f}% | {top} |")
    print(f"| total | {total:.1f}% | |")


if __name__ == "__main__":
    main()
