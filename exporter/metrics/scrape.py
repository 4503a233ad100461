"""How each environment's listing went: success, duration, names, requests and failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.results import EnvironmentResult
from exporter.running.engine import EngineCounters

ENV = "environment_id"


class ScrapeCollector(Collector):
    """`anthropic_work_scrape_success{environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW"} 1.0`

    `last_success` says when an environment last listed successfully (None: never).
    """

    def __init__(
        self,
        results: Sequence[EnvironmentResult],
        last_success: Callable[[str], float | None] = lambda _: None,
    ):
        self.results = results
        self.last_success = last_success

    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        success, duration, info, last = _families()
        for result in self.results:
            env = result.environment
            info.add_metric([env.id, env.name], 1)
            if result.pending:  # not listed yet (background mode): neither a success nor a failure
                continue
            success.add_metric([env.id], 1 if result.success else 0)
            duration.add_metric([env.id], result.duration_seconds)
            when = result.finished_at if result.success else self.last_success(env.id)
            if when is not None:
                last.add_metric([env.id], when)
        yield from (success, duration, info, last)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "anthropic_work_scrape_success",
            "1 if this environment's work listing completed in this scrape (background mode: its latest "
            "listing, if recent), else 0; absent until the first background listing ends.",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_scrape_duration_seconds",
            "Seconds spent listing this environment's work in this scrape.",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_environment_info",
            "Always 1; the environment's display name.",
            labels=[ENV, "name"],
        ),
        GaugeMetricFamily(
            "anthropic_work_last_success_timestamp_seconds",
            "Unix time the listing the served numbers come from ended (in background mode, how old they "
            "are); while listings fail, when the last one succeeded.",
            labels=[ENV],
        ),
    )


class EngineCountersCollector(Collector):
    """Upstream requests and failed listings, for the environments of one scrape.

    Sample line::

        anthropic_work_api_requests_total{code="200",environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW"} 42.0
    """

    def __init__(self, counters: EngineCounters, environment_ids: Sequence[str]):
        self.counters = counters
        self.environment_ids = environment_ids

    def describe(self) -> Iterator[Metric]:
        yield from _counter_families()

    def collect(self) -> Iterator[Metric]:
        requests, failures = _counter_families()
        for env_id in self.environment_ids:
            for code, count in sorted(self.counters.requests.get(env_id, {}).items()):
                requests.add_metric([env_id, code], count)
            for (source, reason), count in sorted(self.counters.failures.get(env_id, {}).items()):
                failures.add_metric([env_id, source, reason], count)
        yield from (requests, failures)


def _counter_families() -> tuple[CounterMetricFamily, CounterMetricFamily]:
    return (
        CounterMetricFamily(
            "anthropic_work_api_requests",
            "Upstream API requests by HTTP status code, or error (connection) / timeout.",
            labels=[ENV, "code"],
        ),
        CounterMetricFamily(
            "anthropic_work_listing_failures",
            "Listings that ended without a result, by source (work, stats) and reason "
            "(http_<status>, timeout, connection, deadline, invalid_response, response_too_large, "
            "repeated_cursor, too_many_pages, no_credentials, internal).",
            labels=[ENV, "source", "reason"],
        ),
    )
