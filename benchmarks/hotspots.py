"""Where the exporter's CPU goes during scrapes: py-spy samples, summed by area.

    python benchmarks/hotspots.py                     # 20 x 5,000 items, 8 scrapes
    python benchmarks/hotspots.py --python OTHER/bin/python --raw before.txt
    python benchmarks/hotspots.py --summarize before.txt

The exporter runs from a `pip install .` virtual environment (what users get), or from
`--python` (another install, e.g. an older version's, to compare), against the paused
simulator; py-spy (`pip install py-spy`; it needs to be allowed to read the process) samples
it at 250 Hz while it serves `--scrapes` scrapes. Each sample is counted once, for the
innermost frame of the stack that belongs to a named area; an import anywhere in the
stack counts as "import machinery", whatever it was importing.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import exporter, simulator, users_python, versions

# (area, a substring of a frame's file) in the order a frame is tested against them.
AREAS = (
    ("decoding (exporter/api/codec.py)", "exporter/api/codec.py"),
    ("ages and counts (exporter/folds/work.py)", "exporter/folds/work.py"),
    ("flow (exporter/folds/flow.py)", "exporter/folds/flow.py"),
    ("the work source (exporter/endpoints/)", "exporter/endpoints/"),
    ("upstream client (exporter/api/client.py, transport.py)", "exporter/api/client.py"),
    ("upstream client (exporter/api/client.py, transport.py)", "exporter/api/transport.py"),
    ("retries and budget (exporter/api/requests.py)", "exporter/api/requests.py"),
    ("exposition (exporter/metrics/exposition.py, prometheus_client)", "exporter/metrics/exposition.py"),
    ("exposition (exporter/metrics/exposition.py, prometheus_client)", "prometheus_client/"),
    ("the rest of the exporter", "exporter/"),
    ("aiohttp, yarl, multidict", "aiohttp/"),
    ("aiohttp, yarl, multidict", "yarl/"),
    ("aiohttp, yarl, multidict", "multidict/"),
    ("httpx", "httpx/"),
    ("httpcore, h11, anyio", "httpcore/"),
    ("httpcore, h11, anyio", "h11/"),
    ("httpcore, h11, anyio", "anyio/"),
    ("msgspec", "msgspec"),
    ("asyncio (the event loop, sockets)", "asyncio/"),
    ("uvicorn", "uvicorn/"),
)
ENVIRONMENTS, ITEMS, RATE = 20, 5_000, 250  # 20 x 5,000 items, sampled 250 times a second
IMPORTS = ("importlib._bootstrap", "<frozen importlib", "_find_and_load")


def area_of(stack: str) -> str:
    """The area one sampled stack (`frame;frame;...`, outermost first) is counted in."""
    frames = stack.split(";")
    if any(marker in frame for frame in frames for marker in IMPORTS):
        return "import machinery"
    for frame in reversed(frames):
        for area, part in AREAS:
            if part in frame:
                return area
    return "other"


def shares(raw: str) -> tuple[dict[str, float], int]:
    """Per area, its share of the samples of a py-spy `--format raw` profile; and their count."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[area_of(stack)] += int(n)
    total = sum(counts.values())
    return {area: n / total for area, n in counts.most_common()}, total


def record(python: str, envs: int, items: int, scrapes: int, out: Path) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    with simulator("--static", *[str(items)] * envs, pause=True) as sim:
        api = {"page_size": 100, "max_pages": items // 100 + 10, "request_timeout_seconds": 120}
        with exporter(sim, python, api=api, scrape={"concurrency": envs}) as (url, proc):
            httpx.get(f"{url}/metrics", timeout=600)  # connections made, caches warm
            command = [spy, "record", "--pid", str(proc.pid), "--rate", str(RATE), "--format", "raw"]
            sampler = subprocess.Popen(
                [*command, "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            time.sleep(1.5)  # py-spy attached
            for _ in range(scrapes):
                headers = {"X-Prometheus-Scrape-Timeout-Seconds": "600"}
                httpx.get(f"{url}/metrics", headers=headers, timeout=600).raise_for_status()
            sampler.send_signal(2)  # SIGINT: py-spy writes what it has
            _, err = sampler.communicate()
            if not out.exists():
                sys.exit(f"py-spy recorded nothing: {err.decode(errors='replace').strip()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", help="the Python of the install to profile (default: a `pip install .` venv)")
    p.add_argument("--scrapes", type=int, default=8)
    p.add_argument("--raw", type=Path, help="keep py-spy's raw profile here")
    p.add_argument("--summarize", type=Path, help="only summarize this raw profile (of --scrapes scrapes)")
    args = p.parse_args()
    if args.summarize:
        raw = args.summarize.read_text()
    else:
        python = args.python or users_python()
        print(f"installed: {versions(python)}")
        with tempfile.TemporaryDirectory() as tmp:
            out = args.raw or Path(tmp, "raw.txt")
            record(python, ENVIRONMENTS, ITEMS, args.scrapes, out)
            raw = out.read_text()
    figures, total = shares(raw)
    items = args.scrapes * ENVIRONMENTS * ITEMS
    print(f"\n{total:,} samples at {RATE} Hz over {items:,} items listed\n")
    print("| area | share of the exporter's CPU | per item |\n|---|---|---|")
    for area, share in figures.items():
        print(f"| {area} | {share:.1%} | {share * total / RATE / items * 1e6:.2f} us |")
    print(f"| all | 100% | {total / RATE / items * 1e6:.2f} us |")


if __name__ == "__main__":
    main()
