"""The benchmark harness at smoke size: it runs and prints every figure. Not a timed test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def smoke(script: str, *args: str) -> str:
    """`python benchmarks/SCRIPT --smoke ARGS`: what it printed, once it exited 0."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_benchmark_runs_at_smoke_size(tmp_path):
    out = smoke("bench.py", "--json", str(tmp_path / "r.json"))
    assert out.startswith("machine: ")
    for row in (
        "wall, exporter / floor",
        "CPU per item beyond the floor",
        "one environment at 10 ms/page, exporter / floor",
        "the same against pages x 10 ms",
        "peak RSS growth 1,000 -> 5,000 items",
    ):
        assert re.search(rf"^\| [^|]*{re.escape(row)}.* \| (yes|NO) \|$", out, re.M), row
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["plain"]["items"] == 900 and figures["plain"]["floor_wall"] > 0
    assert [m["items"] for m in figures["memory"]] == [1_000, 5_000]


@pytest.mark.slow
def test_the_fleet_benchmark_runs_at_smoke_size():
    out = smoke("fleet.py")
    assert [int(n) for n in re.findall(r"^\| (\d+) \| [\d.]+ s \| [\d.]+x \| [\d.]+ s \|$", out, re.M)] == [
        1,
        2,
        6,
    ]
    assert "background: 20 environments x 10 items, refreshed every 2 s, 20 listed" in out
    for row in (
        "RSS at the end of each cycle",
        "growth after the second cycle",
        "scrape (OpenMetrics, gzip)",
    ):
        assert re.search(rf"^\| {re.escape(row)}.* \| .+ \|$", out, re.M), row
