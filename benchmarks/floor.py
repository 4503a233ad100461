"""The benchmark's floor: the exporter's requests, made with plain httpx, and nothing more.

The same requests as the exporter makes (each environment's pages and its work/stats)
the way the exporter makes them (asyncio, one small connection pool per environment,
the same concurrency, the same page size), with the least work a client can do: each
page is decoded only as far as its `next_page` (msgspec skips the rest). Prints
{"wall": s, "cpu": s, "items": n} as one JSON line; the CPU figure covers the fetch
alone, not interpreter start-up. What the exporter spends beyond this is its own work:
reading every item, ages, transitions, metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time

import httpx
import msgspec


class _Count(msgspec.Struct):
    data: list[msgspec.Raw]
    next_page: str | None = None


async def fetch_all(
    url: str, env_id: str, key: str, page_size: int, slots: asyncio.Semaphore, tls: ssl.SSLContext
) -> int:
    headers = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "managed-agents-2026-04-01",
        "Authorization": f"Bearer {key}",
    }
    decoder = msgspec.json.Decoder(_Count)
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with slots, httpx.AsyncClient(limits=limits, timeout=600, verify=tls) as client:

        async def pages() -> int:
            cursor, items = None, 0
            while True:
                params: dict[str, str | int] = {"limit": page_size, **({"page": cursor} if cursor else {})}
                response = await client.get(
                    f"{url}/v1/environments/{env_id}/work", params=params, headers=headers
                )
                page = decoder.decode(response.content)
                items += len(page.data)
                cursor = page.next_page
                if not cursor:
                    return items

        async def stats() -> None:
            (
                await client.get(f"{url}/v1/environments/{env_id}/work/stats", headers=headers)
            ).raise_for_status()

        items, _ = await asyncio.gather(pages(), stats())
        return items


async def run(url: str, keys: dict[str, str], page_size: int, concurrency: int, tls: ssl.SSLContext) -> int:
    slots = asyncio.Semaphore(concurrency)
    counts = await asyncio.gather(*(fetch_all(url, e, k, page_size, slots, tls) for e, k in keys.items()))
    return sum(counts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--keys", required=True, help="JSON object: environment id -> key")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    tls = httpx.create_ssl_context()  # once, before timing: the exporter makes its own at start
    wall0, cpu0 = time.monotonic(), time.process_time()
    items = asyncio.run(run(args.url, json.loads(args.keys), args.page_size, args.concurrency, tls))
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu, "items": items}))


if __name__ == "__main__":
    main()
