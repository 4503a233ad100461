"""The HTTP path, chosen by measurement: client CPU per page for each way of GETting the pages.

    python benchmarks/transports.py            # 20 environments x 50 pages, medians of 5
    python benchmarks/transports.py --smoke    # tiny: checks the script, not speed

Side by side in one run, against the paused simulator, each way reading every page's
raw body whole (the exporter inflates and decodes it itself, the same for all):

- httpx's client with its own transport (httpcore), a request built per page: what the
  exporter did;
- httpx's client over an aiohttp transport (`exporter.transport.AiohttpTransport`);
- httpx's own transport, the request handed to it straight (no client layer);
- the aiohttp transport, the request handed to it straight;
- the exporter's own client (`exporter.client.UpstreamClient`) over the aiohttp transport:
  the request straight, its query string made by `urlencode`, the body read whole and
  bounded, within one time bound: what the exporter does;
- aiohttp alone: the limit.

It runs from a `pip install .` virtual environment, as the benchmark does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import msgspec

WAYS = (
    "httpx client, httpcore transport (before)",
    "httpx client, aiohttp transport",
    "httpcore transport, request straight",
    "aiohttp transport, request straight",
    "the exporter's client: the same, the body read bounded (now)",
    "aiohttp alone (the limit)",
)
HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}


class _Cursor(msgspec.Struct):
    next_page: str | None = None


_CURSOR = msgspec.json.Decoder(_Cursor)


def cursor_of(body: bytes) -> str | None:
    return _CURSOR.decode(body).next_page


async def pages_of(way: str, url: str, env_id: str, key: str, page_size: int, tls: ssl.SSLContext) -> int:
    import aiohttp

    from exporter.api.client import UpstreamClient
    from exporter.api.transport import AiohttpTransport

    headers = {**HEADERS, "Authorization": f"Bearer {key}", "Accept-Encoding": "gzip"}
    path = f"{url}/v1/environments/{env_id}/work"
    cursor, pages = None, 0

    async def body_of(response: httpx.Response) -> bytes:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        return body

    if way in WAYS[:2]:
        transport = AiohttpTransport(tls) if "aiohttp" in way else httpx.AsyncHTTPTransport(verify=tls)
        async with httpx.AsyncClient(transport=transport) as client:
            while True:
                params: dict[str, str | int] = {"limit": page_size, **({"page": cursor} if cursor else {})}
                response = await client.send(
                    client.build_request("GET", path, params=params, headers=headers), stream=True
                )
                pages += 1
                if not (cursor := cursor_of(await body_of(response))):
                    return pages
    if way in WAYS[2:4]:
        straight = AiohttpTransport(tls) if "aiohttp" in way else httpx.AsyncHTTPTransport(verify=tls)
        try:
            while True:
                params = {"limit": page_size, **({"page": cursor} if cursor else {})}
                response = await straight.handle_async_request(
                    httpx.Request("GET", path, params=params, headers=headers)
                )
                pages += 1
                if not (cursor := cursor_of(await body_of(response))):
                    return pages
        finally:
            await straight.aclose()
    if way == WAYS[4]:
        ours = UpstreamClient(lambda: AiohttpTransport(tls), max_body_bytes=1 << 30)
        del headers["Accept-Encoding"]  # the client asks for gzip itself
        try:
            while True:
                params = {"limit": page_size, **({"page": cursor} if cursor else {})}
                reply = await ours.get(path, params, headers, timeout=60, pool=env_id)
                pages += 1
                if not (cursor := cursor_of(reply.body)):
                    return pages
        finally:
            await ours.aclose()
    connector = aiohttp.TCPConnector(limit=2, ssl=tls)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        while True:
            params = {"limit": page_size, **({"page": cursor} if cursor else {})}
            async with session.get(path, params=params, headers=headers) as r:
                body = await r.read()
            pages += 1
            if not (cursor := cursor_of(body)):
                return pages


async def one_run(way: str, url: str, keys: dict[str, str], page_size: int, tls: ssl.SSLContext) -> int:
    slots = asyncio.Semaphore(len(keys))

    async def one(env_id: str, key: str) -> int:
        async with slots:
            return await pages_of(way, url, env_id, key, page_size, tls)

    return sum(await asyncio.gather(*(one(e, k) for e, k in keys.items())))


def measure(url: str, keys: dict[str, str], page_size: int, repeat: int) -> None:
    tls = httpx.create_ssl_context()
    figures: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    pages = 0
    for way in WAYS:  # connections, code paths and the simulator's cache warmed
        asyncio.run(one_run(way, url, keys, page_size, tls))
    for _ in range(repeat):
        for way in WAYS:
            cpu0, wall0 = time.process_time(), time.monotonic()
            pages = asyncio.run(one_run(way, url, keys, page_size, tls))
            figures[way].append(((time.process_time() - cpu0) / pages * 1e3, time.monotonic() - wall0))
    before = statistics.median(c for c, _ in figures[WAYS[0]])
    runs = f"medians of {repeat} alternating runs"
    print(f"\n{len(keys)} environments, {pages} pages of {page_size} items, {runs}\n")
    print("| way | client CPU per page | against before | wall |\n|---|---|---|---|")
    for way in WAYS:
        cpu = statistics.median(c for c, _ in figures[way])
        wall = statistics.median(w for _, w in figures[way])
        print(f"| {way} | {cpu:.3f} ms | {cpu / before:.2f}x | {wall:.2f} s |")


def request_costs(repeat: int) -> None:
    """Microseconds to build one page's `httpx.Request`, per way of building its parts."""
    import timeit
    from urllib.parse import urlencode

    url = "https://api.anthropic.com/v1/environments/env_011CUjLzqP4N7Yy2QBXxcvTs/work"
    headers = {**HEADERS, "Authorization": "Bearer " + "k" * 100, "User-Agent": "anthropic-work-exporter"}
    params: dict[str, str | int] = {"limit": 100, "page": "page_MjAyNi0xMS0zMFQxMjowMDowMFo6d29ya18wMTIz"}
    timeouts = {"timeout": {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}}
    base, built = httpx.URL(url), httpx.Headers({**headers, "Accept-Encoding": "gzip"})
    ways: dict[str, Callable[[], object]] = {
        "params= and a headers dict, per page (before)": lambda: httpx.Request(
            "GET", url, params=params, headers={**headers, "Accept-Encoding": "gzip"}, extensions=timeouts
        ),
        "query string by urlencode, headers dict, per page (now)": lambda: httpx.Request(
            "GET",
            f"{url}?{urlencode(params)}",
            headers={**headers, "Accept-Encoding": "gzip"},
            extensions=timeouts,
        ),
        "the same, httpx.Headers built once an environment": lambda: httpx.Request(
            "GET", f"{url}?{urlencode(params)}", headers=built, extensions=timeouts
        ),
        "httpx.URL and Headers built once an environment, query by copy_with": lambda: httpx.Request(
            "GET", base.copy_with(query=urlencode(params).encode()), headers=built, extensions=timeouts
        ),
    }
    number, rounds = (200, 3) if repeat < 3 else (2_000, 15)
    runs: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):  # alternating, so a busy moment of the machine falls on every way alike
        for way, build in ways.items():
            runs[way].append(timeit.timeit(build, number=number) / number * 1e6)
    print(f"\n| building one page's request (median of {rounds} alternating rounds) | CPU |\n|---|---|")
    for way in ways:
        print(f"| {way} | {statistics.median(runs[way]):.1f} us |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # in the users' venv
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from harness import simulator, users_python, versions

    envs, items, repeat = (3, 300, 2) if args.smoke else (20, 5_000, args.repeat)
    if not args.inside:
        python = users_python()
        print(f"installed as users install it (pip install .): {versions(python)}")
        command = [
            python,
            __file__,
            "--inside",
            "--repeat",
            str(repeat),
            *(["--smoke"] if args.smoke else []),
        ]
        sys.exit(subprocess.run(command, check=False).returncode)
    with simulator("--static", *[str(items)] * envs, pause=True) as sim:
        measure(sim["url"], sim["environments"], 100, repeat)
    request_costs(repeat)


if __name__ == "__main__":
    main()
