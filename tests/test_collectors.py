"""Exact metric values for hand-made pages with a fixed clock, through the engine and the collectors."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from conftest import NOW, page, run_virtual, work
from engine_kit import API, config_for, running_engine
from prometheus_client import CollectorRegistry

from exporter.collectors.scrape import EngineCountersCollector, ScrapeCollector
from exporter.collectors.work import WorkCollector
from exporter.config import BucketConfig
from exporter.engine import EngineCounters

BUCKETS = BucketConfig(heartbeat_age_seconds=(5.0, 30.0), state_age_seconds=(60.0, 600.0))


def scrape(*env_ids: str, buckets: BucketConfig = BUCKETS, wall_clock=lambda: NOW) -> CollectorRegistry:
    """One scrape of `env_ids` against respx; the registry a /metrics answer would be made from."""
    config = config_for(*env_ids, yaml="api: {max_retries: 0}\n")
    counters = EngineCounters()

    async def go():
        async with running_engine(
            config, buckets=buckets, counters=counters, wall_clock=wall_clock
        ) as engine:
            return await engine.scrape(config.environments, asyncio.get_running_loop().time() + 30)

    results = run_virtual(go())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkCollector(results))
    registry.register(ScrapeCollector(results))
    registry.register(EngineCountersCollector(counters, set(env_ids)))
    return registry


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


@respx.mock
def test_counts_buckets_sums_and_maxima_are_exact():
    respx.get(f"{API}/env_a/work").mock(
        side_effect=[
            httpx.Response(
                200,
                json=page(
                    [
                        work("queued", age=30),
                        work("queued", age=60),
                        work("queued", age=61),
                        work("active", age=100, heartbeat_age=2),
                        work("active", age=700, heartbeat_age=5),
                    ],
                    next_page="p2",
                ),
            ),
            httpx.Response(200, json=page([], next_page="p3")),  # an empty page mid-listing
            httpx.Response(
                200,
                json=page(
                    [
                        work("active", age=10, heartbeat_age=40),
                        work("starting", age=5),  # no heartbeat yet
                        work("stopping", age=20, heartbeat_age=1),
                        work("stopped"),
                        work("stopped"),
                        work("paused"),  # a state the exporter does not know yet
                    ]
                ),
            ),
        ]
    )
    r = scrape("env_a")
    items = {
        s: value(r, "anthropic_work_items", environment_id="env_a", state=s)
        for s in ("queued", "starting", "active", "stopping", "stopped", "paused")
    }
    assert items == {"queued": 3, "starting": 1, "active": 3, "stopping": 1, "stopped": 2, "paused": 1}

    q = dict(environment_id="env_a", state="queued")
    assert [
        value(r, "anthropic_work_state_age_seconds_bucket", le=le, **q) for le in ("60.0", "600.0", "+Inf")
    ] == [2, 3, 3]
    assert value(r, "anthropic_work_state_age_seconds_gcount", **q) == 3
    assert value(r, "anthropic_work_state_age_seconds_gsum", **q) == 151
    assert value(r, "anthropic_work_state_age_max_seconds", **q) == 61

    a = dict(environment_id="env_a", state="active")
    assert [
        value(r, "anthropic_work_state_age_seconds_bucket", le=le, **a) for le in ("60.0", "600.0", "+Inf")
    ] == [1, 2, 3]
    assert value(r, "anthropic_work_state_age_max_seconds", **a) == 700
    assert [
        value(r, "anthropic_work_heartbeat_age_seconds_bucket", le=le, **a) for le in ("5.0", "30.0", "+Inf")
    ] == [2, 2, 3]
    assert value(r, "anthropic_work_heartbeat_age_seconds_gsum", **a) == 47
    assert value(r, "anthropic_work_heartbeat_age_max_seconds", **a) == 40
    assert value(r, "anthropic_work_items_without_heartbeat", **a) == 0

    s = dict(environment_id="env_a", state="starting")
    assert value(r, "anthropic_work_items_without_heartbeat", **s) == 1
    assert value(r, "anthropic_work_heartbeat_age_seconds_gcount", **s) == 0
    assert value(r, "anthropic_work_heartbeat_age_max_seconds", **s) == 0
    assert value(r, "anthropic_work_state_age_seconds_gsum", **s) == 5

    # Stopped items have no time-in-state series; unknown states have no ages.
    assert (
        value(r, "anthropic_work_state_age_seconds_gcount", environment_id="env_a", state="stopped") is None
    )
    assert value(r, "anthropic_work_state_age_seconds_gcount", environment_id="env_a", state="paused") is None
    assert value(r, "anthropic_work_scrape_success", environment_id="env_a") == 1
    assert value(r, "anthropic_work_api_requests_total", environment_id="env_a", code="200") == 3
    assert value(r, "anthropic_work_environment_info", environment_id="env_a", name="env_a") == 1


@respx.mock
def test_an_empty_environment_still_shows_every_known_state_at_zero():
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([])))
    r = scrape("env_a")
    for state in ("queued", "starting", "active", "stopping", "stopped"):
        assert value(r, "anthropic_work_items", environment_id="env_a", state=state) == 0
    for state in ("starting", "active", "stopping"):
        labels = dict(environment_id="env_a", state=state)
        assert value(r, "anthropic_work_heartbeat_age_seconds_bucket", le="+Inf", **labels) == 0
        assert value(r, "anthropic_work_heartbeat_age_seconds_gsum", **labels) == 0
        assert value(r, "anthropic_work_items_without_heartbeat", **labels) == 0
    for state in ("queued", "starting", "active", "stopping"):
        assert value(r, "anthropic_work_state_age_seconds_gcount", environment_id="env_a", state=state) == 0


@respx.mock
def test_future_timestamps_count_as_age_zero():
    respx.get(f"{API}/env_a/work").mock(
        return_value=httpx.Response(200, json=page([work("active", age=-30, heartbeat_age=-2)]))
    )
    r = scrape("env_a")
    a = dict(environment_id="env_a", state="active")
    assert value(r, "anthropic_work_state_age_seconds_bucket", le="60.0", **a) == 1
    assert value(r, "anthropic_work_state_age_seconds_gsum", **a) == 0
    assert value(r, "anthropic_work_heartbeat_age_seconds_bucket", le="5.0", **a) == 1
    assert value(r, "anthropic_work_heartbeat_age_max_seconds", **a) == 0


@respx.mock
def test_unparseable_timestamps_leave_ages_but_not_counts():
    respx.get(f"{API}/env_a/work").mock(
        return_value=httpx.Response(
            200,
            json=page(
                [
                    work("active", started_at="yesterday", latest_heartbeat_at="2026-13-01T00:00:00Z"),
                    work("queued", created_at="2026-11-22T11:59:00.1234567890Z"),  # ten fraction digits
                    work("active", age=30, heartbeat_age=3),
                ]
            ),
        )
    )
    r = scrape("env_a")
    a = dict(environment_id="env_a", state="active")
    assert value(r, "anthropic_work_items", **a) == 2
    assert value(r, "anthropic_work_state_age_seconds_gcount", **a) == 1
    assert value(r, "anthropic_work_heartbeat_age_seconds_gcount", **a) == 1
    # A garbled heartbeat is not "no heartbeat".
    assert value(r, "anthropic_work_items_without_heartbeat", **a) == 0
    assert value(r, "anthropic_work_items", environment_id="env_a", state="queued") == 1
    assert value(r, "anthropic_work_state_age_seconds_gcount", environment_id="env_a", state="queued") == 0
    # Nothing disappears silently: the garbled timestamps are counted per field.
    unparseable = {
        field: value(r, "anthropic_work_unparseable_timestamps", environment_id="env_a", field=field)
        for field in (
            "created_at",
            "acknowledged_at",
            "started_at",
            "stop_requested_at",
            "latest_heartbeat_at",
        )
    }
    assert unparseable == {
        "created_at": 1,
        "acknowledged_at": 0,
        "started_at": 1,
        "stop_requested_at": 0,
        "latest_heartbeat_at": 1,
    }


@respx.mock
def test_a_failing_environment_loses_its_item_series_and_others_are_untouched():
    respx.get(f"{API}/env_ok/work").mock(return_value=httpx.Response(200, json=page([work("queued", age=1)])))
    respx.get(f"{API}/env_bad/work").mock(
        return_value=httpx.Response(
            403, json={"type": "error", "error": {"type": "permission_error", "message": "no"}}
        )
    )
    r = scrape("env_ok", "env_bad")
    assert value(r, "anthropic_work_scrape_success", environment_id="env_bad") == 0
    assert value(r, "anthropic_work_scrape_success", environment_id="env_ok") == 1
    assert value(r, "anthropic_work_items", environment_id="env_ok", state="queued") == 1
    assert value(r, "anthropic_work_items", environment_id="env_bad", state="queued") is None
    assert (
        value(r, "anthropic_work_state_age_seconds_gcount", environment_id="env_bad", state="queued") is None
    )
    assert value(r, "anthropic_work_api_requests_total", environment_id="env_bad", code="403") == 1
    assert (
        value(
            r,
            "anthropic_work_listing_failures_total",
            environment_id="env_bad",
            source="work",
            reason="http_403",
        )
        == 1
    )
    assert value(r, "anthropic_work_scrape_duration_seconds", environment_id="env_bad") == 0


@pytest.mark.parametrize("buckets", [(1.0,), (0.5, 1.0, 2.0, 4.0)])
@respx.mock
def test_configured_buckets_are_used_with_inf_appended(buckets):
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([work("queued", age=3)])))
    r = scrape("env_a", buckets=BucketConfig(heartbeat_age_seconds=buckets, state_age_seconds=buckets))
    les = [
        s.labels["le"]
        for m in r.collect()
        if m.name == "anthropic_work_state_age_seconds"
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["state"] == "queued"
    ]
    assert les == [*(repr(b) for b in buckets), "+Inf"]


@respx.mock
def test_ages_are_measured_against_the_moment_each_page_arrived():
    """Two pages an hour apart: the same timestamps look an hour older on the second."""
    same = [work("queued", age=30, now=NOW), work("active", age=30, heartbeat_age=2, now=NOW)]
    wall = [NOW]

    def second_page(request: httpx.Request) -> httpx.Response:
        wall[0] = NOW + 3600  # it arrives an hour after the first
        return httpx.Response(200, json=page(same))

    respx.get(f"{API}/env_a/work").mock(side_effect=[httpx.Response(200, json=page(same, "p2")), second_page])
    r = scrape("env_a", wall_clock=lambda: wall[0])
    q = dict(environment_id="env_a", state="queued")
    assert value(r, "anthropic_work_state_age_seconds_gsum", **q) == 30 + 3630
    assert value(r, "anthropic_work_state_age_max_seconds", **q) == 3630
    a = dict(environment_id="env_a", state="active")
    assert value(r, "anthropic_work_heartbeat_age_seconds_gsum", **a) == 2 + 3602


@respx.mock
def test_unknown_states_are_capped_and_the_rest_counted_as_other():
    items = [work(f"new_state_{n}") for n in range(12)] + [work("new_state_11"), work("queued")]
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page(items)))
    r = scrape("env_a")
    states = {
        s.labels["state"]: s.value for m in r.collect() if m.name == "anthropic_work_items" for s in m.samples
    }
    assert states == {
        "queued": 1,
        "starting": 0,
        "active": 0,
        "stopping": 0,
        "stopped": 0,
        **{f"new_state_{n}": 1 for n in range(10)},
        "__other__": 3,
    }
