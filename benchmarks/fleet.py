"""Benchmark: fleets — which `scrape.concurrency` to default to, and memory in background mode.

    python benchmarks/fleet.py             # the full run (about five minutes)
    python benchmarks/fleet.py --smoke     # tiny sizes: checks the harness, not speed

1. Concurrency. On-demand `/metrics` of N environments of one page each, every request
   (work and work/stats) delayed by the simulator's latency fault, for each concurrency.
   The floor, measured in the same run, is the same scrape with every environment at
   once (concurrency N): nothing waits for a slot there.
2. Background. 1,000 environments x 100 items listed every R seconds while /metrics is
   scraped; the exporter's RSS and its peak RSS (VmHWM) at the end of every refresh cycle.
   Flat memory: after the first two cycles (connections opened, every format rendered
   once) the peak stops growing. RSS alone depends on when it is read: a scrape's buffers
   (tens of MB for 200,000 series) may or may not have been given back to the system yet.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx
from bench import machine, scrape
from harness import cpu_seconds, exporter, simulator, status, users_python, versions

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def with_latency(sim: dict, seconds: float) -> None:
    for env_id in sim["environments"]:
        httpx.post(
            f"{sim['url']}/_sim/faults", params={"environment_id": env_id}, json={"latency_seconds": seconds}
        ).raise_for_status()


def concurrency_sweep(envs: int, latency: float, levels: list[int], repeat: int) -> list[dict]:
    """Median on-demand scrape wall and exporter CPU per concurrency level (and at `envs`, the floor)."""
    rows = []
    with simulator("--static", *["50"] * envs, pause=True) as sim:
        with_latency(sim, latency)
        for level in [*levels, envs]:
            with exporter(sim, scrape={"concurrency": level}) as (url, proc):
                scrape(url, proc.pid)  # open the connections
                runs = [scrape(url, proc.pid)[:2] for _ in range(repeat)]
            rows.append(
                {
                    "concurrency": level,
                    "wall": statistics.median(w for w, _ in runs),
                    "cpu": statistics.median(c for _, c in runs),
                }
            )
    return rows


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    return int(status(pid)[field].split()[0]) / 1024


def background(envs: int, items: int, refresh: float, cycles: int, every: float) -> dict:
    """RSS at the end of each refresh cycle, and how long scrapes took, in background mode."""
    with simulator("--static", *[str(items)] * envs, pause=True) as sim:
        scrape_config = {"mode": "background", "refresh_interval_seconds": refresh, "concurrency": 32}
        with exporter(sim, scrape=scrape_config) as (url, proc):
            started, rss, peak, walls = time.monotonic(), [], [], []
            cpu0 = cpu_seconds(proc.pid)
            with httpx.Client(headers={"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}) as client:
                for cycle in range(1, cycles + 1):
                    while (now := time.monotonic()) < started + cycle * refresh:
                        t = time.perf_counter()
                        client.get(f"{url}/metrics").raise_for_status()
                        walls.append(time.perf_counter() - t)
                        time.sleep(max(0.0, min(every, started + cycle * refresh - now)))
                    rss.append(rss_mb(proc.pid))
                    peak.append(rss_mb(proc.pid, "VmHWM"))
                body = client.get(f"{url}/metrics").text
            cpu = cpu_seconds(proc.pid) - cpu0
    listed = sum(
        1
        for line in body.splitlines()
        if line.startswith("anthropic_work_scrape_success{") and line.endswith(" 1.0")
    )
    return {
        "envs": envs,
        "items_per_env": items,
        "refresh": refresh,
        "listed": listed,
        "rss_per_cycle_mb": rss,
        "peak_rss_per_cycle_mb": peak,
        "peak_growth_after_second_cycle_mb": peak[-1] - peak[min(1, len(peak) - 1)],
        "scrape_median_ms": statistics.median(walls) * 1e3,
        "scrape_p90_ms": statistics.quantiles(walls, n=10)[-1] * 1e3 if len(walls) > 1 else walls[0] * 1e3,
        "scrapes": len(walls),
        "cpu_share": cpu / (cycles * refresh),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = p.parse_args()
    if args.smoke:
        envs, latency, levels, repeat = 6, 0.01, [1, 2], 1
        bg: dict[str, Any] = {"envs": 20, "items": 10, "refresh": 2.0, "cycles": 2, "every": 0.5}
    else:
        envs, latency, levels, repeat = 100, 0.05, [4, 8, 16, 32, 64], 3
        bg = {"envs": 1000, "items": 100, "refresh": 20.0, "cycles": 6, "every": 5.0}

    print(f"machine: {machine()}")
    print(f"installed as users install it (pip install .): {versions(users_python())}")
    rows = concurrency_sweep(envs, latency, levels, repeat)
    best = rows[-1]["wall"]
    print(
        f"\n{envs} environments of one page, {latency * 1000:g} ms a request, on demand, "
        f"medians of {repeat}; floor = concurrency {envs}\n"
    )
    print("| concurrency | scrape wall | / floor | exporter CPU |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['concurrency']} | {row['wall']:.3f} s | {row['wall'] / best:.2f}x | {row['cpu']:.2f} s |"
        )

    result = background(**bg)
    rss = " -> ".join(f"{r:.1f}" for r in result["rss_per_cycle_mb"])
    print(
        f"\nbackground: {result['envs']:,} environments x {result['items_per_env']} items, "
        f"refreshed every {result['refresh']:g} s, {result['listed']:,} listed\n"
    )
    print("| measure | measured |\n|---|---|")
    peak = " -> ".join(f"{r:.1f}" for r in result["peak_rss_per_cycle_mb"])
    print(f"| RSS at the end of each cycle | {rss} MB |")
    print(f"| peak RSS at the end of each cycle | {peak} MB |")
    print(f"| peak growth after the second cycle | {result['peak_growth_after_second_cycle_mb']:+.1f} MB |")
    print(
        f"| scrape (OpenMetrics, gzip), median / p90 of {result['scrapes']} | "
        f"{result['scrape_median_ms']:.0f} / {result['scrape_p90_ms']:.0f} ms |"
    )
    print(f"| exporter CPU, share of one core | {result['cpu_share'] * 100:.0f} % |")


if __name__ == "__main__":
    main()
