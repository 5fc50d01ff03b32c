#!/usr/bin/env python3
"""Renders charts/trivy-digest with the real Helm engine (the helm-python-sdk package,
Helm's Go SDK behind a C ABI: no helm binary, no cluster, no network).

Used by scripts/check-manifests.sh:

  chart_tool.py lint                 helm lint --strict, values.schema.json and a render
                                     of the chart with every charts/trivy-digest/ci/*-values.yaml
  chart_tool.py configs OUT_DIR      writes the config file each of those renders mounts
                                     (and the one of examples/flux), for `config check`
  chart_tool.py manifests --check    examples/manifests/trivy-digest.yaml is the chart
                                     rendered with the values of examples/flux/helmrelease.yaml
  chart_tool.py manifests --write    regenerates it
"""

import argparse
import difflib
import pathlib
import re
import sys

import helm_python as helm

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "trivy-digest"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELMRELEASE = ROOT / "examples" / "flux" / "helmrelease.yaml"
MANIFESTS = ROOT / "examples" / "manifests" / "trivy-digest.yaml"
RELEASE = "trivy-digest"
NAMESPACE = "trivy-digest"
CONFIG_KEY = "trivy-digest.yaml"

# The order `helm install` applies kinds in (a subset of Helm's InstallOrder).
KIND_ORDER = [
    "NetworkPolicy",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "ServiceMonitor",
]

HEADER = """\
# trivy-digest for clusters without Helm: `kubectl apply -k examples/manifests/`.
#
# GENERATED from charts/trivy-digest with the values of examples/flux/helmrelease.yaml
# (scripts/check-manifests.sh --update); scripts/check-manifests.sh fails when this file
# and the chart disagree. To change it, change those values, or copy this file and edit
# your copy. The helm.sh/* labels and annotations are inert without Helm.
#
# Before applying, edit:
#   - the Deployment's image: registry.example.com/trivy-digest:0.1.0 -> your registry;
#   - the ConfigMap: `cluster` (your cluster's name) and `defectdojo.url`;
# and create the token Secret (never commit it):
#   kubectl -n trivy-digest create secret generic trivy-digest-defectdojo \\
#     --from-literal=token=<DefectDojo API v2 key>
"""


def load_chart():
    return helm.Chart.load(str(CHART))


def render(chart, values):
    """The rendered manifests as a list of (template, document text), in install order."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in re.split(r"(?m)^---[ \t]*$", text):
            parsed = helm.values_from_yaml(doc) if doc.strip() else {}
            if parsed and parsed.get("kind"):
                docs.append((parsed["kind"], template, doc.strip("\n") + "\n", parsed))
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    docs.sort(key=lambda d: (rank.get(d[0], len(KIND_ORDER)), d[1]))
    return docs


def values_file(path):
    return helm.values_from_yaml(path.read_text())


def helmrelease_values():
    hr = helm.values_from_yaml(HELMRELEASE.read_text())
    if hr.get("kind") != "HelmRelease":
        sys.exit(f"{HELMRELEASE}: not a HelmRelease")
    return hr["spec"]["values"]


def value_sets():
    """Every values set the checks render: the chart's ci/ files and the Flux example."""
    sets = [(f"ci/{p.name}", values_file(p)) for p in CI_VALUES]
    sets.append(("examples/flux/helmrelease.yaml", helmrelease_values()))
    return sets


def config_of(docs):
    """The config file: a ConfigMap's data, or a Secret's stringData (configStorage)."""
    for kind, _, _, parsed in docs:
        field = {"ConfigMap": "data", "Secret": "stringData"}.get(kind)
        if field and CONFIG_KEY in (parsed.get(field) or {}):
            return parsed[field][CONFIG_KEY]
    sys.exit(f"no ConfigMap or Secret with {CONFIG_KEY} in the rendered chart")


def cmd_lint(_args):
    if not CI_VALUES:
        sys.exit(f"no values files in {CHART / 'ci'}")
    chart = load_chart()
    failed = False
    for name, values in value_sets():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        problems += [{"path": "", "error": e} for e in report.get("errors", [])]
        try:
            chart.validate_schema(values)
            docs = render(chart, values)
        except helm.HelmError as e:
            problems.append({"path": "render", "error": str(e)})
            docs = []
        kinds = sorted({d[0] for d in docs})
        if problems:
            failed = True
            print(f"  FAIL {name}")
            for p in problems:
                print(f"       {p.get('path', '')}: {p.get('error', '')}")
        else:
            print(f"  ok   {name}: {len(docs)} objects ({', '.join(kinds)})")
    return 1 if failed else 0


def cmd_configs(args):
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chart = load_chart()
    for name, values in value_sets():
        stem = name.replace("/", "_").replace(".yaml", "")
        (out / f"{stem}.yaml").write_text(config_of(render(chart, values)))
        print(out / f"{stem}.yaml")
    return 0


def generated_manifests():
    docs = render(load_chart(), helmrelease_values())
    parts = [HEADER]
    for _, template, text, _ in docs:
        parts.append(f"---\n# Source: {template.split('/', 1)[1]}\n{text}")
    return "".join(parts)


def cmd_manifests(args):
    want = generated_manifests()
    if args.write:
        MANIFESTS.write_text(want)
        print(f"  wrote {MANIFESTS.relative_to(ROOT)}")
        return 0
    have = MANIFESTS.read_text() if MANIFESTS.exists() else ""
    if have == want:
        print(f"  ok   {MANIFESTS.relative_to(ROOT)} is the chart rendered with the Flux example's values")
        return 0
    print(f"  FAIL {MANIFESTS.relative_to(ROOT)} differs from the chart (run scripts/check-manifests.sh --update):")
    sys.stdout.writelines(
        difflib.unified_diff(
            have.splitlines(keepends=True),
            want.splitlines(keepends=True),
            "committed",
            "rendered",
            n=2,
        )
    )
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lint").set_defaults(func=cmd_lint)
    c = sub.add_parser("configs")
    c.add_argument("out_dir")
    c.set_defaults(func=cmd_configs)
    m = sub.add_parser("manifests")
    g = m.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true")
    g.add_argument("--write", action="store_true")
    m.set_defaults(func=cmd_manifests)
    args = p.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
