"""What the two floors share (`floor.py` with httpx, `floor_aiohttp.py` with aiohttp): the page
decoded only as far as its cursor, the exporter's headers, and the run: every environment at
once within the concurrency, timed from the first request, printed as one JSON line
{"wall": s, "cpu": s, "items": n}. Only the standard library and msgspec, so that each floor
imports nothing of the other's client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable

import msgspec

# One environment's pages and its work/stats: (url, env_id, key, page_size, slots, tls) -> items.
FetchAll = Callable[[str, str, str, int, asyncio.Semaphore, ssl.SSLContext], Awaitable[int]]


class Count(msgspec.Struct):
    """A work page read only as far as its cursor: items are kept as raw bytes, never decoded."""

    data: list[msgspec.Raw]
    next_page: str | None = None


def api_headers(key: str) -> dict[str, str]:
    return {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "managed-agents-2026-04-01",
        "Authorization": f"Bearer {key}",
    }


async def _run(
    fetch_all: FetchAll, url: str, keys: dict[str, str], page_size: int, concurrency: int, tls: ssl.SSLContext
) -> int:
    slots = asyncio.Semaphore(concurrency)
    counts = await asyncio.gather(*(fetch_all(url, e, k, page_size, slots, tls) for e, k in keys.items()))
    return sum(counts)


def main(fetch_all: FetchAll, tls: ssl.SSLContext) -> None:
    """`tls` is made by the caller before timing starts, as the exporter makes its own at start."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--keys", required=True, help="JSON object: environment id -> key")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    wall0, cpu0 = time.monotonic(), time.process_time()
    items = asyncio.run(
        _run(fetch_all, args.url, json.loads(args.keys), args.page_size, args.concurrency, tls)
    )
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu, "items": items}))
