#!/usr/bin/env python3
"""Runs the real oz-capture-proxy binary on loopback and checks what the deployment relies on.

The proxy gets a stand-in backend (a Python HTTP server that records what it receives), the
simulated Oz API (`oz-capture-proxy simulate-oz`) and a config laid out the way a ConfigMap
volume lays it out (`config.yaml -> ..data/config.yaml`, `..data -> ..<timestamp>`), so a
reload is tested the way Kubernetes performs it: by an atomic swap of the `..data` symlink.

Checks (pick with --checks; each prints one PASS/FAIL/INFO line):
  start        /live and /ready answer 200 within --ready-timeout seconds
  passthrough  a GET through the proxy reaches the backend, with client `X-Oz-*` headers removed
  capture      one capture POST through the simulated Oz API (INFO: its outcome), then one with
               the simulator stopped, which must fail closed (502/504, nothing forwarded); together
               they create the Oz metric series, which /metrics shows only once they exist
  metrics      every oz_proxy_* name in the Grafana dashboard's queries is in /metrics
  reload       a valid new config is applied, an invalid one rejected (the old one stays in
               force and traffic still flows), both counted in oz_proxy_config_reloads_total
  shutdown     SIGTERM: /ready turns 503 while drain_delay runs, then the process exits 0
               within drain_delay + drain_deadline

--root DIR runs the binary as `chroot --userspec UID:GID DIR /oz-capture-proxy`: DIR is an image's
root filesystem (deploy/check.sh mounts the built image), so the checks prove the image itself.
--backend-host NAME makes backend.url use a host name, resolved through a DNS responder started
on 127.0.0.153:53 and written into DIR/etc/resolv.conf: a static glibc binary in a scratch image
resolving names the way it will in a pod.

Exit 0 when no check failed. Every wait is bounded; all processes started here are stopped.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_dashboard import dashboard_queries, families_from_scrape, family, NAME  # noqa: E402

ALL_CHECKS = ["start", "passthrough", "capture", "metrics", "reload", "shutdown"]
DNS_ADDR = ("127.0.0.153", 53)
# An 8x8 grayscale baseline JPEG (cjpeg -quality 50 -optimize): small, but a real image.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616183123"
    "251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffc0000b080008"
    "000801011100ffc40014000100000000000000000000000000000001ffc4001810000203000000000000000000000000"
    "0000030663a1ffda0008010100003f00110eaf0fffd9"
)

results: list[tuple[str, str, str]] = []


def report(status: str, check: str, detail: str) -> None:
    results.append((status, check, detail))
    print(f"{status:4} {check}: {detail}", flush=True)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 5):
    """(status, headers, body); status 0 when the connection failed."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as rsp:
            return rsp.status, dict(rsp.headers), rsp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (OSError, urllib.error.URLError) as e:
        return 0, {}, str(e).encode()


def wait_until(pred, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def metric_value(text: str, name: str, labels: dict | None = None) -> float | None:
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z0-9_:]+)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            total += float(m.group(3))
            seen = True
    return total if seen else None


# === the stand-ins ===

class Backend(http.server.ThreadingHTTPServer):
    """Answers 200 `backend-ok` and remembers the headers of every request."""

    daemon_threads = True

    def __init__(self, port: int):
        self.seen: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(h):
                n = int(h.headers.get("content-length") or 0)
                if n:
                    h.rfile.read(n)
                self.seen.append({k.lower(): v for k, v in h.headers.items()} | {":path": h.path})
                body = b"backend-ok"
                h.send_response(200)
                h.send_header("content-type", "text/plain")
                h.send_header("content-length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def dns_responder(name: str, answer: str, stop: threading.Event) -> socket.socket:
    """Answers A queries for `name` with `answer`, empty NOERROR otherwise (enough for glibc)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(DNS_ADDR)
    s.settimeout(0.2)

    def serve():
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            tid = data[:2]
            i, labels = 12, []
            while data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode(errors="replace"))
                i += data[i] + 1
            qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
            question = data[12:i + 5]
            hit = qtype == 1 and ".".join(labels).lower() == name.lower()
            rr = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(answer)) if hit else b""
            rcode = 0 if hit or ".".join(labels).lower() == name.lower() else 3
            head = tid + struct.pack(">HHHHH", 0x8180 | rcode, 1, 1 if hit else 0, 0, 0)
            s.sendto(head + question + rr, peer)

    threading.Thread(target=serve, daemon=True).start()
    return s


# === the proxy under test ===

class ConfigVolume:
    """A directory laid out like a ConfigMap volume; `publish` swaps `..data` atomically."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.version = 0

    def publish(self, text: str) -> None:
        self.version += 1
        ts = self.dir / f"..2026_01_01_00_00_{self.version:02d}.{os.getpid()}"
        ts.mkdir()
        (ts / "config.yaml").write_text(text)
        os.chmod(ts, 0o755)
        os.chmod(ts / "config.yaml", 0o644)
        tmp = self.dir / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(ts.name, tmp)
        os.replace(tmp, self.dir / "..data")  # rename(2): the swap the kubelet does
        link = self.dir / "config.yaml"
        if not link.is_symlink():
            os.symlink("..data/config.yaml", link)


def config_yaml(ports: dict, backend_host: str, oz_port: int, route: str, extra: str = "") -> str:
    return f"""\
listen: "127.0.0.1:{ports['listen']}"
admin_listen: "127.0.0.1:{ports['admin']}"
backend:
  url: "http://{backend_host}:{ports['backend']}"
oz:
  url: "http://127.0.0.1:{oz_port}"
capture:
  routes:
    - path: "{route}"
      on_result: forward
  wait_for_result: "5s"
  # Generous: the smoke sends a handful; set so that the limit's series is in /metrics.
  rate_limit:
    per_client: {{ limit: 100, per: "1m" }}
shutdown:
  drain_delay: "2s"
  drain_deadline: "3s"
log:
  format: json
  level: info
{extra}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the binary (with --root: its path inside the root)")
    ap.add_argument("--dashboard", default="deploy/grafana/oz-capture-proxy.json")
    ap.add_argument("--checks", default=",".join(ALL_CHECKS))
    ap.add_argument("--root", help="run the binary chrooted into this image root filesystem")
    ap.add_argument("--userspec", default="65532:65532")
    ap.add_argument("--backend-host", default="127.0.0.1", help="host name of the backend in backend.url")
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--reload-timeout", type=float, default=30, help="seconds to wait for a reload to show")
    ap.add_argument("--logs", default=None, help="directory for the proxy's and simulator's output")
    args = ap.parse_args()
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = set(checks) - set(ALL_CHECKS)
    if unknown:
        ap.error(f"unknown checks {sorted(unknown)}")

    logs = Path(args.logs or tempfile.mkdtemp(prefix="oz-smoke-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    root = Path(args.root) if args.root else None
    base = root if root else Path(tempfile.mkdtemp(prefix="oz-smoke-"))
    vol = ConfigVolume(base / "etc/oz-capture-proxy")
    cfg_path_seen = "/etc/oz-capture-proxy/config.yaml" if root else str(vol.dir / "config.yaml")
    wrap = [shutil.which("chroot") or "/usr/sbin/chroot", f"--userspec={args.userspec}", str(root)] if root else []
    env = {"PATH": "/usr/bin:/bin", "OZ_PROXY__OZ__AUTH__TOKEN": "ci-static-token"}

    listen, admin, bport, oz_port = free_ports(4)
    ports = {"listen": listen, "admin": admin, "backend": bport}
    route = "/api/liveness/capture"
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    dns = None
    backend = Backend(bport)
    if args.backend_host != "127.0.0.1":
        if not root:
            ap.error("--backend-host needs --root (it writes the root's /etc/resolv.conf)")
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc/resolv.conf").write_text(f"nameserver {DNS_ADDR[0]}\noptions timeout:1 attempts:2\n")
        (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
        dns = dns_responder(args.backend_host, "127.0.0.1", stop)

    vol.publish(config_yaml(ports, args.backend_host, oz_port, route))
    base_url = f"http://127.0.0.1:{listen}"
    admin_url = f"http://127.0.0.1:{admin}"
    proxy = None
    try:
        if "capture" in checks:
            sim_log = open(logs / "simulate-oz.log", "wb")
            procs.append(subprocess.Popen(wrap + [args.bin, "simulate-oz", "--listen", f"127.0.0.1:{oz_port}",
                                                  "--token", env["OZ_PROXY__OZ__AUTH__TOKEN"]],
                                          stdout=sim_log, stderr=subprocess.STDOUT, env=env))

        proxy_log = open(logs / "proxy.log", "wb")
        proxy = subprocess.Popen(wrap + [args.bin, "--config", cfg_path_seen], stdout=proxy_log,
                                 stderr=subprocess.STDOUT, env=env)
        procs.append(proxy)

        # --- start ---
        t0 = time.monotonic()
        # Stops waiting as soon as the proxy has exited.
        ready = wait_until(lambda: proxy.poll() is not None or request("GET", admin_url + "/ready")[0] == 200,
                           args.ready_timeout) and proxy.poll() is None
        took = time.monotonic() - t0
        live = request("GET", admin_url + "/live")[0]
        if not (ready and live == 200):
            if proxy.poll() is not None:
                why = f"the proxy exited with code {proxy.returncode} after {took:.1f} s, before /ready answered 200"
            else:
                why = f"/ready not 200 within {args.ready_timeout:g} s (/live {live})"
            report("FAIL", "start", f"{why}; log: {logs / 'proxy.log'}")
            tail = (logs / "proxy.log").read_text(errors="replace").splitlines()[-15:]
            print("\n".join("     | " + line for line in tail))
            return 1
        report("PASS", "start", f"/live 200 and /ready 200 after {took:.2f} s")

        # --- passthrough ---
        if "passthrough" in checks:
            status, _, body = request("GET", base_url + "/hello?x=1", headers={"X-Oz-Resolution": "SUCCESS",
                                                                             "X-Oz-Folder-Id": "forged"})
            got = backend.seen[-1] if backend.seen else {}
            forged = sorted(k for k in got if k.startswith("x-oz-"))
            if status == 200 and body == b"backend-ok" and got.get(":path") == "/hello?x=1" and not forged:
                report("PASS", "passthrough", f"GET /hello?x=1 via {args.backend_host}:{bport} -> 200 backend-ok, "
                                              "client X-Oz-* headers removed")
            else:
                report("FAIL", "passthrough", f"status {status}, body {body[:80]!r}, backend saw path "
                                              f"{got.get(':path')!r} and x-oz headers {forged}")

        # --- capture (warm-up of the Oz metric families) ---
        # Labelled families with no series yet are left out of /metrics entirely, and the Oz ones
        # get their first series on the first Oz call (latency) and the first Oz failure (errors).
        # So: one capture with the simulator up, then one with it stopped.
        if "capture" in checks:
            sim_up = wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", oz_port)) == 0, 10)
            frame = "data:image/jpeg;base64," + base64.b64encode(TINY_JPEG).decode()
            # best_frame null: Oz does not get it (best_frame: none); a non-null one would reach
            # the backend as null (capture.unchecked_images: strip).
            body = json.dumps({"action": "video_selfie_blank", "frame_list": [frame, frame, frame],
                               "best_frame": None, "from_virtual_camera": None,
                               "additional_info": "{\"smoke\":true}"}).encode()
            n = len(backend.seen)
            status, _, rsp = request("POST", base_url + route, body, {"content-type": "application/json"}, timeout=30)
            fwd = backend.seen[n:] if len(backend.seen) > n else []
            verdict = {k: v for k, v in (fwd[-1] if fwd else {}).items() if k.startswith("x-oz-")}
            report("INFO", "capture", f"simulator {'listening' if sim_up else 'NOT listening'}; POST {route} -> "
                                      f"{status}; verdict headers at the backend: {verdict or 'none'}"
                                      + ("" if status == 200 else f"; response {rsp[:200]!r}"))
            for p in procs[:-1]:  # the simulator (the proxy is last)
                p.terminate()
                p.wait(timeout=5)
            # Another picture than the first capture's: a capture sharing a frame with it would be
            # refused as a replay (409) before Oz is called. One quantization step differs.
            other = bytearray(TINY_JPEG)
            other[TINY_JPEG.index(b"\xff\xdb") + 5] ^= 1
            frame = "data:image/jpeg;base64," + base64.b64encode(bytes(other)).decode()
            body = json.dumps({"action": "video_selfie_blank", "frame_list": [frame, frame],
                               "best_frame": None, "from_virtual_camera": None,
                               "additional_info": "{\"smoke\":true}"}).encode()
            n = len(backend.seen)
            status, _, rsp = request("POST", base_url + route, body, {"content-type": "application/json"}, timeout=30)
            # README.md, "What the backend and the client see": a capture that fails is never forwarded as if it had been checked
            # (on_oz_error defaults to reject: 502 or 504, nothing reaches the backend).
            forwarded = len(backend.seen) > n
            if status in (502, 504) and not forwarded:
                report("PASS", "capture", f"Oz unreachable: POST {route} -> {status}, nothing forwarded (fails closed)")
            else:
                report("FAIL", "capture", f"Oz unreachable: POST {route} -> {status}, "
                                          f"{'FORWARDED to the backend' if forwarded else 'not forwarded'}; "
                                          f"response {rsp[:160]!r}")

        # --- metrics ---
        if "metrics" in checks:
            status, hdrs, text = request("GET", admin_url + "/metrics")
            text = text.decode(errors="replace")
            (logs / "metrics.txt").write_text(text)
            with open(args.dashboard, encoding="utf-8") as f:
                queries, problems = dashboard_queries(json.load(f))
            known = families_from_scrape(str(logs / "metrics.txt"))
            wanted = sorted({s for _, q in queries for s in NAME.findall(q)})
            missing = [s for s in wanted if s not in known and family(s) not in known]
            if status == 200 and not missing and not problems:
                report("PASS", "metrics", f"all {len(wanted)} dashboard metric names are in /metrics "
                                          f"({hdrs.get('Content-Type', hdrs.get('content-type', '?'))})")
            else:
                hint = ""
                if any("_oz_" in m for m in missing):
                    hint = ("; the Oz families appear only after the first Oz call: see the capture line, "
                            "or pre-create their label sets in src/metrics.rs")
                report("FAIL", "metrics", f"/metrics {status}; missing {missing}{hint}"
                                          + (f"; dashboard problems {problems}" if problems else "")
                                          + f"; scrape saved as {logs / 'metrics.txt'}")

        # --- reload ---
        if "reload" in checks:
            def reloads(result):
                return metric_value(request("GET", admin_url + "/metrics")[2].decode(errors="replace"),
                                    "oz_proxy_config_reloads_total", {"result": result}) or 0.0

            applied0, rejected0 = reloads("applied"), reloads("rejected")
            # A stricter capture setting: reloadable (listeners, TLS, backend, server limits,
            # forwarding and logging need a restart; a weaker capture setting is refused).
            vol.publish(config_yaml(ports, args.backend_host, oz_port, route).replace('wait_for_result: "5s"',
                                                                                      'wait_for_result: "6s"'))
            t0 = time.monotonic()
            ok_applied = wait_until(lambda: reloads("applied") > applied0, args.reload_timeout, 0.25)
            t_applied = time.monotonic() - t0
            vol.publish(config_yaml(ports, args.backend_host, oz_port, route, extra="capture_typo: true\n"))
            t0 = time.monotonic()
            ok_rejected = wait_until(lambda: reloads("rejected") > rejected0, args.reload_timeout, 0.25)
            t_rejected = time.monotonic() - t0
            still_ready = request("GET", admin_url + "/ready")[0]
            still_flows = request("GET", base_url + "/after-reload")[0]
            if ok_applied and ok_rejected and still_ready == 200 and still_flows == 200:
                report("PASS", "reload", f"..data swap applied after {t_applied:.1f} s, invalid file rejected after "
                                         f"{t_rejected:.1f} s; still ready and forwarding")
            else:
                report("FAIL", "reload", f"applied {'seen' if ok_applied else 'NOT seen'}, rejected "
                                         f"{'seen' if ok_rejected else 'NOT seen'} within {args.reload_timeout:g} s; "
                                         f"/ready {still_ready}, GET via proxy {still_flows}")
            vol.publish(config_yaml(ports, args.backend_host, oz_port, route))

        # --- shutdown ---
        if "shutdown" in checks:
            drain_delay, drain_deadline = 2.0, 3.0
            t0 = time.monotonic()
            proxy.send_signal(signal.SIGTERM)
            went_503 = wait_until(lambda: request("GET", admin_url + "/ready", timeout=1)[0] == 503, drain_delay)
            t503 = time.monotonic() - t0
            served = request("GET", base_url + "/during-drain", timeout=2)[0] if went_503 else 0
            try:
                code = proxy.wait(timeout=drain_delay + drain_deadline + 5)
            except subprocess.TimeoutExpired:
                code = None
            t_exit = time.monotonic() - t0
            if went_503 and served == 200 and code == 0 and t_exit <= drain_delay + drain_deadline + 1:
                report("PASS", "shutdown", f"SIGTERM: /ready 503 after {t503:.2f} s, traffic still served during "
                                           f"drain_delay, exit 0 after {t_exit:.2f} s")
            else:
                report("FAIL", "shutdown", f"/ready 503 {'after %.2f s' % t503 if went_503 else 'never seen'}; "
                                           f"request during drain_delay -> {served}; exit code {code} after "
                                           f"{t_exit:.2f} s (limit {drain_delay + drain_deadline + 1:g} s)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        backend.shutdown()
        stop.set()
        if dns is not None:
            dns.close()
    failed = [c for s, c, _ in results if s == "FAIL"]
    print(f"{len([r for r in results if r[0] == 'PASS'])} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
