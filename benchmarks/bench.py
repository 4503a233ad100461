"""Benchmark: the exporter's /metrics against two floors, in one run, on this machine.

    python benchmarks/bench.py                 # the full run (a few minutes)
    python benchmarks/bench.py --smoke         # tiny sizes: checks the harness, not speed
    python benchmarks/bench.py --plot benchmarks/scaling.png --json benchmarks/results.json
    python benchmarks/bench.py --python OLD/bin/python   # another install's exporter, same floors

The exporter runs from a virtual environment with only `pip install .` in it (what users
get; `harness.users_python`), and so do both floors. Processes: the simulator (paused, so
every run lists the same items), the exporter (its CLI, as users run it), and the floors,
the exporter's own requests made the same way with each page decoded only as far as its
cursor: with plain httpx (`floor.py`) and with aiohttp alone (`floor_aiohttp.py`, the
lower one: what moving the bytes costs). Runs alternate and figures are medians.

- CPU per item: the exporter's CPU for a scrape / items (target <= 12 us), and against the
  httpx floor's (target: below it)
- wall: exporter `/metrics` time vs the httpx floor's fetch time (target <= 1.10x)
- the exporter against the aiohttp floor, CPU and wall (the limit: no target)
- latency: one environment with 50 ms per page, exporter vs floor (target within 5 %)
- memory: exporter peak RSS (VmHWM) from 10k to 1M items (target growth <= 25 MB)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from harness import ROOT, cpu_seconds, exporter, simulator, status, users_python, versions


def peak_rss_mb(pid: int) -> float:
    return int(status(pid)["VmHWM"].split()[0]) / 1024


def scrape(url: str, pid: int) -> tuple[float, float, str]:
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    r = httpx.get(f"{url}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "600"}, timeout=600)
    wall, cpu = time.monotonic() - wall0, cpu_seconds(pid) - cpu0
    r.raise_for_status()
    success = [line for line in r.text.splitlines() if line.startswith("anthropic_work_scrape_success{")]
    if not success or not all(line.endswith(" 1.0") for line in success):
        raise RuntimeError(f"a listing failed during the benchmark: {success}")
    return wall, cpu, r.text


def floor(sim: dict, page_size: int, concurrency: int, python: str, script: str = "floor.py") -> dict:
    out = subprocess.run(
        [
            python,
            str(ROOT / "benchmarks" / script),
            "--url",
            sim["url"],
            "--keys",
            json.dumps(sim["environments"]),
            "--page-size",
            str(page_size),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def compare(
    envs: int,
    items: int,
    page_size: int,
    concurrency: int,
    repeat: int,
    python: str,
    latency: float = 0.0,
    exporter_python: str | None = None,
) -> dict:
    """Floors and exporter, alternating, on `envs` environments of `items` items each."""
    with simulator("--static", *map(str, [items] * envs), pause=True) as sim:
        if latency:
            for env_id in sim["environments"]:
                httpx.post(
                    f"{sim['url']}/_sim/faults",
                    params={"environment_id": env_id},
                    json={"latency_seconds": latency},
                ).raise_for_status()
        pages = -(-items // page_size) if items else 1
        api = {"page_size": page_size, "max_pages": pages + 10, "request_timeout_seconds": 120}
        ran_by = exporter_python or python
        with exporter(sim, ran_by, api=api, scrape={"concurrency": concurrency}) as (url, proc):
            pid = proc.pid
            floor(sim, page_size, concurrency, python)  # warm the simulator's page cache
            scrape(url, pid)  # and the exporter's connections
            floors, aio, exps = [], [], []
            for _ in range(repeat):
                floors.append(floor(sim, page_size, concurrency, python))
                aio.append(floor(sim, page_size, concurrency, python, "floor_aiohttp.py"))
                wall, cpu, _ = scrape(url, pid)
                exps.append({"wall": wall, "cpu": cpu})
            rss = peak_rss_mb(pid)
    total = envs * items
    floor_wall = statistics.median(f["wall"] for f in floors)
    exp_wall = statistics.median(e["wall"] for e in exps)
    floor_cpu = statistics.median(f["cpu"] for f in floors)
    exp_cpu = statistics.median(e["cpu"] for e in exps)
    aio_wall = statistics.median(f["wall"] for f in aio)
    aio_cpu = statistics.median(f["cpu"] for f in aio)
    return {
        "envs": envs,
        "items_per_env": items,
        "items": total,
        "page_size": page_size,
        "concurrency": concurrency,
        "latency": latency,
        "pages_per_env": pages,
        "repeat": repeat,
        "floor_wall": floor_wall,
        "exporter_wall": exp_wall,
        "wall_ratio": exp_wall / floor_wall,
        "floor_cpu": floor_cpu,
        "exporter_cpu": exp_cpu,
        "cpu_us_per_item_beyond_floor": (exp_cpu - floor_cpu) / total * 1e6 if total else 0.0,
        "exporter_cpu_us_per_item": exp_cpu / total * 1e6 if total else 0.0,
        "floor_cpu_us_per_item": floor_cpu / total * 1e6 if total else 0.0,
        "aiohttp_floor_wall": aio_wall,
        "aiohttp_floor_cpu": aio_cpu,
        "aiohttp_floor_cpu_us_per_item": aio_cpu / total * 1e6 if total else 0.0,
        "peak_rss_mb": rss,
    }


def memory(sizes: list[int], page_size: int, python: str, exporter_python: str | None = None) -> list[dict]:
    """Peak RSS of a fresh exporter after listing one environment of each size."""
    rows = []
    for size in sizes:
        with simulator("--static", str(size), pause=True) as sim:
            floor(sim, page_size, 1, python)  # build the simulator's pages first: not the exporter's time
            api = {
                "page_size": page_size,
                "max_pages": size // page_size + 10,
                "request_timeout_seconds": 120,
            }
            with exporter(sim, exporter_python or python, api=api, scrape={"concurrency": 1}) as (url, proc):
                pid = proc.pid
                idle = peak_rss_mb(pid)
                wall, cpu, _ = scrape(url, pid)
                rows.append(
                    {
                        "items": size,
                        "idle_rss_mb": idle,
                        "peak_rss_mb": peak_rss_mb(pid),
                        "wall": wall,
                        "cpu_us_per_item": cpu / size * 1e6,
                    }
                )
    return rows


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--plot", type=Path, help="write the scaling plot (PNG; needs matplotlib)")
    p.add_argument(
        "--python",
        help="run the exporter with this Python instead (another install, e.g. an older version's, "
        "to compare); the floors still run from the `pip install .` venv",
    )
    args = p.parse_args()
    if args.smoke:
        envs, items, sizes, repeat, latency = 3, 300, [1_000, 5_000], 2, 0.01
    else:
        envs, items, sizes, repeat, latency = 20, 5_000, [10_000, 100_000, 1_000_000], args.repeat, 0.05

    print(f"machine: {machine()}")
    python = users_python()
    print(f"installed as users install it (pip install .): {versions(python)}")
    other = args.python
    if other:
        print(f"the exporter from {other}: {versions(other)}")
    plain = compare(envs, items, 100, envs, repeat, python, exporter_python=other)
    # One environment, its pages one after another: where a slow API shows most.
    slow = compare(1, items, 100, 1, repeat, python, latency=latency, exporter_python=other)
    mem = memory(sizes, page_size=500, python=python, exporter_python=other)
    ideal = slow["pages_per_env"] * latency
    growth = mem[-1]["peak_rss_mb"] - mem[0]["peak_rss_mb"]
    per_item = plain["exporter_cpu_us_per_item"]

    rows = [
        (
            "exporter CPU per item",
            f"{plain['exporter_cpu']:.2f}s CPU for {plain['items']:,} items",
            f"{per_item:.2f} us",
            "<= 12 us",
            per_item <= 12,
        ),
        (
            "… against the httpx floor's (reading only cursors)",
            f"{plain['exporter_cpu']:.2f}s vs {plain['floor_cpu']:.2f}s CPU",
            f"{per_item:.2f} vs {plain['floor_cpu_us_per_item']:.2f} us",
            "below it",
            plain["exporter_cpu"] < plain["floor_cpu"],
        ),
        (
            "wall, exporter / httpx floor",
            f"{plain['exporter_wall']:.3f}s / {plain['floor_wall']:.3f}s",
            f"{plain['wall_ratio']:.3f}x",
            "<= 1.10x",
            plain["wall_ratio"] <= 1.10,
        ),
        (
            "… against the aiohttp floor: CPU, wall",
            f"{plain['exporter_cpu']:.2f}s vs {plain['aiohttp_floor_cpu']:.2f}s CPU, "
            f"{plain['exporter_wall']:.3f}s vs {plain['aiohttp_floor_wall']:.3f}s",
            f"{plain['exporter_cpu'] / plain['aiohttp_floor_cpu']:.2f}x, "
            f"{plain['exporter_wall'] / plain['aiohttp_floor_wall']:.2f}x",
            "(the limit)",
            None,
        ),
        (
            f"one environment at {latency * 1000:g} ms/page, exporter / floor",
            f"{slow['exporter_wall']:.3f}s / {slow['floor_wall']:.3f}s",
            f"{slow['wall_ratio']:.3f}x",
            "<= 1.05x",
            slow["wall_ratio"] <= 1.05,
        ),
        (
            f"… the same against pages x {latency * 1000:g} ms",
            f"{slow['exporter_wall']:.3f}s vs {ideal:.3f}s",
            f"{slow['exporter_wall'] / ideal:.3f}x",
            "(context)",
            None,
        ),
        (
            f"peak RSS growth {sizes[0]:,} -> {sizes[-1]:,} items",
            " -> ".join(f"{m['peak_rss_mb']:.1f}" for m in mem) + " MB",
            f"{growth:+.1f} MB",
            "<= 25 MB",
            growth <= 25,
        ),
    ]
    print(
        f"\n{envs} environments x {items:,} items, page size 100, concurrency {envs}, "
        f"medians of {repeat} alternating runs\n"
    )
    print("| measure | measured | result | target | met |\n|---|---|---|---|---|")
    for name, measured, result, target, met in rows:
        verdict = "—" if met is None else "yes" if met else "NO"
        print(f"| {name} | {measured} | {result} | {target} | {verdict} |")
    print("\n| items | peak RSS | idle RSS | wall | CPU per item |\n|---|---|---|---|---|")
    for m in mem:
        print(
            f"| {m['items']:,} | {m['peak_rss_mb']:.1f} MB | {m['idle_rss_mb']:.1f} MB | {m['wall']:.2f}s | "
            f"{m['cpu_us_per_item']:.1f} us |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "versions": versions(other or python),
                    "plain": plain,
                    "latency": slow,
                    "memory": mem,
                },
                indent=2,
            )
            + "\n"
        )
    if args.plot:
        plot(mem, args.plot)


def plot(mem: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [m["items"] for m in mem]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(items, [m["peak_rss_mb"] for m in mem], "o-", label="peak RSS")
    left.plot(items, [m["idle_rss_mb"] for m in mem], "o--", label="RSS before the scrape")
    left.set(
        xscale="log",
        xlabel="work items in one environment",
        ylabel="MB",
        title="Exporter memory",
        ylim=(0, None),
    )
    left.legend()
    right.plot(items, [m["wall"] for m in mem], "o-")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="work items in one environment",
        ylabel="seconds",
        title="/metrics wall time",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
