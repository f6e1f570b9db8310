#!/usr/bin/env python3
"""Checks on rendered manifests that a JSON schema cannot express.

kubernetes-validate proves that every field exists and has the right type; this script proves
the fields that make the sidecar deployment correct: the proxy is a native sidecar (or, in the
legacy layout, a plain container), every Service port goes through the proxy, the probes hit the
admin port, every container is hardened, the grace period covers the backend's preStop and the
proxy's drain (both read from the ConfigMap's embedded config), resources are set, the Secrets
hold placeholders only and no ConfigMap holds a secret. A rendering whose proxy keeps its state
in Redis (`state.store: redis`, several replicas) also needs the Redis URL from a Secret only, a
HorizontalPodAutoscaler on CPU for the workload, a PodDisruptionBudget selecting its Pods, topology
spread across zones and nodes, and egress to Redis when egress is restricted.

Usage:
    assert_manifests.py RENDERED.yaml [RENDERED.yaml ...] [--servicemonitor FILE]
    assert_manifests.py --self-test RENDERED.yaml   # mutates a good rendering, expects failures

A mutation that leaves the rendering unchanged (egress without the Redis ports, where egress is
open) is reported as n/a, neither caught nor missed; deploy/check.sh renders each overlay with each
optional patch enabled and requires every mutation to be caught on some rendering.

Each rendered file is the output of `kubectl kustomize` for one base or overlay. Exit 0 when every
check passes, 1 otherwise; every failure is printed with the file, the object and the field.
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import yaml

PROXY_IMAGE = "oz-capture-proxy"
PROXY_UID = 65532
PLACEHOLDER = "REPLACE_ME"
# Defaults of src/config/, used when the embedded config leaves a key out.
DEFAULTS = {
    "listen": "0.0.0.0:8080",
    "admin_listen": "0.0.0.0:9901",
    "drain_delay": "5s",
    "drain_deadline": "20s",
    "memory_budget_bytes": 512 * 1024 * 1024,
    "wait_for_result": "30s",
}
# The Redis URL: it carries the password, so it is a credential like the Oz ones.
REDIS_URL_ENV = "OZ_PROXY__STATE__REDIS__URL"
# Credentials the proxy reads from the environment (OZ_PROXY__SECTION__KEY).
SECRET_ENV = {"OZ_PROXY__OZ__AUTH__TOKEN", "OZ_PROXY__OZ__AUTH__EMAIL", "OZ_PROXY__OZ__AUTH__PASSWORD",
              REDIS_URL_ENV}
SECRET_CONFIG_KEYS = ("token", "email", "password")
# A committed Secret value is a placeholder: REPLACE_ME, or a Redis URL whose password is
# REPLACE_ME (so that `oz-capture-proxy check` can still parse it).
PLACEHOLDER_URL = re.compile(rf"rediss?://[^\s:@/]*:{PLACEHOLDER}@[^\s@/]+(?:/\d+)?")
# What stands for the Redis URL when its Secret is not in the rendering (extract_config.py).
PLACEHOLDER_REDIS_URL = f"redis://:{PLACEHOLDER}@redis.example.invalid:6379/0"
# A URL with a password in it (scheme://user:password@host).
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:]*:[^\s/@]+@", re.IGNORECASE)
# Keys whose non-empty value in a ConfigMap is a secret (their *_file forms are fine).
SECRET_KEY_NAMES = {"password", "token", "secret"}
REDIS_DEFAULT_PORT = 6379
DNS_PORT = 53
# Rough peak memory per byte of capture budget: the body, its decoded frames and the ZIP.
MEMORY_PER_BUDGET_BYTE = 3
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


# === small parsers ===

def parse_duration(text: str, key: str) -> float:
    """Seconds in a humantime-style duration such as "5s", "500ms", "1m30s"."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", str(text))
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", str(text)):
        raise ValueError(f"{key}: cannot read duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def parse_quantity(text: str) -> float:
    """Bytes (or cores) in a Kubernetes quantity such as 512Mi, 1G, 250m."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(text))
    if not m:
        raise ValueError(f"cannot read quantity {text!r}")
    mult = {"": 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * mult


def addr_port(addr: str) -> int:
    return int(str(addr).rsplit(":", 1)[1])


# === findings ===

@dataclass
class Report:
    source: str
    failures: list[str] = field(default_factory=list)
    passes: int = 0

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passes += 1
        else:
            self.failures.append(f"{self.source}: {what}")
        return ok


# === the checks ===

def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def proxy_in(spec: dict) -> tuple[str, dict] | None:
    """("init" | "main", container) for the oz-capture-proxy container of a pod spec."""
    for where, key in (("init", "initContainers"), ("main", "containers")):
        for c in spec.get(key) or []:
            if PROXY_IMAGE in str(c.get("image", "")).rsplit("/", 1)[-1]:
                return where, c
    return None


def config_text(docs: list[dict], spec: dict, proxy: dict, r: Report, name: str) -> str | None:
    """The proxy config file's text, found through --config, its volume mount and the ConfigMap."""
    args = list(proxy.get("command") or []) + list(proxy.get("args") or [])
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        r.check(False, f"{name}: proxy args carry no `--config FILE`")
        return None
    cfg_path = PurePosixPath(args[args.index("--config") + 1])
    mount = next((m for m in proxy.get("volumeMounts") or []
                  if cfg_path.is_relative_to(PurePosixPath(m["mountPath"]))), None)
    if not r.check(mount is not None, f"{name}: no volumeMount holds {cfg_path}"):
        return None
    r.check("subPath" not in mount and "subPathExpr" not in mount,
            f"{name}: config mount {mount['mountPath']} uses subPath, which never sees ConfigMap updates (no hot reload)")
    r.check(mount.get("readOnly") is True, f"{name}: config mount {mount['mountPath']} should be readOnly")
    vol = next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), None)
    if not r.check(vol is not None and "configMap" in vol, f"{name}: volume {mount['name']} is not a ConfigMap"):
        return None
    rel = str(cfg_path.relative_to(PurePosixPath(mount["mountPath"])))
    key = rel
    for item in vol["configMap"].get("items") or []:
        if item["path"] == rel:
            key = item["key"]
    cm = next((d for d in docs if d["kind"] == "ConfigMap"
               and d["metadata"]["name"] == vol["configMap"]["name"]), None)
    if not r.check(cm is not None and key in (cm.get("data") or {}),
                   f"{name}: ConfigMap {vol['configMap']['name']} with key {key} is not in the rendering"):
        return None
    return cm["data"][key]


def embedded_config(docs: list[dict], spec: dict, proxy: dict, r: Report, name: str) -> dict | None:
    """The proxy config, parsed."""
    text = config_text(docs, spec, proxy, r, name)
    if text is None:
        return None
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        r.check(False, f"{name}: the embedded config is not YAML: {e}")
        return None
    if not r.check(isinstance(cfg, dict), f"{name}: the embedded config is not a mapping"):
        return None
    return cfg


def prestop_seconds(container: dict) -> float | None:
    pre = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = " ".join((pre.get("exec") or {}).get("command") or [])
    m = re.search(r"(?:^|[\s/])sleep\s+(\d+(?:\.\d+)?)\b", cmd)
    return float(m.group(1)) if m else None


def port_matches(probe_port, name: str, number: int) -> bool:
    return probe_port == name or probe_port == number


def check_security(c: dict, pod_sc: dict, r: Report, who: str) -> None:
    sc = c.get("securityContext") or {}

    def eff(key):
        return sc.get(key, pod_sc.get(key))

    r.check(eff("runAsNonRoot") is True, f"{who}: runAsNonRoot is not true")
    uid = eff("runAsUser")
    r.check(isinstance(uid, int) and uid > 0, f"{who}: runAsUser must be a non-zero numeric UID (got {uid})")
    r.check(sc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem is not true")
    r.check(sc.get("allowPrivilegeEscalation") is False, f"{who}: allowPrivilegeEscalation is not false")
    r.check(sc.get("privileged") is not True, f"{who}: privileged")
    drop = ((sc.get("capabilities") or {}).get("drop")) or []
    r.check("ALL" in drop, f"{who}: capabilities.drop does not contain ALL")
    r.check(not ((sc.get("capabilities") or {}).get("add")), f"{who}: adds capabilities")
    seccomp = (eff("seccompProfile") or {}).get("type")
    r.check(seccomp == "RuntimeDefault", f"{who}: seccompProfile.type is {seccomp}, want RuntimeDefault")


def check_resources(c: dict, r: Report, who: str) -> None:
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            r.check(what in (res.get(kind) or {}), f"{who}: resources.{kind}.{what} is not set")


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_value(docs: list[dict], name: str, key: str) -> str | None:
    """The value of key `key` of the rendered Secret `name`, or None."""
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"] == name:
            if key in (d.get("stringData") or {}):
                return str(d["stringData"][key])
            if key in (d.get("data") or {}):
                return base64.b64decode(d["data"][key]).decode(errors="replace")
    return None


def targets(hpa: dict, w: dict) -> bool:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return (ref.get("kind") == w["kind"] and ref.get("name") == w["metadata"]["name"]
            and str(ref.get("apiVersion", "")).split("/")[0] == "apps")


def egress_allows(rules: list[dict], port: int, protocol: str = "TCP") -> bool:
    """Whether some egress rule lets `protocol`/`port` out (to some destination)."""
    for rule in rules:
        rports = rule.get("ports") or []
        if not rports:
            return True
        for p in rports:
            if p.get("protocol", "TCP") != protocol:
                continue
            lo = p.get("port")
            if lo is None or (isinstance(lo, int) and lo <= port <= p.get("endPort", lo)):
                return True
    return False


def uses_redis(cfg: dict) -> bool:
    return ((cfg.get("state") or {}).get("store") or "memory") == "redis"


def check_redis_url(docs: list[dict], spec: dict, proxy: dict, cfg: dict, r: Report, name: str) -> str | None:
    """The Redis URL comes from a Secret only; returns the rendered (placeholder) URL when known."""
    redis = ((cfg.get("state") or {}).get("redis")) or {}
    r.check("url" not in redis,
            f"{name}: the ConfigMap's config sets state.redis.url; the Redis URL (it holds the password) "
            f"comes only from a Secret: {REDIS_URL_ENV} from a secretKeyRef, or state.redis.url_file on a "
            f"mounted Secret")
    if not uses_redis(cfg):
        return None
    sources, url = [], None
    env = next((e for e in proxy.get("env") or [] if e["name"] == REDIS_URL_ENV), None)
    if env is not None:
        sources.append(REDIS_URL_ENV)
        ref = ((env.get("valueFrom") or {}).get("secretKeyRef")) or {}
        url = secret_value(docs, ref.get("name"), ref.get("key"))
    url_file = redis.get("url_file")
    if url_file:
        sources.append("state.redis.url_file")
        path = PurePosixPath(str(url_file))
        mount = next((m for m in proxy.get("volumeMounts") or []
                      if path.is_relative_to(PurePosixPath(m["mountPath"]))), None)
        vol = mount and next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), None)
        if r.check(bool(vol) and "secret" in vol,
                   f"{name}: state.redis.url_file {url_file} is not on a mounted Secret volume"):
            rel = str(path.relative_to(PurePosixPath(mount["mountPath"])))
            items = vol["secret"].get("items") or []
            key = next((i["key"] for i in items if i["path"] == rel), None if items else rel)
            url = secret_value(docs, vol["secret"].get("secretName"), key) if key else None
    r.check(bool(sources), f"{name}: state.store is redis but the proxy gets no Redis URL "
                           f"({REDIS_URL_ENV} from a Secret, or state.redis.url_file)")
    r.check(len(sources) < 2, f"{name}: the Redis URL is given twice ({' and '.join(sources)}); url_file "
                              f"would silently win: keep one")
    return url


def check_replicated(docs: list[dict], w: dict, cfg: dict, r: Report, name: str) -> None:
    """Autoscaling, disruption budget and spread of a workload; required when the state is shared."""
    labels = w["spec"]["template"]["metadata"].get("labels") or {}
    spec = w["spec"]["template"]["spec"]
    replicated = uses_redis(cfg)
    why = "state.store is redis (several replicas share it)"

    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and targets(d, w)]
    if replicated:
        r.check(len(hpas) == 1, f"{name}: {why}, but {len(hpas)} HorizontalPodAutoscalers target it, want 1")
    min_replicas = w["spec"].get("replicas", 1)
    for h in hpas:
        hname = f"HorizontalPodAutoscaler/{h['metadata']['name']}"
        hspec = h["spec"]
        # Without metrics, autoscaling/v2 scales on 80 % average CPU utilization.
        metrics = hspec.get("metrics") or [{"type": "Resource", "resource": {"name": "cpu"}}]
        cpu = [m for m in metrics
               if (m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu")
               or (m.get("type") == "ContainerResource" and (m.get("containerResource") or {}).get("name") == "cpu")]
        r.check(bool(cpu), f"{hname}: scales on {[m.get('type') for m in metrics]}, want CPU "
                           f"(a Resource or ContainerResource metric named cpu)")
        min_replicas = hspec.get("minReplicas", 1)
        if replicated:
            r.check(min_replicas >= 2, f"{hname}: minReplicas {min_replicas}; {why}: at least 2")
        r.check(hspec.get("maxReplicas", 0) >= min_replicas,
                f"{hname}: maxReplicas {hspec.get('maxReplicas')} is below minReplicas {min_replicas}")
        r.check("replicas" not in w["spec"],
                f"{name}: sets spec.replicas ({w['spec'].get('replicas')}) while {hname} owns the count: every "
                f"`kubectl apply` would reset it")

    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"
            and selects(((d["spec"].get("selector") or {}).get("matchLabels")) or {}, labels)]
    if replicated:
        r.check(bool(pdbs), f"{name}: {why}, but no PodDisruptionBudget selects its Pods")
    r.check(len(pdbs) <= 1, f"{name}: {len(pdbs)} PodDisruptionBudgets select its Pods; eviction refuses Pods "
                            f"with more than one")
    for p in pdbs:
        pname = f"PodDisruptionBudget/{p['metadata']['name']}"
        has = [k for k in ("minAvailable", "maxUnavailable") if k in p["spec"]]
        r.check(len(has) == 1, f"{pname}: set exactly one of minAvailable and maxUnavailable, got {has}")
        ma, mu = p["spec"].get("minAvailable"), p["spec"].get("maxUnavailable")
        if isinstance(ma, int):
            r.check(ma < min_replicas, f"{pname}: minAvailable {ma} is not below the least replica count "
                                       f"{min_replicas}: no Pod could ever be evicted (node drains hang)")
        if isinstance(mu, int):
            r.check(mu >= 1, f"{pname}: maxUnavailable {mu}: no Pod could ever be evicted")

    constraints = spec.get("topologySpreadConstraints") or []
    for i, c in enumerate(constraints):
        sel = ((c.get("labelSelector") or {}).get("matchLabels")) or {}
        r.check(selects(sel, labels), f"{name}: topologySpreadConstraints[{i}] ({c.get('topologyKey')}) "
                                      f"labelSelector {sel} does not match the Pods' labels {labels}")
    if replicated:
        zone = [c for c in constraints if c.get("topologyKey") == "topology.kubernetes.io/zone"]
        if r.check(bool(zone), f"{name}: {why}, but no topologySpreadConstraints across "
                               f"topology.kubernetes.io/zone"):
            r.check(all(c.get("whenUnsatisfiable") == "ScheduleAnyway" for c in zone),
                    f"{name}: the zone spread should be whenUnsatisfiable: ScheduleAnyway (a cluster in one "
                    f"zone, or a full zone, would otherwise leave Pods Pending)")
        r.check(any(c.get("topologyKey") == "kubernetes.io/hostname" for c in constraints),
                f"{name}: {why}, but no topologySpreadConstraints across kubernetes.io/hostname")


def check_egress(pols: list[dict], cfg: dict, redis_url: str | None, r: Report, name: str) -> None:
    """When a policy restricts the Pods' egress, what the proxy needs must still be allowed out."""
    restricting = [p for p in pols if "Egress" in (p["spec"].get("policyTypes")
                                                  or (["Egress"] if "egress" in p["spec"] else []))]
    if not restricting:
        return
    rules = [rule for p in restricting for rule in p["spec"].get("egress") or []]
    where = ", ".join(f"NetworkPolicy/{p['metadata']['name']}" for p in restricting)
    r.check(egress_allows(rules, DNS_PORT, "UDP") or egress_allows(rules, DNS_PORT, "TCP"),
            f"{where}: egress is restricted and does not allow DNS (port {DNS_PORT})")
    oz = urlsplit(str((cfg.get("oz") or {}).get("url", "")))
    if oz.scheme in ("http", "https"):
        oz_port = oz.port or (443 if oz.scheme == "https" else 80)
        r.check(egress_allows(rules, oz_port), f"{where}: egress is restricted and does not allow oz.url's "
                                               f"port {oz_port}")
    if uses_redis(cfg):
        try:
            port = urlsplit(redis_url).port if redis_url else None
        except ValueError:
            port = None
        port = port or REDIS_DEFAULT_PORT
        r.check(egress_allows(rules, port), f"{name}: state.store is redis, but {where} restricts egress and "
                                            f"does not allow TCP {port} (the Redis URL's port)")


def check_configmaps(docs: list[dict], r: Report) -> None:
    """No ConfigMap holds a password: no URL with one, no non-empty password/token/secret key."""
    for d in docs:
        if d["kind"] != "ConfigMap":
            continue
        cname = f"ConfigMap/{d['metadata']['name']}"
        for key, text in (d.get("data") or {}).items():
            m = URL_WITH_PASSWORD.search(str(text))
            # The message names the scheme only: a CI log must not show any of the password.
            r.check(m is None, f"{cname}: data.{key} holds a URL with a password "
                               f"({m and m.group(0).split('://')[0]}://user:…@…); credentials belong in a Secret")
            try:
                parsed = yaml.safe_load(str(text))
            except yaml.YAMLError:
                continue
            stack = [("", parsed)]
            while stack:
                path, node = stack.pop()
                if isinstance(node, dict):
                    for k, v in node.items():
                        kp = f"{path}.{k}" if path else str(k)
                        if str(k).lower() in SECRET_KEY_NAMES:
                            r.check(v in (None, ""), f"{cname}: data.{key} sets {kp}; credentials belong in a Secret")
                        stack.append((kp, v))
                elif isinstance(node, list):
                    stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))


def check_workload(docs: list[dict], w: dict, r: Report) -> None:
    name = f"{w['kind']}/{w['metadata']['name']}"
    tmpl = w["spec"]["template"]
    spec = tmpl["spec"]
    labels = tmpl["metadata"].get("labels") or {}
    found = proxy_in(spec)
    if not r.check(found is not None, f"{name}: no {PROXY_IMAGE} container"):
        return
    where, proxy = found
    pname = f"{name} container {proxy['name']}"
    backends = [c for c in spec.get("containers") or [] if c is not proxy]
    r.check(len(backends) >= 1, f"{name}: no backend container next to the proxy")

    # --- native sidecar or plain container ---
    if where == "init":
        # The schema types restartPolicy as a plain string: only the API server knows "Always".
        r.check(proxy.get("restartPolicy") == "Always",
                f"{pname}: an initContainers proxy must have restartPolicy: Always (native sidecar), "
                f"got {proxy.get('restartPolicy')!r}")
    else:
        r.check("restartPolicy" not in proxy,
                f"{pname}: restartPolicy on a regular container (legacy layout) is not valid before 1.34")
    for c in spec.get("initContainers") or []:
        if c is not proxy:
            r.check(c.get("restartPolicy") in (None, "Always"), f"{name} init {c['name']}: bad restartPolicy")

    cfg = embedded_config(docs, spec, proxy, r, name)
    if cfg is None:
        return
    listen_port = addr_port(cfg.get("listen", DEFAULTS["listen"]))
    admin_port = addr_port(cfg.get("admin_listen", DEFAULTS["admin_listen"]))
    shutdown = cfg.get("shutdown") or {}
    drain_delay = parse_duration(shutdown.get("drain_delay", DEFAULTS["drain_delay"]), "shutdown.drain_delay")
    drain_deadline = parse_duration(shutdown.get("drain_deadline", DEFAULTS["drain_deadline"]),
                                    "shutdown.drain_deadline")
    capture = cfg.get("capture") or {}

    # --- ports ---
    ports = {p.get("name"): p.get("containerPort") for p in proxy.get("ports") or []}
    r.check(ports.get("proxy") == listen_port,
            f"{pname}: port `proxy` is {ports.get('proxy')}, config listen is {listen_port}")
    r.check(ports.get("admin") == admin_port,
            f"{pname}: port `admin` is {ports.get('admin')}, config admin_listen is {admin_port}")

    # --- backend reached over loopback, on a port a backend container declares ---
    burl = (cfg.get("backend") or {}).get("url", "")
    m = re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\]):(\d+)/?", str(burl))
    if r.check(m is not None, f"{name}: backend.url {burl!r} should be http://127.0.0.1:PORT (same pod)"):
        bport = int(m.group(2))
        declared = {p.get("containerPort") for c in backends for p in c.get("ports") or []}
        r.check(bport in declared, f"{name}: backend.url port {bport} is not a backend containerPort {sorted(declared)}")
        r.check(bport not in (listen_port, admin_port), f"{name}: backend port {bport} collides with the proxy's")

    # --- the verdict lookup, when on, only for this pod's containers ---
    vlisten = cfg.get("verdict_listen")
    if vlisten is not None:
        vm = re.fullmatch(r"(127\.0\.0\.1|\[::1\]):(\d+)", str(vlisten))
        if r.check(vm is not None, f"{name}: verdict_listen {vlisten!r} should be on loopback (127.0.0.1:PORT)"):
            vport = int(vm.group(2))
            r.check(vport not in (listen_port, admin_port) and vport not in ports.values(),
                    f"{name}: verdict_listen port {vport} collides with a declared port")

    # --- probes on the admin port ---
    want = {"startupProbe": "/live", "livenessProbe": "/live", "readinessProbe": "/ready"}
    for probe, path in want.items():
        hg = ((proxy.get(probe) or {}).get("httpGet")) or {}
        r.check(hg.get("path") == path and port_matches(hg.get("port"), "admin", admin_port),
                f"{pname}: {probe} should be httpGet {path} on the admin port, got {hg or proxy.get(probe)}")
    ready = proxy.get("readinessProbe") or {}
    r.check(ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3) <= drain_delay,
            f"{pname}: readinessProbe notices draining after up to "
            f"{ready.get('periodSeconds', 10) * ready.get('failureThreshold', 3)} s, longer than drain_delay {drain_delay} s")

    # --- hardening, resources ---
    pod_sc = spec.get("securityContext") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        who = f"{name} container {c['name']}"
        check_security(c, pod_sc, r, who)
        check_resources(c, r, who)
    puid = (proxy.get("securityContext") or {}).get("runAsUser", pod_sc.get("runAsUser"))
    r.check(puid == PROXY_UID, f"{pname}: runAsUser {puid}, the image's user is {PROXY_UID}")
    r.check(spec.get("automountServiceAccountToken") is False,
            f"{name}: automountServiceAccountToken should be false (neither container talks to the API)")
    image = str(proxy.get("image", ""))
    r.check("@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")),
            f"{pname}: image {image!r} needs a fixed tag or digest")

    mem_limit = parse_quantity(((proxy.get("resources") or {}).get("limits") or {}).get("memory", "0"))
    budget = int(capture.get("memory_budget_bytes", DEFAULTS["memory_budget_bytes"]))
    r.check(mem_limit >= MEMORY_PER_BUDGET_BYTE * budget,
            f"{pname}: memory limit {mem_limit / 2**20:.0f}Mi is below {MEMORY_PER_BUDGET_BYTE} x "
            f"capture.memory_budget_bytes ({budget / 2**20:.0f}Mi): a full budget would get the proxy OOM-killed")

    # --- shutdown timing ---
    grace = spec.get("terminationGracePeriodSeconds", 30)
    r.check(grace > drain_delay + drain_deadline,
            f"{name}: terminationGracePeriodSeconds {grace} is not above drain_delay + drain_deadline "
            f"({drain_delay:g} + {drain_deadline:g})")
    waits = [parse_duration(capture.get("wait_for_result", DEFAULTS["wait_for_result"]), "capture.wait_for_result")]
    for i, route in enumerate(capture.get("routes") or []):
        if "wait_for_result" in route:
            waits.append(parse_duration(route["wait_for_result"], f"capture.routes[{i}].wait_for_result"))
    for b in backends:
        who = f"{name} container {b['name']}"
        sleep = prestop_seconds(b)
        if not r.check(sleep is not None, f"{who}: needs a preStop sleep (the backend must outlive the endpoint update)"):
            continue
        r.check(sleep > max(waits),
                f"{who}: preStop sleep {sleep:g} s is not above the longest capture wait_for_result {max(waits):g} s")
        if where == "init":
            # Native sidecars get SIGTERM only after the main containers have exited.
            r.check(grace > sleep + drain_delay + drain_deadline,
                    f"{name}: terminationGracePeriodSeconds {grace} is not above backend preStop {sleep:g} + "
                    f"drain_delay {drain_delay:g} + drain_deadline {drain_deadline:g} (the sidecar stops last)")
        else:
            # Plain containers get SIGTERM together: the backend must outlive the proxy's drain.
            r.check(sleep >= drain_delay + drain_deadline,
                    f"{who}: preStop sleep {sleep:g} s is shorter than the proxy's drain "
                    f"({drain_delay:g} + {drain_deadline:g} s)")
            r.check(grace > sleep, f"{name}: terminationGracePeriodSeconds {grace} is not above preStop {sleep:g}")

    # --- scrape annotations ---
    ann = tmpl["metadata"].get("annotations") or {}
    if "prometheus.io/scrape" in ann:
        r.check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin_port)
                and ann.get("prometheus.io/path", "/metrics") == "/metrics",
                f"{name}: prometheus.io annotations should point at {admin_port} /metrics, got {ann}")

    # --- credentials: only from Secrets, only into the proxy ---
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for e in proxy.get("env") or []:
        if e["name"] in SECRET_ENV or e["name"].startswith("OZ_PROXY__OZ__AUTH__"):
            ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or {}
            if r.check("value" not in e and ref, f"{pname}: {e['name']} must come from a secretKeyRef, not a value"):
                s = secrets.get(ref.get("name"))
                if s is not None:
                    keys = set((s.get("data") or {})) | set((s.get("stringData") or {}))
                    r.check(ref.get("key") in keys, f"{pname}: {e['name']} refers to missing key "
                                                    f"{ref.get('name')}/{ref.get('key')}")
    auth = ((cfg.get("oz") or {}).get("auth")) or {}
    for k in SECRET_CONFIG_KEYS:
        r.check(not auth.get(k), f"{name}: the ConfigMap's config sets oz.auth.{k}; secrets belong in the Secret")
    redis_url = check_redis_url(docs, spec, proxy, cfg, r, name)

    # --- several replicas: autoscaler, disruption budget, spread ---
    check_replicated(docs, w, cfg, r, name)

    # --- Services: every port of a Service selecting these pods goes to the proxy ---
    svcs = [d for d in docs if d["kind"] == "Service" and selects(d["spec"].get("selector") or {}, labels)]
    r.check(any(p.get("targetPort") == "proxy" for s in svcs for p in s["spec"].get("ports") or []),
            f"{name}: no Service has targetPort `proxy`")
    for s in svcs:
        for p in s["spec"].get("ports") or []:
            r.check(p.get("targetPort") in ("proxy", "admin"),
                    f"Service/{s['metadata']['name']} port {p.get('name')}: targetPort {p.get('targetPort')!r} "
                    f"bypasses the proxy (use the named port `proxy`)")

    # --- NetworkPolicy: nothing but the proxy and admin ports is reachable ---
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"
            and selects((d["spec"].get("podSelector") or {}).get("matchLabels") or {}, labels)]
    if r.check(bool(pols), f"{name}: no NetworkPolicy selects the pods; the backend port is reachable around the proxy"):
        allowed = {"proxy", "admin", listen_port, admin_port}
        for pol in pols:
            for i, rule in enumerate(pol["spec"].get("ingress") or []):
                rports = rule.get("ports") or []
                r.check(bool(rports) and all(p.get("port") in allowed for p in rports),
                        f"NetworkPolicy/{pol['metadata']['name']} ingress[{i}] allows ports beyond proxy/admin: {rports}")
        check_egress(pols, cfg, redis_url, r, name)


def check_secrets(docs: list[dict], r: Report) -> None:
    for d in docs:
        if d["kind"] != "Secret":
            continue
        name = f"Secret/{d['metadata']['name']}"
        values = {f"stringData.{k}": str(v) for k, v in (d.get("stringData") or {}).items()}
        values |= {f"data.{k}": base64.b64decode(v).decode(errors="replace") for k, v in (d.get("data") or {}).items()}
        for k, v in values.items():
            r.check(v == PLACEHOLDER or PLACEHOLDER_URL.fullmatch(v) is not None,
                    f"{name}: {k} is not the placeholder {PLACEHOLDER} (or a redis:// URL with the password "
                    f"{PLACEHOLDER})")


def check_file(path: str) -> Report:
    r = Report(path)
    docs = load(path)
    check_documents(docs, r)
    return r


def check_documents(docs: list[dict], r: Report) -> None:
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    r.check(bool(workloads), "no workload in the rendering")
    for w in workloads:
        check_workload(docs, w, r)
    for h in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        r.check(any(targets(h, w) for w in workloads),
                f"HorizontalPodAutoscaler/{h['metadata']['name']}: scaleTargetRef {h['spec'].get('scaleTargetRef')} "
                f"is no workload of the rendering")
    for p in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        sel = ((p["spec"].get("selector") or {}).get("matchLabels")) or {}
        r.check(any(selects(sel, w["spec"]["template"]["metadata"].get("labels") or {}) for w in workloads),
                f"PodDisruptionBudget/{p['metadata']['name']}: selector {sel} selects no Pod of the rendering")
    check_secrets(docs, r)
    check_configmaps(docs, r)


def check_servicemonitor(path: str, renderings: list[str]) -> Report:
    r = Report(path)
    docs = load(path)
    sms = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    if not r.check(len(sms) == 1, "expected exactly one ServiceMonitor"):
        return r
    sm = sms[0]
    r.check(sm.get("apiVersion") == "monitoring.coreos.com/v1", f"apiVersion {sm.get('apiVersion')}")
    spec = sm.get("spec") or {}
    ns = sm["metadata"].get("namespace")
    r.check(ns in ((spec.get("namespaceSelector") or {}).get("matchNames") or []),
            f"namespaceSelector does not include its own namespace {ns}")
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    eps = spec.get("endpoints") or []
    r.check(bool(eps), "no endpoints")
    for rendering in renderings:
        rdocs = load(rendering)
        svcs = [d for d in rdocs if d["kind"] == "Service" and selects(sel, d["metadata"].get("labels") or {})]
        if not r.check(len(svcs) == 1, f"selector {sel} matches {len(svcs)} Services in {rendering}, want 1"):
            continue
        svc = svcs[0]
        nss = {d["metadata"].get("namespace") for d in rdocs if d["kind"] == "Service"}
        if nss != {None}:
            r.check(ns in nss, f"namespace {ns} is not the namespace of {rendering} ({nss})")
        sports = {p.get("name"): p.get("targetPort") for p in svc["spec"].get("ports") or []}
        for ep in eps:
            r.check(sports.get(ep.get("port")) == "admin",
                    f"endpoint port {ep.get('port')!r} is not a port of Service/{svc['metadata']['name']} "
                    f"targeting `admin` ({sports})")
            r.check(ep.get("path", "/metrics") == "/metrics", f"endpoint path {ep.get('path')} is not /metrics")
    return r


# === self test: each mutation of a good rendering must be caught ===

def _deployment(docs):
    return next(d for d in docs if d["kind"] in WORKLOAD_KINDS)


def _proxy(docs):
    return proxy_in(_deployment(docs)["spec"]["template"]["spec"])[1]


def _backend(docs):
    spec = _deployment(docs)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if PROXY_IMAGE not in c["image"])


def _real_secret_value(docs):
    """A real password in the first Secret; nothing when the overlay leaves every Secret out."""
    secret = next((x for x in docs if x["kind"] == "Secret"), None)
    if secret is not None:
        secret.setdefault("stringData", {})["password"] = "hunter2"


def _config_cm(docs):
    return next(d for d in docs if d["kind"] == "ConfigMap")


def _set_config(docs, fn):
    cm = _config_cm(docs)
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    fn(cfg)
    cm["data"]["config.yaml"] = yaml.safe_dump(cfg)


MUTATIONS = {
    "sidecar restartPolicy Sometimes": lambda d: _proxy(d).__setitem__("restartPolicy", "Sometimes"),
    "Service targets the backend port": lambda d: next(x for x in d if x["kind"] == "Service")["spec"]["ports"][0]
    .__setitem__("targetPort", "backend"),
    "readiness probe on /live": lambda d: _proxy(d)["readinessProbe"]["httpGet"].__setitem__("path", "/live"),
    "startup probe on the traffic port": lambda d: _proxy(d)["startupProbe"]["httpGet"].__setitem__("port", "proxy"),
    "backend runs as root": lambda d: _backend(d).setdefault("securityContext", {}).__setitem__("runAsUser", 0),
    "writable root filesystem": lambda d: _proxy(d)["securityContext"].__setitem__("readOnlyRootFilesystem", False),
    "capabilities kept": lambda d: _backend(d)["securityContext"]["capabilities"].__setitem__("drop", ["NET_RAW"]),
    "seccomp Unconfined": lambda d: (_proxy(d)["securityContext"].__setitem__("seccompProfile", {"type": "Unconfined"})),
    "grace period too short": lambda d: _deployment(d)["spec"]["template"]["spec"]
    .__setitem__("terminationGracePeriodSeconds", 20),
    "drain_deadline raised past the grace period": lambda d: _set_config(
        d, lambda c: c.setdefault("shutdown", {}).__setitem__("drain_deadline", "90s")),
    "no backend preStop": lambda d: _backend(d).pop("lifecycle"),
    "no memory limit": lambda d: _proxy(d)["resources"]["limits"].pop("memory"),
    "real secret value": lambda d: _real_secret_value(d),
    "token in the ConfigMap": lambda d: _set_config(
        d, lambda c: c.setdefault("oz", {}).setdefault("auth", {}).__setitem__("token", "abc")),
    "password as a plain env value": lambda d: next(e for e in _proxy(d)["env"]
                                                    if e["name"].endswith("PASSWORD")).update(
        {"value": "x", "valueFrom": None}),
    "config mounted with subPath": lambda d: _proxy(d)["volumeMounts"][0].__setitem__("subPath", "config.yaml"),
    "listen port differs from containerPort": lambda d: _set_config(d, lambda c: c.__setitem__("listen", "0.0.0.0:8081")),
    "verdict_listen off loopback": lambda d: _set_config(d, lambda c: c.__setitem__("verdict_listen", "0.0.0.0:9902")),
    "backend.url on the wrong port": lambda d: _set_config(
        d, lambda c: c["backend"].__setitem__("url", "http://127.0.0.1:3000")),
    "memory budget above the limit": lambda d: _set_config(
        d, lambda c: c.setdefault("capture", {}).__setitem__("memory_budget_bytes", 1 << 30)),
    "NetworkPolicy opens every port": lambda d: next(x for x in d if x["kind"] == "NetworkPolicy")["spec"]["ingress"][0]
    .pop("ports"),
}


def _one(docs, kind):
    found = [x for x in docs if x["kind"] == kind]
    assert len(found) == 1, f"want one {kind}, the rendering has {len(found)}"
    return found[0]


def _drop(docs, kind):
    docs.remove(_one(docs, kind))


def _spread(docs, key):
    return next(c for c in _deployment(docs)["spec"]["template"]["spec"]["topologySpreadConstraints"]
                if c["topologyKey"] == key)


def _drop_spread(docs, key):
    _deployment(docs)["spec"]["template"]["spec"]["topologySpreadConstraints"].remove(_spread(docs, key))


def _redis_env(docs):
    return next(e for e in _proxy(docs)["env"] if e["name"] == REDIS_URL_ENV)


def _redis_secret(docs):
    """The Secret with the Redis URL, and its key; a placeholder one when the overlay leaves it out."""
    ref = _redis_env(docs)["valueFrom"]["secretKeyRef"]
    secret = next((x for x in docs if x["kind"] == "Secret" and x["metadata"]["name"] == ref["name"]), None)
    if secret is None:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": ref["name"]},
                  "stringData": {ref["key"]: PLACEHOLDER_REDIS_URL}}
        docs.append(secret)
    return secret, ref["key"]


def _set_redis_secret(docs, url):
    secret, key = _redis_secret(docs)
    secret["stringData"][key] = url


def _drop_redis_egress(docs):
    """Drops the egress rules for the Redis ports; nothing where egress is left open (the default
    rendering of overlays/replicated: only with its optional networkpolicy-patch.yaml is there any)."""
    pol = _one(docs, "NetworkPolicy")
    if "egress" in pol["spec"]:
        pol["spec"]["egress"] = [rule for rule in pol["spec"]["egress"]
                                 if not any(p.get("port") in (6379, 6380) for p in rule.get("ports") or [])]


def _pdb_min_available(docs, n):
    spec = _one(docs, "PodDisruptionBudget")["spec"]
    spec.pop("maxUnavailable", None)
    spec["minAvailable"] = n


def _redis_secret_as_data(docs):
    secret, _ = _redis_secret(docs)
    secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in secret.pop("stringData").items()}


def _url_as_file(docs, volume):
    """The commented alternative: the Redis URL as a file from a volume, named by url_file."""
    env = _redis_env(docs)
    secret, key = _redis_secret(docs)
    _proxy(docs)["env"].remove(env)
    _proxy(docs)["volumeMounts"].append({"name": "redis-url", "mountPath": "/var/run/secrets/redis", "readOnly": True})
    _deployment(docs)["spec"]["template"]["spec"]["volumes"].append({"name": "redis-url", **volume(secret, key)})
    _set_config(docs, lambda c: c["state"]["redis"].__setitem__("url_file", f"/var/run/secrets/redis/{key}"))


# For a rendering whose proxy keeps its state in Redis (overlays/replicated): breaking mutations
# of what such a rendering needs, and changes it must still accept.
REPLICATED_MUTATIONS = {
    "HPA targets another Deployment": lambda d: _one(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    .__setitem__("name", "other-app"),
    "HPA scales on memory": lambda d: _one(d, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]
    .__setitem__("name", "memory"),
    "HPA minReplicas 1": lambda d: _one(d, "HorizontalPodAutoscaler")["spec"].__setitem__("minReplicas", 1),
    "no HPA": lambda d: _drop(d, "HorizontalPodAutoscaler"),
    "Deployment sets replicas under the HPA": lambda d: _deployment(d)["spec"].__setitem__("replicas", 2),
    "PDB selects other pods": lambda d: _one(d, "PodDisruptionBudget")["spec"]["selector"]
    .__setitem__("matchLabels", {"app.kubernetes.io/name": "other-app"}),
    "PDB minAvailable = minReplicas (drains hang)": lambda d: _pdb_min_available(
        d, _one(d, "HorizontalPodAutoscaler")["spec"]["minReplicas"]),
    "no PDB": lambda d: _drop(d, "PodDisruptionBudget"),
    "no zone spread": lambda d: _drop_spread(d, "topology.kubernetes.io/zone"),
    "no node spread": lambda d: _drop_spread(d, "kubernetes.io/hostname"),
    "zone spread DoNotSchedule": lambda d: _spread(d, "topology.kubernetes.io/zone")
    .__setitem__("whenUnsatisfiable", "DoNotSchedule"),
    "node spread selects other pods": lambda d: _spread(d, "kubernetes.io/hostname")["labelSelector"]
    .__setitem__("matchLabels", {"app.kubernetes.io/name": "other-app"}),
    "Redis URL as a plain env value": lambda d: _redis_env(d).update(
        {"value": "rediss://oz-proxy:hunter2@redis:6380/0", "valueFrom": None}),
    "no Redis URL at all": lambda d: _proxy(d)["env"].remove(_redis_env(d)),
    "Redis URL in the ConfigMap": lambda d: _set_config(
        d, lambda c: c["state"]["redis"].__setitem__("url", "redis://redis.redis.svc:6379/0")),
    "url_file on the ConfigMap mount": lambda d: _set_config(
        d, lambda c: c["state"]["redis"].__setitem__("url_file", "/etc/oz-capture-proxy/redis-url")),
    "url_file from a ConfigMap volume": lambda d: _url_as_file(
        d, lambda secret, key: {"configMap": {"name": "oz-capture-proxy-config"}}),
    "real password in the Redis Secret": lambda d: _set_redis_secret(
        d, "rediss://oz-proxy:hunter2@redis.example.invalid:6380/0"),
    "another ConfigMap holds a password URL": lambda d: d.append(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings"},
         "data": {"REDIS": "redis://:hunter2@redis:6379/0"}}),
    "egress without the Redis ports": _drop_redis_egress,
}
REPLICATED_VARIANTS = {
    "the Redis URL as a file from the Secret (the commented alternative)": lambda d: _url_as_file(
        d, lambda secret, key: {"secret": {"secretName": secret["metadata"]["name"], "defaultMode": 0o440}}),
    "the Redis Secret's URL in data (base64)": _redis_secret_as_data,
    "a PDB with minAvailable 1": lambda d: _pdb_min_available(d, 1),
}


def _is_replicated(docs) -> bool:
    cm = _config_cm(docs)
    return uses_redis(yaml.safe_load(cm["data"]["config.yaml"]) or {})


def self_test(path: str) -> int:
    base = load(path)
    clean = Report(path)
    check_documents(copy.deepcopy(base), clean)
    if clean.failures:
        print("self-test needs a rendering that passes; it fails with:", *clean.failures, sep="\n  ")
        return 1
    missed, refused, unchanged = [], [], []
    mutations = dict(MUTATIONS)
    variants = {}
    if _is_replicated(base):
        mutations |= REPLICATED_MUTATIONS
        variants = REPLICATED_VARIANTS
    for name, change in variants.items():
        docs = copy.deepcopy(base)
        change(docs)
        r = Report(f"{path} [{name}]")
        check_documents(docs, r)
        if r.failures:
            refused.append(f"{name}: {r.failures[0].split(': ', 1)[1]}")
        else:
            print(f"  passes  {name}")
    for name, mutate in mutations.items():
        docs = copy.deepcopy(base)
        mutate(docs)
        if docs == base:
            # Not a test of anything here: neither caught nor missed (check.sh requires every such
            # mutation to be caught on another rendering).
            unchanged.append(name)
            print(f"  n/a     {name} (changes nothing here)")
            continue
        r = Report(f"{path} [{name}]")
        try:
            check_documents(docs, r)
        except Exception as e:  # a crash on bad input counts as a miss: the checks must report
            r.failures.append(f"crashed: {e!r}")
            missed.append(f"{name} (crashed: {e!r})")
            continue
        if r.failures:
            print(f"  caught  {name}: {r.failures[0].split(': ', 1)[1]}")
        else:
            missed.append(name)
    for name in missed:
        print(f"  MISSED  {name}")
    for what in refused:
        print(f"  REFUSED {what}")
    extra = (f"{len(REPLICATED_MUTATIONS)} of them for state.store redis; {len(variants) - len(refused)} of "
             f"{len(variants)} good changes accepted" if variants
             else f"the {len(REPLICATED_MUTATIONS)} for state.store redis do not apply")
    applied = len(mutations) - len(unchanged)
    na = f"; {len(unchanged)} {'changes' if len(unchanged) == 1 else 'change'} nothing here" if unchanged else ""
    print(f"self-test: {applied - len(missed)} of {applied} mutations caught ({extra}{na})")
    return 1 if missed or refused else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("renderings", nargs="+", help="outputs of `kubectl kustomize`")
    ap.add_argument("--servicemonitor", help="ServiceMonitor example to check against the renderings")
    ap.add_argument("--self-test", action="store_true", help="mutate the (single) rendering and expect failures")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.renderings[0])
    reports = [check_file(p) for p in args.renderings]
    if args.servicemonitor:
        reports.append(check_servicemonitor(args.servicemonitor, args.renderings))
    failed = False
    for r in reports:
        status = "ok" if not r.failures else "FAILED"
        print(f"{r.source}: {r.passes} checks passed, {len(r.failures)} failed: {status}")
        for f in r.failures:
            print(f"  - {f}")
        failed |= bool(r.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
