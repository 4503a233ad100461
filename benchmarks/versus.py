"""Two installs of the exporter, alternating in one run, on bench.py's plain case.

    python benchmarks/versus.py OTHER/bin/python            # 5 rounds
    python benchmarks/versus.py OTHER/bin/python --rounds 9

Each round runs the benchmark's plain case (20 environments of 5,000 items, page size 100,
concurrency 20, the paused simulator) once with OTHER's exporter and once with this tree's
`pip install .` venv, in an order that alternates from round to round, each beside its own
floors (httpx and aiohttp reading only cursors, measured in the same moment). It prints,
for each install, the median and the range of: the exporter's CPU per item, its wall time,
and both against the floors. Compare an older version by installing it in a venv of its own
(`pip install .` of that tree).
"""

from __future__ import annotations

import argparse
import statistics

from bench import compare, machine
from harness import users_python, versions

FIGURES = (
    ("exporter CPU per item (µs)", "exporter_cpu_us_per_item", "{:.2f}"),
    ("exporter wall (s)", "exporter_wall", "{:.3f}"),
    ("wall / httpx floor's", "wall_ratio", "{:.3f}"),
    ("CPU / aiohttp floor's", "cpu_vs_aiohttp", "{:.2f}"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", help="the other install's Python (its exporter is compared with this tree's)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: checks the harness, not speed")
    args = p.parse_args()
    envs, items, rounds = (3, 300, 2) if args.smoke else (20, 5_000, args.rounds)
    python = users_python()
    print(f"machine: {machine()}")
    print(f"this tree (pip install .): {versions(python)}")
    print(f"other ({args.other}): {versions(args.other)}")
    runs: dict[str, list[dict]] = {"other": [], "this": []}
    for round_ in range(rounds):
        order = ["other", "this"] if round_ % 2 == 0 else ["this", "other"]
        for who in order:
            result = compare(
                envs, items, 100, envs, 1, python, exporter_python=args.other if who == "other" else None
            )
            result["cpu_vs_aiohttp"] = result["exporter_cpu"] / result["aiohttp_floor_cpu"]
            runs[who].append(result)
            print(
                f"round {round_ + 1} {who}: "
                + ", ".join(f"{name} {fmt.format(result[key])}" for name, key, fmt in FIGURES),
                flush=True,
            )
    print(f"\nmedians (range) of {rounds} rounds")
    for name, key, fmt in FIGURES:
        cells = []
        for who in ("other", "this"):
            values = [r[key] for r in runs[who]]
            cells.append(
                f"{who} {fmt.format(statistics.median(values))} "
                f"({fmt.format(min(values))}-{fmt.format(max(values))})"
            )
        print(f"{name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
