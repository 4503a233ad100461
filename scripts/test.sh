#!/usr/bin/env bash
# Install everything the tests need, then run them all: lint, unit, socket and
# end-to-end tests, and the checks against real Prometheus, promtool and
# Alertmanager. Run from anywhere; as root it installs the Debian packages
# prometheus and prometheus-alertmanager when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages prometheus and prometheus-alertmanager"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-alertmanager openssl >/dev/null
  else
    echo "note: promtool/prometheus/alertmanager missing and not root: those tests will skip" >&2
  fi
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
"$PY" -m pytest "$@"
