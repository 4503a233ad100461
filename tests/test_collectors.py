"""Exact metric values for hand-made pages with a fixed clock, through the engine and the collectors."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip

import httpx
import pytest
import respx
from conftest import NOW, page, render, run_virtual, served, work
from engine_kit import API, KEY_ENV, config_for, running_engine, work_source
from prometheus_client import CollectorRegistry

from exporter.config.schema import BucketConfig, Config
from exporter.endpoints.stats import StatsSource
from exporter.metrics.exposition import Exposition
from exporter.metrics.formats import FORMATS
from exporter.results import EnvironmentResult
from exporter.simulator import rfc3339
from exporter.web.negotiate import choose_format
from exporter.wiring import Lasting

BUCKETS = BucketConfig(heartbeat_age_seconds=(5.0, 30.0), state_age_seconds=(60.0, 600.0))


def listed(
    *env_ids: str,
    buckets: BucketConfig = BUCKETS,
    wall_clock=lambda: NOW,
    api: str = "",
    yaml: str = "",
    environ: dict[str, str] | None = None,
    stats: bool = False,
    lasting: Lasting | None = None,
    names: dict[str, str] | None = None,
) -> tuple[Lasting, list[EnvironmentResult]]:
    """One listing of `env_ids` against respx, with what the exporter keeps between scrapes."""
    config = config_for(*env_ids, yaml="api:\n  max_retries: 0\n" + api + yaml, environ=environ, names=names)
    config = Config(config.environments, config.api, config.scrape, buckets, config.breakdown)
    lasting = lasting or Lasting()
    sources = [work_source(config, wall_clock, lasting.ledger)]
    if stats:
        sources.append(StatsSource(wall_clock))

    async def go():
        async with running_engine(
            config, sources, counters=lasting.counters, wall_clock=wall_clock
        ) as engine:
            return await engine.scrape(config.environments, asyncio.get_running_loop().time() + 30)

    return lasting, run_virtual(go())


def scrape(*env_ids: str, **kw) -> CollectorRegistry:
    """The numbers a /metrics answer for `env_ids` would show, parsed back from its OpenMetrics."""
    lasting, results = listed(*env_ids, **kw)
    return served(lasting.exposition, results, list(env_ids))


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
def test_implausible_timestamps_are_counted_per_field_in_each_listing():
    """More than the 60 s skew ahead of the page, or before the timestamp its step starts from."""
    at = rfc3339
    items = [
        work("queued", created_at=at(NOW + 3600)),  # an hour ahead
        work("queued", created_at=at(NOW + 59)),  # within the skew: plausible
        work("starting", created_at=at(NOW - 60), acknowledged_at=at(NOW - 70)),  # before created
        work(
            "active", acknowledged_at=at(NOW - 10), started_at=at(NOW - 20), latest_heartbeat_at=at(NOW + 600)
        ),
        work("stopped", started_at=at(NOW - 100), stop_requested_at=at(NOW - 50), stopped_at=at(NOW - 60)),
        work("stopped", started_at=at(NOW - 100), stopped_at="9999-12-31T23:59:59.999999Z"),  # "never"
        work("stopped", started_at=at(NOW - 100), stopped_at=at(NOW - 200)),  # before started
    ]
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page(items)))
    r = scrape("env_a")
    implausible = {
        field: value(r, "anthropic_work_implausible_timestamps", environment_id="env_a", field=field)
        for field in (
            "created_at",
            "acknowledged_at",
            "started_at",
            "stop_requested_at",
            "stopped_at",
            "latest_heartbeat_at",
        )
    }
    assert implausible == {
        "created_at": 1,
        "acknowledged_at": 1,
        "started_at": 1,
        "stop_requested_at": 0,
        "stopped_at": 3,
        "latest_heartbeat_at": 1,
    }
    assert value(r, "anthropic_work_items", environment_id="env_a", state="stopped") == 3  # still counted


@respx.mock
def test_unparseable_timestamps_leave_ages_but_not_counts():
    respx.get(f"{API}/env_a/work").mock(
        return_value=httpx.Response(
            200,
            json=page(
                [
                    work("active", started_at="yesterday", latest_heartbeat_at="2026-13-01T00:00:00Z"),
                    work("queued", created_at="2026-11-22T11:59:00"),  # no offset: not RFC 3339
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


def stats_body(**fields) -> dict:
    return {"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": None, **fields}


@respx.mock
def test_queue_statistics_are_exposed_as_the_api_counts_them():
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([work("queued", age=5)])))
    respx.get(f"{API}/env_a/work/stats").mock(
        return_value=httpx.Response(
            200, json=stats_body(depth=7, pending=2, oldest_queued_at=rfc3339(NOW - 95.5), workers_polling=3)
        )
    )
    r = scrape("env_a", stats=True)
    e = dict(environment_id="env_a")
    assert value(r, "anthropic_work_stats_success", **e) == 1
    assert value(r, "anthropic_work_queue_depth", **e) == 7
    assert value(r, "anthropic_work_queue_pending", **e) == 2
    assert value(r, "anthropic_work_queue_oldest_age_seconds", **e) == 95.5
    assert value(r, "anthropic_work_workers_polling", **e) == 3


@respx.mock
def test_workers_polling_is_absent_when_the_api_says_null_and_an_empty_queue_is_zero_old():
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([])))
    respx.get(f"{API}/env_a/work/stats").mock(
        return_value=httpx.Response(200, json=stats_body(workers_polling=None))
    )
    r = scrape("env_a", stats=True)
    assert value(r, "anthropic_work_workers_polling", environment_id="env_a") is None
    assert value(r, "anthropic_work_queue_oldest_age_seconds", environment_id="env_a") == 0
    assert value(r, "anthropic_work_queue_depth", environment_id="env_a") == 0


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(503), httpx.Response(200, json={"depth": "many"}), httpx.Response(404, json={})],
    ids=["503", "malformed", "404"],
)
@respx.mock
def test_a_failing_stats_request_leaves_the_listing_alone(answer):
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([work("queued", age=5)])))
    respx.get(f"{API}/env_a/work/stats").mock(return_value=answer)
    r = scrape("env_a", stats=True)
    e = dict(environment_id="env_a")
    assert value(r, "anthropic_work_stats_success", **e) == 0
    for name in ("queue_depth", "queue_pending", "queue_oldest_age_seconds", "workers_polling"):
        assert value(r, f"anthropic_work_{name}", **e) is None
    assert value(r, "anthropic_work_scrape_success", **e) == 1
    assert value(r, "anthropic_work_items", state="queued", **e) == 1
    assert value(r, "anthropic_work_listing_failures_total", source="stats", **e) is None
    reasons = [
        s.labels["reason"]
        for m in r.collect()
        if m.name == "anthropic_work_listing_failures"
        for s in m.samples
    ]
    assert len(reasons) == 1 and reasons[0] in ("http_503", "invalid_response", "http_404")


@respx.mock
def test_stats_are_asked_with_their_own_credentials_when_configured():
    listing = respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page([])))
    stats = respx.get(f"{API}/env_a/work/stats").mock(return_value=httpx.Response(200, json=stats_body()))
    scrape(
        "env_a",
        api="  stats_credentials: {type: api_key, value_env: ORG_KEY}\n",
        environ={**KEY_ENV, "ORG_KEY": "org-key"},
        stats=True,
    )
    assert listing.calls.last.request.headers["authorization"] == "Bearer env-key"
    assert stats.calls.last.request.headers["x-api-key"] == "org-key"
    assert "authorization" not in stats.calls.last.request.headers


@respx.mock
def test_items_are_broken_down_by_the_configured_metadata_keys_only(log_stream):
    items = [
        work("queued", metadata={"team": "search", "secret_project": "x"}),
        work("queued", metadata={"team": "search"}),
        work("active", age=5, metadata={"team": "billing"}),
        work("active", age=5, metadata={"team": "infra"}),  # the third value: past max_values 2
        work("active", age=5, metadata={"team": "ads"}),  # the fourth
        work("queued", metadata={}),
        work("stopped", metadata={"team": 7}),  # not a string: as good as missing
    ]
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page(items)))
    r = scrape("env_a", yaml="breakdown: {metadata_keys: [team], max_values: 2}\n")
    got = {
        (s.labels["state"], s.labels["key"], s.labels["value"]): s.value
        for m in r.collect()
        if m.name == "anthropic_work_items_by_metadata"
        for s in m.samples
    }
    assert got == {
        ("queued", "team", "search"): 2,
        ("active", "team", "billing"): 1,
        ("active", "team", "__other__"): 2,
        ("queued", "team", "__missing__"): 1,
        ("stopped", "team", "__missing__"): 1,
    }
    (line,) = [line for line in log_stream.getvalue().splitlines() if "metadata key" in line]
    assert "environment_id=env_a key=team counted_as=__other__" in line


@respx.mock
def test_the_oldest_item_without_a_heartbeat_per_state():
    items = [
        work("starting", age=20),  # acknowledged 20 s ago, no heartbeat yet: a healthy start
        work("starting", age=400),  # no heartbeat after 400 s: its worker is gone
        work("starting", age=900, heartbeat_age=3),  # old but heartbeating
        work("active", age=50, heartbeat_age=10),
    ]
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page(items)))
    r = scrape("env_a")
    oldest = {
        state: value(
            r, "anthropic_work_without_heartbeat_age_max_seconds", environment_id="env_a", state=state
        )
        for state in ("starting", "active", "stopping")
    }
    assert oldest == {"starting": 400, "active": 0, "stopping": 0}
    assert value(r, "anthropic_work_items_without_heartbeat", environment_id="env_a", state="starting") == 2


@respx.mock
def test_health_check_work_is_counted_like_any_other():
    items = [
        work("queued", data={"id": "h1", "type": "healthcheck"}),
        work("queued", data={"type": "unheard-of"}),
    ]
    respx.get(f"{API}/env_a/work").mock(return_value=httpx.Response(200, json=page(items)))
    r = scrape("env_a")
    assert value(r, "anthropic_work_items", environment_id="env_a", state="queued") == 2


# --- the exposition: each environment rendered once per result, spliced family by family

ACCEPTS = {
    "text": "",
    "openmetrics": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "openmetrics-0.0.1": "application/openmetrics-text;version=0.0.1",
}


def mock_fleet() -> None:
    respx.get(f"{API}/env_a/work").mock(
        return_value=httpx.Response(
            200,
            json=page(
                [
                    work("queued", age=30, metadata={"team": "search"}),
                    work("active", age=100, heartbeat_age=2, metadata={"team": "ads"}),
                    work("stopping", age=20, heartbeat_age=1),
                ]
            ),
        )
    )
    respx.get(f"{API}/env_b/work").mock(return_value=httpx.Response(503))
    respx.get(f"{API}/env_c/work").mock(
        return_value=httpx.Response(200, json=page([work("starting", age=5)]))
    )
    for env_id in ("env_a", "env_b", "env_c"):
        respx.get(f"{API}/{env_id}/work/stats").mock(
            return_value=httpx.Response(200, json={"depth": 1, "pending": 0, "oldest_queued_at": None})
        )


def whole(lasting: Lasting, results: list[EnvironmentResult], accept: str) -> bytes:
    """What prometheus-client renders for all the scrape's families in one registry."""
    fmt = choose_format(accept)
    assert fmt is not None
    encoder = fmt.encoder
    registry = CollectorRegistry()
    for collector in [*lasting.per_environment(results), *lasting.live([r.environment.id for r in results])]:
        registry.register(collector)
    return encoder(registry)


@pytest.mark.parametrize("accept", ACCEPTS.values(), ids=ACCEPTS.keys())
@respx.mock
def test_the_spliced_exposition_is_byte_for_byte_what_prometheus_client_renders(accept):
    mock_fleet()
    names = {"env_a": 'tricky "a"\n# HELP x y\\', "env_c": "# TYPE c gauge"}  # must not open a block
    lasting, results = listed(
        "env_a", "env_b", "env_c", stats=True, names=names, yaml="breakdown:\n  metadata_keys: [team]\n"
    )
    assert [r.success for r in results] == [True, False, True]
    for _ in range(2):  # rendered, then from what was kept
        response = render(
            lasting.exposition, results, ["env_a", "env_b", "env_c"], accept=accept, accept_encoding=""
        )
        assert response.body == whole(lasting, results, accept)
        fmt = choose_format(accept)
        assert fmt is not None and response.content_type == fmt.content_type


@pytest.mark.parametrize("accept", ACCEPTS.values(), ids=ACCEPTS.keys())
def test_no_environments_still_shows_every_family(accept):
    lasting = Lasting()
    assert render(lasting.exposition, [], [], accept=accept, accept_encoding="").body == whole(
        lasting, [], accept
    )


@respx.mock
def test_an_environment_is_rendered_again_only_when_its_result_or_its_counters_change():
    mock_fleet()
    lasting, first = listed("env_a", "env_c")
    rendered: list[list[str]] = []

    def per_environment(results):
        rendered.append([r.environment.id for r in results])
        return lasting.per_environment(results)

    exposition = Exposition(per_environment, lasting.live, lasting.ledger.mark, lasting.boundary)
    ids = ["env_a", "env_c"]
    for accept in ("", "", ACCEPTS["openmetrics"], ACCEPTS["openmetrics"]):
        render(exposition, first, ids, accept=accept, accept_encoding="")
    assert rendered == [[], ["env_a"], ["env_c"], [], ["env_a"], ["env_c"]]  # once per format

    rendered.clear()
    _, (c_again,) = listed("env_c", lasting=lasting)  # a new result for env_c alone
    served = render(exposition, [first[0], c_again], ids, accept="", accept_encoding="")
    assert rendered == [["env_c"]]
    assert served.body == whole(lasting, [first[0], c_again], "")

    rendered.clear()
    listed("env_a", lasting=lasting)  # env_a's flow counters move on; its result served stays the old one
    served = render(exposition, [first[0], c_again], ids, accept="", accept_encoding="")
    assert rendered == [["env_a"]]
    assert served.body == whole(lasting, [first[0], c_again], "")


@respx.mock
def test_a_result_is_rendered_as_it_arrives_in_the_formats_scrapes_asked_for():
    mock_fleet()
    lasting, (first,) = listed("env_a")
    rendered: list[str] = []

    def per_environment(results):
        rendered.extend(r.environment.id for r in results)
        return lasting.per_environment(results)

    exposition = Exposition(per_environment, lasting.live, lasting.ledger.mark, lasting.boundary)
    render(exposition, [first], ["env_a"], accept=ACCEPTS["openmetrics"], accept_encoding="")
    _, (second,) = listed("env_a", lasting=lasting)
    rendered.clear()
    exposition.prepare(second)  # as the listing ends, before any scrape
    assert rendered == ["env_a"]
    served = render(exposition, [second], ["env_a"], accept=ACCEPTS["openmetrics"], accept_encoding="")
    assert rendered == ["env_a"]  # the scrape only spliced
    assert served.body == whole(lasting, [second], ACCEPTS["openmetrics"])


@respx.mock
def test_whatever_clients_accept_only_the_offered_formats_are_rendered_and_kept():
    mock_fleet()
    lasting, results = listed("env_a")
    rendered: list[str] = []

    def per_environment(results):
        rendered.extend(r.environment.id for r in results)
        return lasting.per_environment(results)

    exposition = Exposition(per_environment, lasting.live, lasting.ledger.mark, lasting.boundary)
    accepts = [f"application/openmetrics-text;version=1.0.{n}" for n in range(8)] + [
        "application/openmetrics-text;version=0.0.1",
        "text/plain;version=1.0.0",
    ]
    for accept in accepts * 2:
        render(exposition, results, ["env_a"], accept=accept)
    assert len(rendered) == len(FORMATS)  # each offered format once; version 1.0.1 and so on are text
    _, (again,) = listed("env_a", lasting=lasting)
    rendered.clear()
    exposition.prepare(again)
    assert rendered == ["env_a"] * len(FORMATS)


@respx.mock
def test_gzip_when_asked_and_only_then():
    mock_fleet()
    lasting, results = listed("env_a")
    plain = render(lasting.exposition, results, ["env_a"], accept="", accept_encoding="")
    packed = render(lasting.exposition, results, ["env_a"], accept="", accept_encoding="br, gzip;q=0.8")
    assert not plain.gzipped and packed.gzipped
    assert gzip.decompress(packed.body) == plain.body


@respx.mock
def test_an_environment_that_cannot_be_rendered_is_shown_failed_and_the_others_exact(log_stream):
    """A summary no encoder can write (a state that is no text) fails its environment's render step only."""
    mock_fleet()
    lasting, (a, c) = listed("env_a", "env_c")
    summary = a.values["work"]
    broken = dataclasses.replace(summary, items={**summary.items, "queued\ud800": 1})
    hostile = dataclasses.replace(a, values={**a.values, "work": broken})
    for accept in ACCEPTS.values():
        response = render(lasting.exposition, [hostile, c], ["env_a", "env_c"], accept=accept)
        registry = CollectorRegistry()
        registry.register(_parsed(response.body))
        assert value(registry, "anthropic_work_scrape_success", environment_id="env_a") == 0
        assert value(registry, "anthropic_work_items", environment_id="env_a", state="active") is None
        assert value(registry, "anthropic_work_scrape_success", environment_id="env_c") == 1
        assert value(registry, "anthropic_work_items", environment_id="env_c", state="starting") == 1
    failed = [line for line in log_stream.getvalue().splitlines() if "render failed" in line]
    assert len(failed) == 1 and "reason=internal" in failed[0] and "UnicodeEncodeError" in failed[0]
    assert "Traceback" in failed[0]  # the traceback, once, on that line


def _parsed(body: bytes):
    from prometheus_client.parser import text_string_to_metric_families

    class Parsed:
        def collect(self):
            text = body.decode().removesuffix("# EOF\n")
            return text_string_to_metric_families(text)

    return Parsed()


def test_the_families_metrics_exclude_may_name_are_exactly_the_per_environment_ones():
    from exporter.config.vocabulary import PER_ENVIRONMENT_FAMILIES
    from exporter.metrics.exposition import exposed_name
    from exporter.wiring import Lasting

    families = [exposed_name(m) for m in Lasting().exposition.families()]
    assert sorted(families) == sorted(PER_ENVIRONMENT_FAMILIES)
    assert len(set(PER_ENVIRONMENT_FAMILIES)) == len(PER_ENVIRONMENT_FAMILIES)
