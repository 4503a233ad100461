"""Soak: minutes of mixed traffic against the exporter, watching for anything that grows.

    python benchmarks/soak.py --minutes 10 --rate 10
    python benchmarks/soak.py --minutes 1 --rate 5 --markdown    # a table for the README

Two processes, as users run them: the simulator with the demo's three lively
environments (one rate-limited now and then, one whose workers die) plus one that
never answers in time, and the exporter's CLI watching all four. Traffic, at
`--rate` requests per second: /metrics and /probe scrapes with Prometheus's
timeout header, HEAD requests, 404s, and connections that send half a request
and hang up; plus a SIGHUP reload every minute. Every 30 s it prints the
exporter's RSS, threads and open file descriptors, and at the end whether any of
them grew after the first minute (the warm-up: connection pools, caches, first
allocations).

Not a test: it takes minutes and its numbers belong to this machine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from harness import exporter, simulator, status

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 30
WARMUP_SECONDS = 60
# Client threads: a scrape that waits for the never-answering environment takes its whole
# deadline, so requests come from many clients at once, as from several Prometheus servers.
CLIENTS = 16


def proc_status(pid: int) -> dict[str, float]:
    fields = status(pid)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def half_request(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n")


def traffic(url: str, env_ids: list[str], rate: float, stop: threading.Event, tally: Counter) -> None:
    rng = random.Random(1)
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "2"}
    with httpx.Client(timeout=15) as client:
        while not stop.is_set():
            started = time.monotonic()
            kind = rng.choices(["metrics", "probe", "head", "404", "half"], weights=[10, 6, 1, 1, 2])[0]
            try:
                if kind == "metrics":
                    status = client.get(f"{url}/metrics", headers=headers).status_code
                elif kind == "probe":
                    params = {"environment_id": rng.choice(env_ids)}
                    status = client.get(f"{url}/probe", params=params, headers=headers).status_code
                elif kind == "head":
                    status = client.head(f"{url}/metrics").status_code
                elif kind == "404":
                    status = client.get(f"{url}/nowhere").status_code
                else:
                    half_request(url)
                    status = 0
                tally[f"{kind} {status}"] += 1
            except httpx.HTTPError as exc:
                tally[f"{kind} {type(exc).__name__}"] += 1
            stop.wait(max(0.0, 1 / rate - (time.monotonic() - started)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--rate", type=float, default=10, help="requests per second, over 16 client threads")
    p.add_argument("--markdown", action="store_true", help="also print the samples as a Markdown table")
    args = p.parse_args()

    with simulator() as sim, exporter(sim) as (url, proc):
        # One environment never answers in time: its listings are abandoned at every deadline.
        stuck = list(sim["environments"])[1]  # the idle one: its small pages trickle for longer than a scrape
        httpx.post(
            f"{sim['url']}/_sim/faults",
            params={"environment_id": stuck},
            json={"trickle_bytes_per_second": 200},
        ).raise_for_status()
        stop, tally = threading.Event(), Counter[str]()
        threads = [
            threading.Thread(
                target=traffic,
                args=(url, list(sim["environments"]), args.rate / CLIENTS, stop, tally),
                daemon=True,
            )
            for _ in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        samples: list[tuple[float, dict[str, float]]] = []
        started = time.monotonic()
        end = started + args.minutes * 60
        next_reload = started + 60
        print(f"{'t (s)':>6} {'RSS (MB)':>9} {'threads':>8} {'fds':>5} {'requests':>9}", flush=True)
        try:
            while True:
                now = time.monotonic()
                if now >= next_reload:
                    proc.send_signal(signal.SIGHUP)
                    next_reload += 60
                if not samples or now - started >= len(samples) * SAMPLE_SECONDS:
                    sample = proc_status(proc.pid)
                    samples.append((now - started, sample))
                    rss, count, fds = sample["rss_mb"], sample["threads"], sample["fds"]
                    elapsed, total = now - started, sum(tally.values())
                    print(f"{elapsed:6.0f} {rss:9.1f} {count:8.0f} {fds:5.0f} {total:9d}", flush=True)
                if now >= end:
                    break
                time.sleep(1)  # a sampling loop, not a test
        finally:
            stop.set()
            for t in threads:
                t.join()
    report(samples, tally, args.markdown)


def report(samples: list[tuple[float, dict[str, float]]], tally: Counter, markdown: bool) -> None:
    after_warmup = [s for t, s in samples if t >= WARMUP_SECONDS]
    print("\nrequests:", ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())))
    failures = sum(
        v for k, v in tally.items() if not k.endswith((" 200", " 404", " 0")) and not k.startswith("head 200")
    )
    print(f"requests without the expected answer: {failures}")
    if len(after_warmup) >= 4:
        # A leak keeps growing; allocator arenas and caches fill up and stop. So the verdict
        # compares the end with the most the first half (after warm-up) ever reached.
        first_half = after_warmup[: len(after_warmup) // 2]
        last = after_warmup[-1]
        for key, unit, slack in (("rss_mb", "MB", 1.0), ("threads", "", 0), ("fds", "", 2)):
            early = max(s[key] for s in first_half)
            grew = last[key] > early + slack
            verdict = "GROWS" if grew else "flat"
            print(f"{key}: first half after warm-up <= {early:g} {unit}, at the end {last[key]:g}:", verdict)
    if markdown:
        print("\n| minute | RSS (MB) | threads | open fds |\n|---|---|---|---|")
        for t, s in samples:
            if t % 60 < SAMPLE_SECONDS:
                print(f"| {t / 60:.0f} | {s['rss_mb']:.1f} | {s['threads']:.0f} | {s['fds']:.0f} |")


if __name__ == "__main__":
    main()
