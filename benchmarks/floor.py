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

import asyncio
import ssl

import httpx
import msgspec
from floors import Count, api_headers, main


async def fetch_all(
    url: str, env_id: str, key: str, page_size: int, slots: asyncio.Semaphore, tls: ssl.SSLContext
) -> int:
    headers = api_headers(key)
    decoder = msgspec.json.Decoder(Count)
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


if __name__ == "__main__":
    main(fetch_all, httpx.create_ssl_context())
