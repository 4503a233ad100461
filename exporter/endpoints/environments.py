"""`GET /v1/environments`: discovery, every self-hosted, unarchived environment, declared as one endpoint.

An account-wide endpoint: not listed per environment, but by `running.discovery` on its
own timer, with the discovery credentials, page by page (`api.pages`). Its state is the
last successful discovery (`DiscoveryState`), which the watched set is made from; its
metrics show that state on the exporter's own metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.api.codec import ENVIRONMENTS_PATH, parse_environments_page
from exporter.endpoints.declaration import Endpoint, State
from exporter.results import EnvironmentResult
from exporter.running.targets import DiscoveryState
from exporter.simulator import routes


class DiscoveryCollector(Collector):
    """`anthropic_work_discovery_success 1.0`; nothing until discovery has run (or when it is off)."""

    def __init__(self, state: DiscoveryState):
        self.state = state

    def describe(self) -> Iterator[Metric]:
        yield from _discovery_families()

    def collect(self) -> Iterator[Metric]:
        success, last, found, missing, invalid, requests = families = _discovery_families()
        state = self.state
        if state.succeeded is not None:
            success.add_metric([], 1 if state.succeeded else 0)
            found.add_metric([], sum(1 for e in state.environments if e.self_hosted and not e.archived))
            missing.add_metric([], len(state.missing))
            invalid.add_metric([], len(state.invalid))
            if state.last_success_timestamp:
                last.add_metric([], state.last_success_timestamp)
        for code, count in sorted(state.requests.items()):
            requests.add_metric([code], count)
        yield from families


def _discovery_families() -> tuple[
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
]:
    return (
        GaugeMetricFamily(
            "anthropic_work_discovery_success",
            "1 if the last discovery (GET /v1/environments) worked; 0 while it fails and the last known "
            "environments are watched.",
        ),
        GaugeMetricFamily(
            "anthropic_work_discovery_last_success_timestamp_seconds",
            "Unix time of the last successful discovery.",
        ),
        GaugeMetricFamily(
            "anthropic_work_discovered_environments",
            "Self-hosted, unarchived environments discovery watches (all shards'): those the last "
            "successful discovery found, and those missing from it still watched.",
        ),
        GaugeMetricFamily(
            "anthropic_work_discovery_missing_environments",
            "Environments the last successful discovery left out that are still watched, until they have "
            "been missing from discovery.unwatch_after_missing discoveries in a row.",
        ),
        GaugeMetricFamily(
            "anthropic_work_discovery_invalid_environments",
            "Ids the last successful discovery returned that cannot be used safely (not a printable, "
            "path-safe token, . or .., too long, or listed twice); they are skipped and logged once.",
        ),
        CounterMetricFamily(
            "anthropic_work_discovery_requests",
            "Discovery's upstream requests by HTTP status code, or error (connection) / timeout.",
            labels=["code"],
        ),
    )


def _collectors(results: Sequence[EnvironmentResult], state: State) -> list[Collector]:
    return [DiscoveryCollector(state)]


DISCOVERY = Endpoint(
    name="discovery",
    path=ENVIRONMENTS_PATH,
    decode=parse_environments_page,
    collectors=_collectors,
    simulate=routes.ENVIRONMENTS,
    state=DiscoveryState,
    per_environment=False,
)
