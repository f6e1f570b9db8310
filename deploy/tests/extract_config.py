#!/usr/bin/env python3
"""Writes out what the proxy container would see, so `oz-capture-proxy check` can judge it.

For each workload in a rendered manifest that runs oz-capture-proxy, writes
    OUTDIR/<prefix>.config.yaml   the ConfigMap key mounted at the `--config` path
    OUTDIR/<prefix>.env           the container's OZ_PROXY__* variables, one KEY=VALUE a line,
                                  with secretKeyRef values resolved from the rendered Secret
                                  (placeholders) or, when the Secret is not in the rendering,
                                  set to REPLACE_ME as the real one would be (for the Redis URL,
                                  a redis:// URL with the password REPLACE_ME).
and prints the written config paths.

Usage: extract_config.py RENDERED.yaml OUTDIR PREFIX
"""

from __future__ import annotations

import base64
import os
import sys

from assert_manifests import (PLACEHOLDER, PLACEHOLDER_REDIS_URL, REDIS_URL_ENV, WORKLOAD_KINDS, Report,
                              config_text, load, proxy_in)


def main() -> int:
    rendered, outdir, prefix = sys.argv[1:4]
    docs = load(rendered)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    written = 0
    for w in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        spec = w["spec"]["template"]["spec"]
        found = proxy_in(spec)
        if not found:
            continue
        proxy = found[1]
        r = Report(rendered)
        text = config_text(docs, spec, proxy, r, w["metadata"]["name"])
        if text is None:
            print("\n".join(r.failures), file=sys.stderr)
            return 1
        name = f"{prefix}-{w['metadata']['name']}" if written else prefix
        with open(os.path.join(outdir, f"{name}.config.yaml"), "w", encoding="utf-8") as f:
            f.write(text)
        with open(os.path.join(outdir, f"{name}.env"), "w", encoding="utf-8") as f:
            for e in proxy.get("env") or []:
                if not e["name"].startswith("OZ_PROXY__"):
                    continue
                if "value" in e:
                    value = str(e["value"])
                else:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                    s = secrets.get(ref.get("name"), {})
                    value = (s.get("stringData") or {}).get(ref.get("key"))
                    if value is None and ref.get("key") in (s.get("data") or {}):
                        value = base64.b64decode(s["data"][ref["key"]]).decode()
                    if value is None:
                        value = PLACEHOLDER_REDIS_URL if e["name"] == REDIS_URL_ENV else PLACEHOLDER
                f.write(f"{e['name']}={value}\n")
        print(os.path.join(outdir, f"{name}.config.yaml"))
        written += 1
    if not written:
        print(f"{rendered}: no oz-capture-proxy workload", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
