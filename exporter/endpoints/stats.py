"""`GET /v1/environments/{id}/work/stats`: the queue as the API counts it, declared as one endpoint.

Asked with the environment's `stats_credentials` when configured, else with its
listing credentials (the SDK does not say which kind this endpoint accepts). One GET,
decoded (`declaration.OneRequest`); its failure costs `stats_success` only, never the
listing beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.api.codec import STATS_PATH, QueueStats, parse_stats
from exporter.endpoints.declaration import Endpoint, Fetched, OneRequest, State, stats_credentials
from exporter.results import EnvironmentResult
from exporter.running.sources import WallClock
from exporter.simulator import routes

ENV = "environment_id"
STATS_NAME = "stats"


class StatsCollector(Collector):
    """From `GET .../work/stats`, per environment; left out (but for stats_success 0) when it failed.

    Sample line::

        anthropic_work_queue_depth{environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW"} 12.0
    """

    def __init__(self, results: Sequence[EnvironmentResult]):
        self.results = results

    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        success, depth, pending, oldest, workers = families = _families()
        for result in self.results:
            if result.pending:  # not listed yet (background mode)
                continue
            env_id = result.environment.id
            value: Fetched | None = result.values.get(STATS_NAME)
            success.add_metric([env_id], 0 if value is None else 1)
            if value is None:
                continue
            stats: QueueStats = value.value
            depth.add_metric([env_id], stats.depth)
            pending.add_metric([env_id], stats.pending)
            if not stats.oldest_unparseable:
                age = (
                    0.0
                    if stats.oldest_queued_at is None
                    else max(0.0, value.arrived - stats.oldest_queued_at)
                )
                oldest.add_metric([env_id], age)
            if stats.workers_polling is not None:
                workers.add_metric([env_id], stats.workers_polling)
        yield from families


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "anthropic_work_stats_success",
            "1 if this environment's work/stats request succeeded; when 0 the queue metrics are left out.",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_queue_depth",
            "Work items waiting to be picked up (work/stats depth).",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_queue_pending",
            "Work items polled by a worker but not yet acknowledged (work/stats pending).",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_queue_oldest_age_seconds",
            "Seconds since the oldest queued or pending item was created (work/stats oldest_queued_at); "
            "0 when the queue is empty.",
            labels=[ENV],
        ),
        GaugeMetricFamily(
            "anthropic_work_workers_polling",
            "Workers that polled in the last 30 s (work/stats workers_polling); absent when the API "
            "does not know (workers that send no worker id).",
            labels=[ENV],
        ),
    )


def _collectors(results: Sequence[EnvironmentResult], state: State) -> list[Collector]:
    return [StatsCollector(results)]


STATS = Endpoint(
    name=STATS_NAME,
    path=STATS_PATH,
    decode=parse_stats,
    collectors=_collectors,
    simulate=routes.WORK_STATS,
    credentials=stats_credentials,
)


class StatsSource(OneRequest):
    """The work/stats source on its own, for tests that list it beside a work source of theirs."""

    def __init__(self, wall_clock: WallClock):
        super().__init__(STATS, wall_clock)
