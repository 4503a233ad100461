"""Memory does not grow with the number of items: pages are aggregated and dropped."""

from __future__ import annotations

import json
import tracemalloc

import httpx
from conftest import NOW, work

from exporter.client import RequestCounter, WorkClient
from exporter.config import BucketConfig, parse_config
from exporter.scrape import Scraper

PAGE = 200
TEMPLATE = [work(s, age=30, heartbeat_age=3) for s in ("queued", "active", "starting", "stopped")]
PAGE_DATA = json.dumps([TEMPLATE[i % 4] for i in range(PAGE)]).encode()
PAGE_BYTES = len(PAGE_DATA)


def peak_bytes_listing(total_items: int) -> int:
    config = parse_config(
        f"api: {{page_size: {PAGE}, max_pages: 100000}}\nenvironments: [{{id: env_a}}]\n",
        {"ANTHROPIC_ENVIRONMENT_KEY": "k"},
    )
    pages = total_items // PAGE

    def respond(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "0"))
        cursor = json.dumps(str(n + 1) if n + 1 < pages else None).encode()
        return httpx.Response(200, content=b'{"data":' + PAGE_DATA + b',"next_page":' + cursor + b"}")

    # httpx's MockTransport, not respx: respx keeps every response it served, which would
    # measure the test's memory rather than the exporter's.
    client = WorkClient(config.api, httpx.Client(transport=httpx.MockTransport(respond)), RequestCounter())
    scraper = Scraper(client, BucketConfig(), concurrency=1, wall_clock=lambda: NOW)
    tracemalloc.start()
    try:
        (result,) = scraper.scrape(config.environments, client.clock() + 120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        scraper.close()
    assert result.summary is not None
    assert sum(result.summary.items.values()) == total_items
    return peak


def test_three_times_the_items_grows_the_peak_by_less_than_one_page():
    # Both sizes are past 128 pages: urllib caches the last 128 URLs it split (each cursor
    # makes a new URL), a bounded cost that would otherwise look like growth.
    small = peak_bytes_listing(40_000)
    large = peak_bytes_listing(120_000)
    assert large - small < PAGE_BYTES, (small, large, PAGE_BYTES)
