"""The benchmark's second, lower floor: the exporter's requests made with aiohttp alone.

The same requests as `floor.py` (each environment's pages and its work/stats, one small
connection pool per environment, the same concurrency and page size), with aiohttp's
ClientSession and nothing of httpx, each page decoded only as far as its `next_page`.
It is the limit the exporter is measured against: what it costs only to move the bytes.
Prints {"wall": s, "cpu": s, "items": n} as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time

import aiohttp
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
    connector = aiohttp.TCPConnector(limit=2, ssl=tls)
    async with slots, aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def pages() -> int:
            cursor, items = None, 0
            while True:
                params: dict[str, str | int] = {"limit": page_size, **({"page": cursor} if cursor else {})}
                async with session.get(
                    f"{url}/v1/environments/{env_id}/work", params=params, headers=headers
                ) as r:
                    page = decoder.decode(await r.read())
                items += len(page.data)
                cursor = page.next_page
                if not cursor:
                    return items

        async def stats() -> None:
            async with session.get(f"{url}/v1/environments/{env_id}/work/stats", headers=headers) as r:
                r.raise_for_status()
                await r.read()

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
    tls = ssl.create_default_context()  # once, before timing, as floor.py does
    wall0, cpu0 = time.monotonic(), time.process_time()
    items = asyncio.run(run(args.url, json.loads(args.keys), args.page_size, args.concurrency, tls))
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu, "items": items}))


if __name__ == "__main__":
    main()
