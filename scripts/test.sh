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

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
python3 -m pytest "$@"
