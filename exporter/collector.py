"""Prometheus metric families from listing results.

`WorkCollector` is built per scrape (it carries that scrape's deadline and the
environments it covers) and lists work only when collected; `describe()`
returns the family names without calling anything, so registering it is free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import __version__
from .aggregate import AgeDistribution, EnvironmentSummary
from .client import RequestCounter
from .config import Environment
from .scrape import EnvironmentResult, Scraper

ENV = "environment_id"


class WorkCollector(Collector):
    """Per-environment work metrics for one scrape.

    Sample line::

        anthropic_work_items{environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW",state="queued"} 4.0
    """

    def __init__(
        self, scraper: Scraper, environments: Sequence[Environment], deadline: float, requests: RequestCounter
    ):
        self.scraper = scraper
        self.environments = environments
        self.deadline = deadline
        self.requests = requests

    def describe(self) -> Iterator[Metric]:
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        results = self.scraper.scrape(self.environments, self.deadline)
        families = _Families()
        for result in results:
            families.add(result)
        wanted = {env.id for env in self.environments}
        for (env_id, code), count in sorted(self.requests.snapshot().items()):
            if env_id in wanted:
                families.requests.add_metric([env_id, code], count)
        yield from families.all()


class BuildInfoCollector(Collector):
    """`anthropic_work_exporter_build_info{version="0.1.0"} 1.0`"""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("anthropic_work_exporter_build_info", "", labels=["version"])

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "anthropic_work_exporter_build_info",
            "Always 1; the exporter's version as a label.",
            labels=["version"],
        )
        info.add_metric([__version__], 1)
        yield info


class _Families:
    """The families of one scrape, filled environment by environment."""

    def __init__(self) -> None:
        by_state = [ENV, "state"]
        self.items = GaugeMetricFamily(
            "anthropic_work_items",
            "Work items per state; the five known states are always present.",
            labels=by_state,
        )
        self.heartbeat_age = GaugeHistogramMetricFamily(
            "anthropic_work_heartbeat_age_seconds",
            "Seconds since the latest heartbeat, over starting, active and stopping items that have one.",
            labels=by_state,
        )
        self.heartbeat_age_max = GaugeMetricFamily(
            "anthropic_work_heartbeat_age_max_seconds",
            "The oldest heartbeat age per state; 0 when there is none.",
            labels=by_state,
        )
        self.without_heartbeat = GaugeMetricFamily(
            "anthropic_work_items_without_heartbeat",
            "Starting, active and stopping items that have never heartbeated.",
            labels=by_state,
        )
        self.state_age = GaugeHistogramMetricFamily(
            "anthropic_work_state_age_seconds",
            "Seconds in the current state: queued since created_at, starting since acknowledged_at, "
            "active since started_at, stopping since stop_requested_at.",
            labels=by_state,
        )
        self.state_age_max = GaugeMetricFamily(
            "anthropic_work_state_age_max_seconds",
            "The longest time in the current state per state; 0 when there is none.",
            labels=by_state,
        )
        self.success = GaugeMetricFamily(
            "anthropic_work_scrape_success",
            "1 if this environment's listing completed in this scrape, else 0.",
            labels=[ENV],
        )
        self.duration = GaugeMetricFamily(
            "anthropic_work_scrape_duration_seconds",
            "Seconds spent listing this environment's work in this scrape.",
            labels=[ENV],
        )
        self.requests = CounterMetricFamily(
            "anthropic_work_api_requests",
            "Upstream API requests by HTTP status code, or error / timeout.",
            labels=[ENV, "code"],
        )
        self.info = GaugeMetricFamily(
            "anthropic_work_environment_info",
            "Always 1; the environment's display name.",
            labels=[ENV, "name"],
        )

    def all(self) -> list[Metric]:
        return [
            self.items,
            self.heartbeat_age,
            self.heartbeat_age_max,
            self.without_heartbeat,
            self.state_age,
            self.state_age_max,
            self.success,
            self.duration,
            self.requests,
            self.info,
        ]

    def add(self, result: EnvironmentResult) -> None:
        env = result.environment
        self.info.add_metric([env.id, env.name], 1)
        self.success.add_metric([env.id], 1 if result.summary is not None else 0)
        self.duration.add_metric([env.id], result.duration_seconds)
        if result.summary is not None:
            self._add_summary(env.id, result.summary)

    def _add_summary(self, env_id: str, s: EnvironmentSummary) -> None:
        for state, count in s.items.items():
            self.items.add_metric([env_id, state], count)
        for state, dist in s.heartbeat_age.items():
            _add_distribution(self.heartbeat_age, self.heartbeat_age_max, [env_id, state], dist)
            self.without_heartbeat.add_metric([env_id, state], s.without_heartbeat[state])
        for state, dist in s.state_age.items():
            _add_distribution(self.state_age, self.state_age_max, [env_id, state], dist)


def _add_distribution(
    histogram: GaugeHistogramMetricFamily,
    maximum: GaugeMetricFamily,
    labels: list[str],
    dist: AgeDistribution,
) -> None:
    buckets = [(floatToGoString(bound), count) for bound, count in dist.cumulative()]
    histogram.add_metric(labels, buckets, dist.total)
    maximum.add_metric(labels, dist.maximum)
