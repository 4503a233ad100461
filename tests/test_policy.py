"""Refresh policies: on demand with a minimum interval, and background refresh on a timer.

On a virtual-time loop: the loop's clock is the wall clock too (offset to NOW), so
"how old" and "when" are exact.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from conftest import NOW, page, run_virtual, work
from engine_kit import API, config_for, running_engine, work_source
from prometheus_client import CollectorRegistry

from exporter.collectors.scrape import ScrapeCollector
from exporter.failures import FailureLog
from exporter.flow import FlowLedger
from exporter.isolation import Boundary
from exporter.policy import BackgroundPolicy, OnDemandPolicy, RefreshSchedule, ResultStore
from exporter.redact import Redactor


def background(engine, store: ResultStore, config, interval: float = 60.0, timeout: float = 60.0):
    """A started BackgroundPolicy over `config`'s environments, as the wiring builds it."""
    failures = FailureLog(clock=lambda: asyncio.get_running_loop().time())
    policy = BackgroundPolicy(
        engine,
        store,
        lambda: config.environments,
        interval,
        timeout=timeout,
        schedule=RefreshSchedule(),
        failures=failures,
        boundary=Boundary(failures, Redactor()),
        wall_clock=wall,
    )
    policy.start()
    return policy


def wall() -> float:
    """The wall clock, moving with the virtual loop: NOW when the loop starts."""
    return NOW + asyncio.get_running_loop().time() - 1000.0


def listing_of(count: int) -> httpx.Response:
    return httpx.Response(200, json=page([work("queued") for _ in range(count)]))


@pytest.mark.parametrize(("later", "listings"), [(10.0, 1), (29.9, 1), (30.0, 2), (45.0, 2)])
@respx.mock
def test_on_demand_serves_a_listing_younger_than_the_minimum_interval_again(later, listings):
    route = respx.get(f"{API}/env_a/work").mock(return_value=listing_of(3))
    config = config_for("env_a")
    store = ResultStore()

    async def go():
        async with running_engine(config, wall_clock=wall, on_result=store.put) as engine:
            policy = OnDemandPolicy(engine, store, min_interval=30.0, wall_clock=wall)
            loop = asyncio.get_running_loop()
            first = await policy.results(config.environments, loop.time() + 10)
            await asyncio.sleep(later)  # virtual: the next scrape, `later` seconds on
            second = await policy.results(config.environments, loop.time() + 10)
            return first, second

    (first,), (second,) = run_virtual(go())
    assert route.call_count == listings
    assert first.success and second.success
    assert (second is first) == (listings == 1)
    assert second.values["work"].items["queued"] == 3


@respx.mock
def test_background_lists_each_environment_on_its_own_schedule_and_scrapes_read_results():
    ids = ["env_a", "env_b", "env_c"]
    started: dict[str, list[float]] = {e: [] for e in ids}

    def listed(env_id: str):
        def respond(request: httpx.Request) -> httpx.Response:
            started[env_id].append(round(asyncio.get_running_loop().time() - 1000.0, 6))
            return listing_of(2)

        return respond

    for env_id in ids:
        respx.get(f"{API}/{env_id}/work").mock(side_effect=listed(env_id))
    config = config_for(*ids)
    store = ResultStore()

    async def go():
        async with running_engine(config, wall_clock=wall, on_result=store.put) as engine:
            policy = background(engine, store, config)
            loop = asyncio.get_running_loop()
            before = await policy.results(config.environments, loop.time() + 10)
            await asyncio.sleep(150)  # virtual: two and a half intervals
            after = await policy.results(config.environments, loop.time() + 10)
            offsets = {e: round(policy.offset(e), 6) for e in ids}
            await policy.aclose()
            return before, after, offsets

    before, after, offsets = run_virtual(go())
    assert [r.pending for r in before] == [True] * 3
    for env_id in ids:  # every 60 s from its own offset, no sooner
        first = offsets[env_id]
        assert started[env_id] == [round(t, 6) for t in (first, first + 60, first + 120) if t <= 150]
    assert len(set(offsets.values())) == 3  # spread, not all at once
    assert [r.success for r in after] == [True, True, True]
    assert [r.values["work"].items["queued"] for r in after] == [2, 2, 2]


@respx.mock
def test_a_failed_background_refresh_is_reported_and_the_last_success_still_dated():
    answers = iter([listing_of(1), httpx.Response(503), httpx.Response(503), httpx.Response(503)])
    respx.get(f"{API}/env_a/work").mock(side_effect=lambda request: next(answers))
    config = config_for("env_a", yaml="api: {max_retries: 0}\n")
    store = ResultStore()

    async def go():
        async with running_engine(config, wall_clock=wall, on_result=store.put) as engine:
            policy = background(engine, store, config)
            loop = asyncio.get_running_loop()
            offset = policy.offset("env_a")
            await asyncio.sleep(offset + 1)  # the first refresh, which succeeds
            good = await policy.results(config.environments, loop.time() + 10)
            await asyncio.sleep(60)  # the second, which fails
            bad = await policy.results(config.environments, loop.time() + 10)
            await policy.aclose()
            return offset, good, bad

    offset, (good,), (bad,) = run_virtual(go())
    assert good.success and not bad.success
    assert bad.failures["work"].reason == "http_503"
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ScrapeCollector([bad], store.last_success))
    labels = {"environment_id": "env_a"}
    assert registry.get_sample_value("anthropic_work_scrape_success", labels) == 0
    assert (
        registry.get_sample_value("anthropic_work_last_success_timestamp_seconds", labels) == good.finished_at
    )
    assert good.finished_at == NOW + offset


@respx.mock
def test_transitions_stay_exactly_once_in_background_mode():
    answers = iter(
        [
            httpx.Response(200, json=page([work("queued", id="w1")])),
            httpx.Response(
                200, json=page([work("starting", id="w1", acknowledged_at="2026-11-22T12:30:00Z")])
            ),
        ]
        + [
            httpx.Response(
                200, json=page([work("starting", id="w1", acknowledged_at="2026-11-22T12:30:00Z")])
            )
        ]
        * 5
    )
    respx.get(f"{API}/env_a/work").mock(side_effect=lambda request: next(answers))
    config = config_for("env_a")
    store, ledger = ResultStore(), FlowLedger()

    async def go():
        async with running_engine(
            config, [work_source(config, wall, ledger)], wall_clock=wall, on_result=store.put
        ) as engine:
            policy = background(engine, store, config)
            await asyncio.sleep(5 * 60)  # five refreshes; scrapes in between change nothing
            await policy.aclose()

    run_virtual(go())
    totals = ledger.totals("env_a")
    assert totals is not None and totals.transitions["acknowledged"] == 1
