"""The stats source's metrics: queue depth, pending work, the oldest queued item, workers polling."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.endpoints.stats import StatsResult, StatsSource
from exporter.results import EnvironmentResult

ENV = "environment_id"


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
            value: StatsResult | None = result.values.get(StatsSource.name)
            success.add_metric([env_id], 0 if value is None else 1)
            if value is None:
                continue
            stats = value.stats
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
