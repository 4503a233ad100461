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

from exporter.config.shard import Shard
from exporter.folds.flow import FlowLedger
from exporter.metrics.scrape import ScrapeCollector
from exporter.redact import Redactor
from exporter.running.failures import FailureLog
from exporter.running.isolation import Boundary
from exporter.running.policies import BackgroundPolicy, OnDemandPolicy, RefreshSchedule
from exporter.running.reload import Reloader, ReloadState
from exporter.running.store import ResultStore
from exporter.web.server import TlsContext
from exporter.wiring import Lasting, build


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
                200, json=page([work("starting", id="w1", acknowledged_at="2026-11-22T12:00:30Z")])
            ),
        ]
        + [
            httpx.Response(
                200, json=page([work("starting", id="w1", acknowledged_at="2026-11-22T12:00:30Z")])
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


class SlowSource:
    """Lists in `seconds` of (virtual) time, then answers; `None` seconds: never, after `answered` lists."""

    name = "work"

    def __init__(self, seconds: float | None, answered: int = 0):
        self.seconds = seconds
        self.answered = answered
        self.started: list[float] = []
        self.running = 0
        self.overlapped = False

    def credentials(self, env):
        return env.credentials

    async def collect(self, env, fetch, attention=0):
        loop = asyncio.get_running_loop()
        self.started.append(loop.time() - 1000.0)
        self.overlapped |= self.running > 0
        self.running += 1
        try:
            if self.seconds is None and len(self.started) > self.answered:
                await asyncio.Event().wait()  # hangs until cancelled
            await asyncio.sleep(self.seconds or 0)
            return "listed"
        finally:
            self.running -= 1


def scrape_success(result) -> float | None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ScrapeCollector([result]))
    return registry.get_sample_value("anthropic_work_scrape_success", {"environment_id": "env_a"})


def sample_every(policy, config, seconds: float, every: float = 0.5):
    """scrape_success of env_a every `every` seconds for `seconds` (virtual), as a scrape sees it."""

    async def go():
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(int(seconds / every)):
            (result,) = await policy.results(config.environments, loop.time() + 10)
            seen.append(scrape_success(result))
            await asyncio.sleep(every)
        return seen

    return go()


def test_a_listing_longer_than_the_interval_never_flaps_and_is_never_listed_twice_at_once():
    config = config_for("env_a")
    source = SlowSource(25.0)  # every listing takes two and a half intervals
    store = ResultStore()

    async def go():
        async with running_engine(config, [source], wall_clock=wall, on_result=store.put) as engine:
            policy = background(engine, store, config, interval=10.0, timeout=60.0)
            offset = policy.offset("env_a")
            seen = await sample_every(policy, config, 200)
            await policy.aclose()
            return offset, seen

    offset, seen = run_virtual(go())
    first_end = int((offset + 25) / 0.5) + 1
    assert seen[: first_end - 1] == [None] * (first_end - 1)  # pending: absent, not a failure
    assert set(seen[first_end:]) == {1.0}  # from the first end on, never 0: no flapping
    assert not source.overlapped  # a turn during a listing started nothing
    starts = [round(t - offset, 6) for t in source.started]
    assert starts[:4] == [0.0, 30.0, 60.0, 90.0]  # the first turn after each listing ended


def test_a_result_older_than_twice_the_interval_is_stale_never_success(log_stream):
    config = config_for("env_a")
    source = SlowSource(None, answered=1)  # the first listing answers, every later one hangs
    store = ResultStore()

    async def go():
        async with running_engine(config, [source], wall_clock=wall, on_result=store.put) as engine:
            policy = background(engine, store, config, interval=10.0, timeout=300.0)
            offset = policy.offset("env_a")
            seen = await sample_every(policy, config, 60, every=1.0)
            await policy.aclose()
            return offset, seen

    offset, seen = run_virtual(go())
    ended = int(offset) + 1  # the first listing ends at once, at its turn
    assert seen[ended : ended + 20] == [1.0] * 20  # fresh for twice the interval
    assert set(seen[ended + 21 :]) == {0.0}  # then stale, while the second listing hangs
    stale = [line for line in log_stream.getvalue().splitlines() if "reason=stale" in line]
    assert len(stale) == 1 and "background refresh is not keeping up" in stale[0]


def test_the_scheduler_is_restarted_when_it_fails_and_refreshing_goes_on(log_stream):
    config = config_for("env_a")
    source = SlowSource(0.0)
    store = ResultStore()
    calls = []

    def environments():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the watched set could not be read")
        return config.environments

    async def go():
        async with running_engine(config, [source], wall_clock=wall, on_result=store.put) as engine:
            failures = FailureLog(clock=lambda: asyncio.get_running_loop().time())
            schedule = RefreshSchedule()
            policy = BackgroundPolicy(
                engine,
                store,
                environments,
                10.0,
                timeout=10.0,
                schedule=schedule,
                failures=failures,
                boundary=Boundary(failures, Redactor()),
                wall_clock=wall,
            )
            policy.start()
            await asyncio.sleep(100)
            (result,) = await policy.results(config.environments, asyncio.get_running_loop().time() + 10)
            await policy.aclose()
            return schedule, result

    schedule, result = run_virtual(go())
    assert schedule.restarts == 1
    assert len(source.started) >= 9  # about every 10 s for 100 s, despite the failure
    assert scrape_success(result) == 1
    log = log_stream.getvalue()
    assert log.count("background refresh scheduler failed") == 1 and "the watched set could not" in log


def test_one_environments_turn_that_raises_is_that_environments_internal_failure(log_stream):
    config = config_for("env_a", "env_b")
    source = SlowSource(0.0)
    store = ResultStore()

    class Unhashable(BackgroundPolicy):
        def offset(self, environment_id: str) -> float:
            if environment_id == "env_b":
                raise ValueError("no offset for env_b")
            return super().offset(environment_id)

    async def go():
        async with running_engine(config, [source], wall_clock=wall, on_result=store.put) as engine:
            failures = FailureLog(clock=lambda: asyncio.get_running_loop().time())
            policy = Unhashable(
                engine,
                store,
                lambda: config.environments,
                10.0,
                timeout=10.0,
                schedule=RefreshSchedule(),
                failures=failures,
                boundary=Boundary(failures, Redactor()),
                wall_clock=wall,
            )
            policy.start()
            await asyncio.sleep(30)
            results = await policy.results(config.environments, asyncio.get_running_loop().time() + 10)
            await policy.aclose()
            return results

    a, b = run_virtual(go())
    assert a.success and not b.success
    assert b.failures["work"].reason == "internal"
    assert log_stream.getvalue().count("schedule failed") == 1


@respx.mock
def test_a_burst_of_reloads_keeps_every_environment_refreshing():
    """A reload every second for a minute: the schedule and the listings in flight outlive each one."""
    listed: list[float] = []

    async def two_seconds(request):
        listed.append(asyncio.get_running_loop().time())
        await asyncio.sleep(2)
        return listing_of(1)

    respx.get(f"{API}/env_a/work").mock(side_effect=two_seconds)
    respx.get(f"{API}/env_a/work/stats").mock(
        return_value=httpx.Response(200, json={"depth": 0, "pending": 0, "oldest_queued_at": None})
    )
    config = config_for("env_a", yaml="scrape: {mode: background, refresh_interval_seconds: 10}\n")

    async def go():
        lasting = Lasting(wall_clock=wall, transport=lambda tls: httpx.AsyncHTTPTransport(verify=tls))
        reloader = Reloader(
            (config, None),
            lambda: (config, None),
            lambda c: build(c, lasting, Shard()),
            state=ReloadState(),
            tls=TlsContext(None),
            forget=lasting.forget_all_but,
        )
        await reloader.start()
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(60):
            await asyncio.sleep(1)
            assert await reloader.reload() == []
            with reloader.use() as runtime:
                (result,) = await runtime.policy.results(config.environments, loop.time() + 10)
            seen.append(scrape_success(result))
        await reloader.aclose()
        return seen

    seen = run_virtual(go())
    assert len(listed) >= 5  # about one listing every 10 s, reloads or not
    first = seen.index(1.0)
    assert set(seen[first:]) == {1.0}  # never stale, never failed
