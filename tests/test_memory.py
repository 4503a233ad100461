"""Memory does not grow with the number of items: pages are aggregated and dropped."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc

import httpx
import pytest
from conftest import NOW, rfc3339, run_virtual, work
from engine_kit import config_for, running_engine, work_source

from exporter.folds.flow import FlowLedger

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


FUTURE_PAGE = 1000


def listing_memory(
    listings: list[tuple[float, float | None, int]], items: int
) -> tuple[list[int], list[int]]:
    """List env_a once per (created offset, stopped stamp, id batch) with `items` items each, through
    the engine, the flow ledger kept across listings: the peak and the current traced memory after each."""
    config = config_for("env_a", yaml=f"api: {{page_size: {FUTURE_PAGE}, max_pages: 100000}}\n")
    pages = items // FUTURE_PAGE
    ledger = FlowLedger()
    current: dict[str, object] = {}

    def page_body(n: int) -> bytes:
        created, stopped, batch = current["listing"]  # type: ignore[misc]
        state = "queued" if stopped is None else "stopped"
        stamps = f'"created_at":"{rfc3339(created)}","stopped_at":' + (
            "null" if stopped is None else f'"{rfc3339(stopped)}"'
        )
        items_json = ",".join(
            f'{{"id":"work_{batch}_{n}_{i}","state":"{state}",{stamps}}}' for i in range(FUTURE_PAGE)
        )
        cursor = json.dumps(str(n + 1) if n + 1 < pages else None)
        return f'{{"data":[{items_json}],"next_page":{cursor}}}'.encode()

    async def respond(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(
            200, stream=httpx.ByteStream(page_body(int(request.url.params.get("page", "0"))))
        )

    async def go():
        peaks, after = [], []
        async with running_engine(
            config, [work_source(config, lambda: NOW, ledger)], transport=httpx.MockTransport(respond)
        ) as engine:
            tracemalloc.start()
            try:
                for listing in listings:
                    current["listing"] = listing
                    tracemalloc.reset_peak()
                    (result,) = await engine.scrape(
                        config.environments, asyncio.get_running_loop().time() + 600
                    )
                    assert result.success
                    peaks.append(tracemalloc.get_traced_memory()[1])
                    del result
                    gc.collect()
                    after.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()
        return peaks, after

    return run_virtual(go())


@pytest.mark.slow
def test_items_stamped_a_day_ahead_cost_no_more_memory_than_the_same_items_in_the_past():
    """150,000 items, listed twice: stamped a day ahead, the flow ledger remembers none of them (they are
    implausible), so the peak stays within 25 MB of the same items stamped a day ago."""
    past, _ = listing_memory([(NOW - 86400, None, 0), (NOW - 86400, None, 0)], 150_000)
    future, _ = listing_memory([(NOW + 86400, None, 0), (NOW + 86400, None, 0)], 150_000)
    assert max(future) - max(past) < 25 * 2**20, (past, future)


@pytest.mark.slow
def test_listings_with_new_ids_and_never_stops_do_not_grow_memory():
    """Five listings of 50,000 new items each, stopped at 9999-12-31 (a "never" sentinel)."""
    listings = [(NOW - 30, 253402300799.0, batch) for batch in range(5)]
    _, after = listing_memory(listings, 50_000)
    assert after[-1] - after[1] < 2**20, after  # what is kept between listings does not grow
