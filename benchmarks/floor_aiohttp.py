"""The benchmark's second, lower floor: the exporter's requests made with aiohttp alone.

The same requests as `floor.py` (each environment's pages and its work/stats, one small
connection pool per environment, the same concurrency and page size), with aiohttp's
ClientSession and nothing of httpx, each page decoded only as far as its `next_page`.
It is the limit the exporter is measured against: what it costs only to move the bytes.
Prints {"wall": s, "cpu": s, "items": n} as one JSON line.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import msgspec
from floors import Count, api_headers, main


async def fetch_all(
    url: str, env_id: str, key: str, page_size: int, slots: asyncio.Semaphore, tls: ssl.SSLContext
) -> int:
    headers = api_headers(key)
    decoder = msgspec.json.Decoder(Count)
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


if __name__ == "__main__":
    main(fetch_all, ssl.create_default_context())
