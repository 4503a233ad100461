"""Transitions counted exactly once, and the flow histograms, through the engine and the collectors.

Each test lists one environment several times against respx, with the wall clock
set by the test: it says when each listing starts and when each page arrives, and
what the API shows on each page. Values are read as Prometheus would read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import respx
from conftest import NOW, run_virtual, snapshot
from engine_kit import API, config_for, running_engine, work_source
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from exporter.config.schema import BucketConfig
from exporter.endpoints.work import FlowCollector
from exporter.folds.flow import FlowLedger
from exporter.simulator import rfc3339

URL = f"{API}/env_a/work"
EVENTS = ("created", "acknowledged", "started", "stop_requested", "stopped")
BUCKETS = BucketConfig(
    queue_wait_seconds=(10.0, 60.0),
    start_duration_seconds=(5.0,),
    run_duration_seconds=(100.0,),
    stop_duration_seconds=(5.0,),
)


def item(id: str, **at: float | None) -> dict:
    """A work item whose `<event>_at` timestamps are the given Unix times (created always)."""
    stamps = {f"{event}_at": None for event in EVENTS}
    stamps.update({f"{event}_at": rfc3339(t) for event, t in at.items() if t is not None})
    state = "queued"
    for event, name in (("acknowledged", "starting"), ("started", "active"), ("stop_requested", "stopping")):
        if at.get(event) is not None:
            state = name
    if at.get("stopped") is not None:
        state = "stopped"
    return {"id": id, "type": "work", "state": state, "latest_heartbeat_at": None, "metadata": {}, **stamps}


class Api:
    """What respx answers: per listing, its pages, each arriving at a given wall-clock time."""

    def __init__(self) -> None:
        self.wall = NOW
        self.listings: list[list[tuple[float, list[dict]] | int]] = []
        self._pages: list[tuple[float, list[dict]] | int] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("page")
        n = int(cursor) if cursor else 0
        if n == 0:
            self._pages = self.listings.pop(0)
        answer = self._pages[n]
        if isinstance(answer, int):  # an error status for this page
            return httpx.Response(answer)
        self.wall, items = answer
        more = n + 1 < len(self._pages)
        return httpx.Response(200, json={"data": items, "next_page": str(n + 1) if more else None})


def run(
    api: Api, starts: list[float], environments: Callable[[int], list[str]] | None = None, yaml: str = ""
):
    """One scrape per start time; the registry after each, as /metrics would show it."""
    config = config_for("env_a", "env_b", yaml=f"api: {{max_retries: 0}}\n{yaml}")
    ledger = FlowLedger()
    registries = []

    async def go():
        async with running_engine(
            config, [work_source(config, lambda: api.wall, ledger)], buckets=BUCKETS
        ) as engine:
            for n, start in enumerate(starts):
                api.wall = start
                ids = environments(n) if environments else ["env_a"]
                envs = [e for e in config.environments if e.id in ids]
                await engine.scrape(envs, asyncio.get_running_loop().time() + 30)
                registry = CollectorRegistry(auto_describe=True)
                registry.register(FlowCollector(ledger, ["env_a"]))
                registries.append(snapshot(registry))  # what this scrape showed

    with respx.mock:
        respx.get(URL).mock(side_effect=api.respond)
        respx.get(f"{API}/env_b/work").mock(
            return_value=httpx.Response(200, json={"data": [], "next_page": None})
        )
        run_virtual(go())
    return registries, ledger


def counted(registry: CollectorRegistry, event: str) -> float | None:
    return registry.get_sample_value(
        "anthropic_work_transitions_total", {"environment_id": "env_a", "event": event}
    )


def observed(registry: CollectorRegistry, step: str, suffix: str = "count", **labels: str) -> float | None:
    return registry.get_sample_value(
        f"anthropic_work_{step}_seconds_{suffix}", {"environment_id": "env_a", **labels}
    )


T = NOW  # the first listing starts here; later ones an hour apart


def test_the_first_listing_counts_nothing_and_every_series_starts_at_zero():
    api = Api()
    api.listings = [[(T, [item("w1", created=T - 600, acknowledged=T - 500, started=T - 400)])]]
    (first,), _ = run(api, [T])
    assert [counted(first, e) for e in EVENTS] == [0, 0, 0, 0, 0]
    for step in ("queue_wait", "start_duration", "run_duration", "stop_duration"):
        assert (observed(first, step), observed(first, step, "sum")) == (0, 0)
        assert observed(first, step, "bucket", le="+Inf") == 0


def test_transitions_after_the_baseline_are_counted_and_their_steps_observed():
    api = Api()
    before = [item("w1", created=T - 600), item("w2", created=T - 100, acknowledged=T - 95)]
    after = [
        item("w1", created=T - 600, acknowledged=T + 30, started=T + 32),  # waited 630 s, started in 2 s
        item(
            "w2",
            created=T - 100,
            acknowledged=T - 95,
            started=T + 10,
            stop_requested=T + 200,
            stopped=T + 203,
        ),
        item("w3", created=T + 100, acknowledged=T + 105),  # born and acknowledged in between
    ]
    api.listings = [[(T, before)], [(T + 3600, after)]]
    (_, second), _ = run(api, [T, T + 3600])
    assert [counted(second, e) for e in EVENTS] == [1, 2, 2, 1, 1]
    assert observed(second, "queue_wait", "bucket", le="10.0") == 1  # w3: 5 s
    assert observed(second, "queue_wait", "bucket", le="60.0") == 1
    assert observed(second, "queue_wait", "bucket", le="+Inf") == 2  # w1: 630 s
    assert observed(second, "queue_wait", "sum") == 635
    assert observed(second, "start_duration", "sum") == 2 + 105  # w1 2 s, w2 105 s
    assert observed(second, "run_duration", "sum") == 193  # w2: started T+10, stopped T+203
    assert observed(second, "stop_duration", "sum") == 3


def test_a_transition_during_a_listing_is_counted_once_whichever_page_shows_it_first():
    """Page 1 is fetched before w1 is acknowledged, page 9 (here: 2) after w9 is: both at T+1."""
    api = Api()
    baseline = [(T - 3600, [item("w1", created=T - 60)]), (T - 3600, [item("w9", created=T - 60)])]
    during = [
        (T, [item("w1", created=T - 60)]),  # fetched at T: not yet acknowledged
        (T + 2, [item("w9", created=T - 60, acknowledged=T + 1)]),  # fetched at T+2: acknowledged at T+1
    ]
    later = [
        (T + 3600, [item("w1", created=T - 60, acknowledged=T + 1)]),
        (T + 3600, [item("w9", created=T - 60, acknowledged=T + 1)]),
    ]
    api.listings = [baseline, during, later]
    (_, second, third), _ = run(api, [T - 3600, T, T + 3600])
    assert counted(second, "acknowledged") == 1  # w9, seen on the late page
    assert counted(third, "acknowledged") == 2  # w1 now; w9 not again
    assert observed(third, "queue_wait", "sum") == 61 + 61


def test_a_failed_listing_in_between_delays_counting_and_loses_nothing():
    api = Api()
    api.listings = [
        [(T, [item("w1", created=T - 60)]), (T, [item("w2", created=T - 60)])],
        [(T + 60, [item("w1", created=T - 60, acknowledged=T + 30)]), 503],  # page 2 fails
        [
            (T + 120, [item("w1", created=T - 60, acknowledged=T + 30)]),
            (T + 120, [item("w2", created=T - 60, acknowledged=T + 90)]),
        ],
    ]
    (_, failed, recovered), _ = run(api, [T, T + 60, T + 120])
    assert counted(failed, "acknowledged") == 0  # page 1 showed w1's, but the listing failed
    assert counted(recovered, "acknowledged") == 2
    assert observed(recovered, "queue_wait", "count") == 2


def test_probe_and_metrics_interleaved_count_each_transition_once():
    """/metrics lists env_a and env_b, /probe only env_a, in turns; env_a's counters see each once."""
    api = Api()
    w = lambda ack=None, start=None: item("w1", created=T - 60, acknowledged=ack, started=start)  # noqa: E731
    api.listings = [
        [(T, [w()])],
        [(T + 10, [w(T + 5)])],
        [(T + 20, [w(T + 5)])],
        [(T + 30, [w(T + 5, T + 25)])],
    ]
    registries, _ = run(
        api,
        [T, T + 10, T + 20, T + 30],
        environments=lambda n: ["env_a", "env_b"] if n % 2 == 0 else ["env_a"],
    )
    assert [counted(r, "acknowledged") for r in registries] == [0, 1, 1, 1]
    assert [counted(r, "started") for r in registries] == [0, 0, 0, 1]


@pytest.mark.parametrize("ahead", [0.5, 30.0])
def test_a_timestamp_from_a_clock_ahead_of_ours_is_counted_once(ahead):
    """The API stamps an acknowledgement `ahead` seconds in our future; two listings see it."""
    api = Api()
    future = T + 60 + ahead
    api.listings = [
        [(T, [item("w1", created=T - 60)])],
        [(T + 60, [item("w1", created=T - 60, acknowledged=future)])],
        [(T + 61, [item("w1", created=T - 60, acknowledged=future)])],
        [(T + 3600, [item("w1", created=T - 60, acknowledged=future)])],
    ]
    registries, _ = run(api, [T, T + 60, T + 61, T + 3600])
    assert [counted(r, "acknowledged") for r in registries] == [0, 1, 1, 1]


def test_a_timestamp_from_a_clock_behind_ours_is_not_lost():
    """Acknowledged during a listing, after its page was fetched, but stamped 20 s before the
    listing began (the API's clock 30 s behind): the next listing still counts it."""
    api = Api()
    api.listings = [
        [(T - 3600, [item("w1", created=T - 7200)])],
        [(T, [item("w1", created=T - 7200)])],
        [(T + 3600, [item("w1", created=T - 7200, acknowledged=T - 20)])],
    ]
    (_, _, third), _ = run(api, [T - 3600, T, T + 3600])
    assert counted(third, "acknowledged") == 1


def test_the_state_kept_is_the_recent_transitions_not_the_items():
    """10,000 items listed twice, 3 transitions within the last minute: 3 remembered."""
    api = Api()
    old = [item(f"w{n}", created=T - 86400, acknowledged=T - 86000, started=T - 85000) for n in range(10_000)]
    later = T + 3600
    fresh = [item("n1", created=later - 10), item("n2", created=later - 20, acknowledged=later - 5)]
    api.listings = [[(T, old[:5000]), (T, old[5000:])], [(later, old[:5000]), (later, old[5000:] + fresh)]]
    (_, second), ledger = run(api, [T, later])
    mark = ledger.mark("env_a")
    assert mark is not None and mark.watermark == later - 60  # clock_skew_seconds, 60 by default
    assert set(mark.recent) == {("n1", 0), ("n2", 0), ("n2", 1)}
    assert counted(second, "created") == 2 and counted(second, "acknowledged") == 1


def test_an_item_on_two_pages_of_one_listing_has_each_transition_counted_once():
    """Pagination is no snapshot: w1 moved between page fetches and shows on both pages."""
    api = Api()
    moved = item("w1", created=T - 60, acknowledged=T + 1)
    api.listings = [
        [(T - 3600, [item("w1", created=T - 60)])],
        [(T + 2, [moved, item("w2", created=T - 30, acknowledged=T + 1)]), (T + 3, [moved])],
        [(T + 3600, [moved])],
    ]
    (_, second, third), _ = run(api, [T - 3600, T, T + 3600])
    assert counted(second, "acknowledged") == 2  # w1 once (though on both pages), w2 once
    assert observed(second, "queue_wait", "count") == 2
    assert observed(second, "queue_wait", "sum") == 61 + 31
    assert counted(third, "acknowledged") == 2


def test_an_item_missing_from_one_listing_and_back_in_the_next_is_not_counted_again():
    """w1's acknowledgement is counted by the second listing; the third misses w1 altogether
    (it moved across a page boundary); the fourth shows it again, still within the skew window."""
    api = Api()
    acked = item("w1", created=T - 60, acknowledged=T + 5)
    api.listings = [
        [(T, [item("w1", created=T - 60)])],
        [(T + 10, [acked])],
        [(T + 20, [])],
        [(T + 30, [acked])],
    ]
    registries, ledger = run(api, [T, T + 10, T + 20, T + 30])
    assert [counted(r, "acknowledged") for r in registries] == [0, 1, 1, 1]
    assert [observed(r, "queue_wait", "count") for r in registries] == [0, 1, 1, 1]
    mark = ledger.mark("env_a")
    assert mark is not None and set(mark.recent) == {("w1", 1)}  # carried over the listing that missed it


@pytest.mark.parametrize("listings", [3, 30])
def test_what_is_kept_between_listings_is_bounded_by_recent_transitions(listings):
    """An hour apart, only transitions after the latest watermark are kept, however many items came by."""
    api = Api()
    for n in range(listings):
        start = T + 3600 * n
        batch = [item(f"w{n}-{i}", created=start - 10, acknowledged=start - 5) for i in range(50)]
        api.listings.append([(start, batch)])
    _, ledger = run(api, [T + 3600 * n for n in range(listings)])
    mark = ledger.mark("env_a")
    assert mark is not None and len(mark.recent) == 100  # the last batch's 50 items x 2 events


def test_a_timestamp_far_in_the_future_is_neither_counted_nor_remembered_until_it_is_no_longer():
    """Stamped a day ahead (an upstream clock far ahead) and 9999 ("never"): more than the 60 s skew
    ahead of the page is implausible. Nothing is counted or remembered for it; the day-ahead one is
    counted once when that day comes."""
    api = Api()
    day = T + 86400

    def listed() -> list[dict]:
        return [
            item("w1", created=T - 60, acknowledged=day),
            item("w2", created=T - 60, acknowledged=T - 30, started=T - 20, stopped=253402300799.0),
        ]

    api.listings = [[(T, listed())], [(T + 600, listed())], [(day + 30, listed())], [(day + 90, listed())]]
    registries, _ = run(api, [T, T + 600, day + 30, day + 90])
    assert [counted(r, "acknowledged") for r in registries] == [0, 0, 1, 1]
    assert [counted(r, "stopped") for r in registries] == [0, 0, 0, 0]
    assert [observed(r, "run_duration") for r in registries] == [0, 0, 0, 0]
    assert [observed(r, "queue_wait") for r in registries] == [0, 0, 1, 1]
    assert [observed(r, "queue_wait", "sum") for r in registries] == [0, 0, 86460, 86460]


def test_a_step_that_ends_before_it_began_counts_its_transition_and_observes_no_time():
    """Acknowledged before created, started before acknowledged, stopped before started and before the
    stop request: each transition once, no 0 s durations in the fastest buckets."""
    api = Api()
    odd = item("w1", created=T + 10, acknowledged=T + 5, started=T + 1, stop_requested=T + 30, stopped=T)
    api.listings = [[(T - 3600, [item("w1", created=T - 7200)])], [(T + 60, [odd])], [(T + 120, [odd])]]
    (_, second, third), _ = run(api, [T - 3600, T + 60, T + 120])
    for registry in (second, third):
        assert [counted(registry, e) for e in EVENTS] == [1, 1, 1, 1, 1]
        for step in ("queue_wait", "start_duration", "run_duration", "stop_duration"):
            assert observed(registry, step) == 0, step


def test_what_is_remembered_is_capped_and_what_is_forgotten_is_counted():
    """500 transitions inside the window, a cap of 100: the newest 100 remembered, 400 forgotten."""
    api = Api()
    batch = [item(f"w{n}", created=T + 600 - n * 0.01) for n in range(500)]
    api.listings = [[(T, [])], [(T + 600, batch)]]
    registries, ledger = run(api, [T, T + 600], yaml="scrape: {max_recent_transitions: 100}\n")
    mark = ledger.mark("env_a")
    assert mark is not None and len(mark.recent) == 100
    assert set(mark.recent) == {(f"w{n}", 0) for n in range(100)}  # the newest
    assert counted(registries[1], "created") == 500  # counted before anything was forgotten
    forgotten = registries[1].get_sample_value(
        "anthropic_work_transitions_forgotten_total", {"environment_id": "env_a"}
    )
    assert forgotten == 400
    assert (
        registries[0].get_sample_value(
            "anthropic_work_transitions_forgotten_total", {"environment_id": "env_a"}
        )
        == 0
    )


def rendered(ledger: FlowLedger, fmt: str) -> str:
    from exporter.web.negotiate import choose_format

    chosen = choose_format(fmt)
    assert chosen is not None
    registry = CollectorRegistry(auto_describe=True)
    registry.register(FlowCollector(ledger, ["env_a"]))
    return chosen.encoder(registry).decode()


def test_each_flow_bucket_carries_the_latest_item_observed_in_it_in_openmetrics_only():
    api = Api()
    long_id, long_session = "work_" + "x" * 200, "session_" + "y" * 200
    first = item("w1", created=T - 60, acknowledged=T + 5)  # waited 65 s
    second = dict(item(long_id, created=T - 2, acknowledged=T + 3), data={"id": long_session})  # 5 s
    api.listings = [
        [(T, [item("w1", created=T - 60)])],
        [(T + 10, [{**first, "data": {"id": "sesn_1"}}, second])],
    ]
    _, ledger = run(api, [T, T + 10])
    openmetrics = rendered(ledger, "application/openmetrics-text;version=1.0.0")
    families = {f.name: f for f in openmetrics_families(openmetrics)}
    buckets = {
        s.labels["le"]: s
        for s in families["anthropic_work_queue_wait_seconds"].samples
        if s.name.endswith("_bucket")
    }
    short = buckets["5.0"].exemplar  # the default buckets: 1, 2.5, 5, 10, 30, 60, 120, ...
    assert short.value == 5 and float(short.timestamp.sec + short.timestamp.nsec / 1e9) == T + 3
    assert short.labels == {"work_id": long_id[:55], "session_id": long_session[:56]}  # 128 characters in all
    assert sum(len(k) + len(v) for k, v in short.labels.items()) <= 128
    assert buckets["120.0"].exemplar.labels == {"work_id": "w1", "session_id": "sesn_1"}
    assert buckets["120.0"].exemplar.value == 65
    assert buckets["60.0"].exemplar is None and buckets["+Inf"].exemplar is None  # nothing observed there
    assert " # {" not in rendered(ledger, "text/plain")  # the classic text format has no exemplars
