#!/usr/bin/env bash
# The suite against the lowest version of every runtime dependency pyproject.toml allows
# (requirements/minimum.txt, exactly), in a venv of its own (.venv-minimum): every test not marked
# slow (the demo's among them), and the end-to-end tests whatever their mark. scripts/test.sh runs
# the whole suite against the newest; CI runs both (.ci/run). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/anthropic-work-exporter/tools"  # helm and kubectl, as test.sh puts them
export PATH="$TOOLS:$PATH"
if [ ! -x .venv-minimum/bin/python ]; then
  python3 -m venv .venv-minimum
fi
PY=.venv-minimum/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check -c requirements/minimum.txt -e '.[test]'
"$PY" -m pip check
"$PY" - <<'PYTHON'  # exactly the floors, or this run proves nothing
import importlib.metadata, re, sys
wanted = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", open("requirements/minimum.txt").read(), re.M))
got = {name: importlib.metadata.version(name) for name in wanted}
wrong = {name: (got[name], version) for name, version in wanted.items() if got[name] != version}
sys.exit(f"not the minimums: {wrong}" if wrong else 0)
PYTHON
"$PY" -m pytest -q -m "not slow" "$@"
"$PY" -m pytest -q -m slow tests/test_e2e.py "$@"
