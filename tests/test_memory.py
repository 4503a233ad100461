"""Memory does not grow with the number of items: pages are aggregated and dropped."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

import httpx
import pytest
from conftest import run_virtual, work
from engine_kit import config_for, running_engine

PAGE = 200
TEMPLATE = [work(s, age=30, heartbeat_age=3) for s in ("queued", "active", "starting", "stopped")]
PAGE_DATA = json.dumps([TEMPLATE[i % 4] for i in range(PAGE)]).encode()
PAGE_BYTES = len(PAGE_DATA)


def peak_bytes_listing(total_items: int) -> int:
    config = config_for("env_a", yaml=f"api: {{page_size: {PAGE}, max_pages: 100000}}\n")
    pages = total_items // PAGE

    async def respond(request: httpx.Request) -> httpx.Response:
        # A network read always gives the event loop a turn; without one the loop would never
        # get to clean up its cancelled timers, which is not what happens for real.
        await asyncio.sleep(0)
        n = int(request.url.params.get("page", "0"))
        cursor = json.dumps(str(n + 1) if n + 1 < pages else None).encode()
        body = b'{"data":' + PAGE_DATA + b',"next_page":' + cursor + b"}"
        return httpx.Response(200, stream=httpx.ByteStream(body))

    async def go():
        # httpx's MockTransport, not respx: respx keeps every response it served, which would
        # measure the test's memory rather than the exporter's.
        async with running_engine(config, transport=httpx.MockTransport(respond)) as engine:
            tracemalloc.start()
            try:
                (result,) = await engine.scrape(config.environments, asyncio.get_running_loop().time() + 600)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return result, peak

    result, peak = run_virtual(go())
    assert result.success
    assert sum(result.values["work"].items.values()) == total_items
    return peak


@pytest.mark.slow
def test_three_times_the_items_grows_the_peak_by_less_than_one_page():
    # Both sizes are past 128 pages: urllib caches the last 128 URLs it split (each cursor
    # makes a new URL), a bounded cost that would otherwise look like growth.
    small = peak_bytes_listing(40_000)
    large = peak_bytes_listing(120_000)
    assert large - small < PAGE_BYTES, (small, large, PAGE_BYTES)
