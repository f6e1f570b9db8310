"""Runs the README's Python verdict verifier, exactly as written, on the cases a test sends.

The verifier is the block after `<!-- verifier:python -->` in README.md: it shares no code with the
proxy that signs. Cases come as a JSON list on stdin, each with the token and what to verify it
against; the answer is a JSON list on stdout with, per case, `ok` and the claims or the error.
A case with `at` is verified as of that Unix time (an expired token without waiting for it).
"""

import base64
import datetime as real_datetime
import json
import pathlib
import re
import sys
from unittest import mock

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def load_verifier():
    text = README.read_text()
    found = re.search(r"<!-- verifier:python -->\s*```python\n(.*?)```", text, re.S)
    if not found:
        sys.exit("README.md has no `<!-- verifier:python -->` block")
    namespace = {}
    exec(compile(found.group(1), "README.md (verifier:python)", "exec"), namespace)
    return namespace["verify_verdict"], namespace["jwt"]


def as_of(unix):
    class FixedDatetime(real_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.datetime.fromtimestamp(unix, tz=tz)

    return mock.patch("jwt.api_jwt.datetime", FixedDatetime)


def main():
    verify_verdict, jwt = load_verifier()
    results = []
    for case in json.load(sys.stdin):
        if "jwks_url" in case:
            key = jwt.PyJWKClient(case["jwks_url"], cache_keys=False)
        else:
            key = base64.b64decode(case["secret_b64"])
        kwargs = {}
        if "body_b64" in case:
            kwargs["body"] = base64.b64decode(case["body_b64"])
        if "binding_b64" in case:
            kwargs["binding"] = base64.b64decode(case["binding_b64"])
        if "audience" in case:
            kwargs["audience"] = case["audience"]
        try:
            if "at" in case:
                with as_of(case["at"]):
                    claims = verify_verdict(case["token"], key, **kwargs)
            else:
                claims = verify_verdict(case["token"], key, **kwargs)
            results.append({"name": case["name"], "ok": True, "claims": claims})
        except Exception as e:  # every failure is a verdict of this driver
            results.append({"name": case["name"], "ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
