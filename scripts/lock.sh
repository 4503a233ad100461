#!/usr/bin/env bash
# Regenerate requirements/image.lock: the image's runtime dependencies, every one pinned, with the
# hashes of its files, resolved from pyproject.toml. The Dockerfile installs from it with
# --require-hashes; tests/test_packaging.py checks it against pyproject.toml. Run after changing a
# dependency, and to take newer versions into the image.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "pip-tools>=7.4"
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "$work/venv/bin/pip-compile" --quiet --generate-hashes \
  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
  --output-file requirements/image.lock pyproject.toml
