"""The benchmark harness at smoke size: it runs and prints every figure. Not a timed test."""

from __future__ import annotations

import importlib
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
    # The exporter ran from a `pip install .` venv: its hot path's packages, as users get them.
    assert re.search(r"^installed as users install it \(pip install \.\): aiohttp [\d.]+, ", out, re.M)
    for row in (
        "exporter CPU per item",
        "against the httpx floor's (reading only cursors)",
        "wall, exporter / httpx floor",
        "against the aiohttp floor: CPU, wall",
        "one environment at 10 ms/page, exporter / floor",
        "the same against pages x 10 ms",
        "peak RSS growth 1,000 -> 5,000 items",
    ):
        assert re.search(rf"^\| [^|]*{re.escape(row)}.* \| (yes|NO|—) \|$", out, re.M), row
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["plain"]["items"] == 900 and figures["plain"]["floor_wall"] > 0
    assert figures["plain"]["aiohttp_floor_wall"] > 0 and "aiohttp" in figures["versions"]
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
        "peak RSS at the end of each cycle",
        "peak growth after the second cycle",
        "scrape (OpenMetrics, gzip)",
    ):
        assert re.search(rf"^\| {re.escape(row)}.* \| .+ \|$", out, re.M), row


@pytest.mark.slow
def test_two_installs_alternate_and_each_gets_its_medians():
    """versus.py against the users' own venv: both sides run every round, in alternating order."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        python = importlib.import_module("harness").users_python()
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = smoke("versus.py", python)
    rounds = re.findall(r"^round (\d) (other|this): exporter CPU per item \(µs\) [\d.]+, ", out, re.M)
    assert rounds == [("1", "other"), ("1", "this"), ("2", "this"), ("2", "other")]
    medians = re.findall(r"^(.+): other [\d.]+ \([\d.]+-[\d.]+\); this [\d.]+ \([\d.]+-[\d.]+\)$", out, re.M)
    assert medians == [
        "exporter CPU per item (µs)",
        "exporter wall (s)",
        "wall / httpx floor's",
        "CPU / aiohttp floor's",
    ]


@pytest.mark.slow
def test_the_transports_comparison_runs_at_smoke_size():
    out = smoke("transports.py")
    ways = re.findall(r"^\| ([^|]+) \| [\d.]+ ms \| [\d.]+x \| [\d.]+ s \|$", out, re.M)
    assert ways == [
        "httpx client, httpcore transport (before)",
        "httpx client, aiohttp transport",
        "httpcore transport, request straight",
        "aiohttp transport, request straight",
        "the exporter's client: the same, the body read bounded (now)",
        "aiohttp alone (the limit)",
    ]
    assert len(re.findall(r"^\| [^|]+ \| [\d.]+ us \|$", out, re.M)) == 4  # ways of building a request


@pytest.mark.slow
def test_the_stages_benchmark_runs_at_smoke_size():
    out = smoke("stages.py")
    stages = re.findall(r"^\| ([^|]+) \| [\d.-]+ us \|$", out, re.M)
    assert stages == [
        "decode",
        "ages and counts",
        "transitions and flow histograms",
        "all three",
        "one metadata key, on top (decoding and counting)",
    ]


@pytest.fixture
def hotspots(monkeypatch):
    """benchmarks/hotspots.py, imported as its script sees its neighbours."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("hotspots")


CLI = "main (exporter/cli.py:183)"
RAW_PROFILE = "\n".join(
    [
        f"{CLI};Engine._list (exporter/running/engine.py:334);parse_work_page (exporter/api/codec.py:400) 7",
        f"{CLI};UpstreamClient.get (exporter/api/client.py:8);ClientSession._request (aiohttp/client.py:7) 2",
        f"{CLI};current_async_library (httpcore/s.py:2);_find_and_load (<frozen importlib._bootstrap>:1) 1",
        f"{CLI};select (selectors.py:468) 5",
    ]
)


@pytest.mark.parametrize(
    ("stack", "area"),
    [
        ("a (exporter/running/engine.py:1);b (exporter/api/codec.py:2)", "decoding (exporter/api/codec.py)"),
        ("a (exporter/api/transport.py:1);b (aiohttp/client.py:2)", "aiohttp, yarl, multidict"),
        ("a (exporter/api/client.py:1);b (yarl/_url.py:2)", "aiohttp, yarl, multidict"),
        (
            "a (httpcore/x.py:1);b (<frozen importlib._bootstrap>:2);c (exporter/api/codec.py:3)",
            "import machinery",
        ),
        ("a (exporter/running/engine.py:1);b (selectors.py:2)", "the rest of the exporter"),
        ("a (selectors.py:2)", "other"),
    ],
)
def test_hotspots_count_a_sample_in_its_innermost_named_area(hotspots, stack, area):
    assert hotspots.area_of(stack) == area


def test_hotspots_shares_are_of_all_samples(hotspots):
    figures, total = hotspots.shares(RAW_PROFILE)
    assert total == 15
    assert figures == {
        "decoding (exporter/api/codec.py)": 7 / 15,
        "the rest of the exporter": 5 / 15,
        "aiohttp, yarl, multidict": 2 / 15,
        "import machinery": 1 / 15,
    }
