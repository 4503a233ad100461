"""What the exporter spends per item in each stage of a listing, the HTTP path aside.

    python benchmarks/stages.py            # 5,000 items from the simulator, 15 rounds
    python benchmarks/stages.py --smoke    # tiny: checks the script, not speed

The simulator's pages are fetched once, then each stage is timed on its own over all of
them: decoding (msgspec structs, each timestamp converted and checked), ages and counts
(`aggregate.Aggregator`), the metadata breakdown (one key configured, its extra cost),
and transitions (`flow.FlowFold`, against the mark of a listing a minute before). Run
from the source tree; each stage's CPU, the median of alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.api.codec import parse_work_page
from exporter.config.schema import BucketConfig
from exporter.folds.flow import STEPS, FlowFold, FlowLedger
from exporter.folds.work import Aggregator
from exporter.simulator import SimEnvironment, Simulator, serve, static_items


def pages_of(count: int, now: float) -> list[bytes]:
    simulator = Simulator(
        [SimEnvironment("env_a", "a", items=static_items(count, now, seed=3))], clock=lambda: now
    )
    server = serve(simulator, "127.0.0.1", 0)
    key = simulator.environments["env_a"].key
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}
    pages, cursor = [], None
    try:
        while True:
            params: dict[str, str | int] = {"limit": 100, **({"page": cursor} if cursor else {})}
            r = httpx.get(
                f"http://127.0.0.1:{server.server_port}/v1/environments/env_a/work",
                params=params,
                headers={**headers, "Authorization": f"Bearer {key}"},
            )
            pages.append(r.content)
            if not (cursor := json.loads(r.content)["next_page"]):
                return pages
    finally:
        server.shutdown()


def medians(stages: dict[str, Callable[[], object]], items: int, rounds: int) -> dict[str, float]:
    """CPU microseconds per item of each stage: the median of `rounds` alternating rounds.

    Alternating, so a busy moment of a shared machine falls on every stage alike.
    """
    runs: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(rounds):
        for name, stage in stages.items():
            started = time.process_time()
            stage()
            runs[name].append((time.process_time() - started) / items * 1e6)
    return {name: statistics.median(r) for name, r in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    count = 300 if args.smoke else 5_000
    now = time.time()
    pages = pages_of(count, now)
    b = BucketConfig()
    flow_buckets = {name: getattr(b, f"{name}_seconds") for name in STEPS}
    decoded = [parse_work_page(page).items for page in pages]
    with_team = [parse_work_page(page, ("team",)).items for page in pages]

    def ages(keys: tuple[str, ...], items: list) -> Callable[[], object]:
        def run() -> None:
            aggregator = Aggregator(b.heartbeat_age_seconds, b.state_age_seconds, keys, 50)
            for page_items in items:
                aggregator.add_page(page_items, now)

        return run

    ledger = FlowLedger()
    baseline = FlowFold(None, now - 60, 60, flow_buckets)
    for page_items in decoded:
        baseline.add(page_items, now)
    ledger.commit("env_a", baseline)

    def flow() -> None:
        fold = FlowFold(ledger.mark("env_a"), now, 60, flow_buckets)
        for page_items in decoded:
            fold.add(page_items, now)

    rounds = 3 if args.smoke else 15
    cost = medians(
        {
            "decode": lambda: [parse_work_page(page) for page in pages],
            "decode, one key": lambda: [parse_work_page(page, ("team",)) for page in pages],
            "ages": ages((), decoded),
            "ages, one key": ages(("team",), with_team),
            "flow": flow,
        },
        count,
        rounds,
    )
    figures = {
        "decode": cost["decode"],
        "ages and counts": cost["ages"],
        "transitions and flow histograms": cost["flow"],
    }
    figures["all three"] = sum(figures.values())
    extra = cost["decode, one key"] - cost["decode"] + cost["ages, one key"] - cost["ages"]
    figures["one metadata key, on top (decoding and counting)"] = extra
    population = f"{count:,} items of the simulator's static population"
    print(f"\n{population}, CPU, medians of {rounds} alternating rounds\n")
    print("| stage | per item |\n|---|---|")
    for stage, us in figures.items():
        print(f"| {stage} | {us:.2f} us |")


if __name__ == "__main__":
    main()
