"""The benchmark's floor: fetch the same pages as the exporter with plain httpx, nothing more.

Same connection pool, same concurrency, same page size; the only work per page
is decoding the JSON to read `next_page`. Prints {"wall": s, "cpu": s, "items": n}
as one JSON line. The CPU figure covers the fetch alone, not interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def fetch_all(client: httpx.Client, url: str, env_id: str, key: str, page_size: int) -> int:
    headers = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "managed-agents-2026-04-01",
        "Authorization": f"Bearer {key}",
    }
    cursor, items = None, 0
    while True:
        params = {"limit": page_size, **({"page": cursor} if cursor else {})}
        with client.stream(
            "GET", f"{url}/v1/environments/{env_id}/work", params=params, headers=headers
        ) as response:
            doc = json.loads(b"".join(response.iter_bytes()))
        items += len(doc["data"])
        cursor = doc["next_page"]
        if not cursor:
            return items


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--keys", required=True, help="JSON object: environment id -> key")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    keys = json.loads(args.keys)
    client = httpx.Client(
        limits=httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency),
        timeout=60,
    )
    with ThreadPoolExecutor(args.concurrency) as pool:
        wall0, cpu0 = time.monotonic(), time.process_time()
        counts = list(
            pool.map(lambda kv: fetch_all(client, args.url, kv[0], kv[1], args.page_size), keys.items())
        )
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu, "items": sum(counts)}))


if __name__ == "__main__":
    main()
