"""The work source's metrics: items per state, heartbeat and time-in-state ages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.endpoints.work import WorkSource
from exporter.folds.work import AgeDistribution, WorkSummary
from exporter.results import EnvironmentResult

ENV = "environment_id"


class WorkCollector(Collector):
    """Per-environment work metrics from one scrape's results; failed environments are left out.

    Sample line::

        anthropic_work_items{environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW",state="queued"} 4.0
    """

    def __init__(self, results: Sequence[EnvironmentResult]):
        self.results = results

    def describe(self) -> Iterator[Metric]:
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        for result in self.results:
            summary: WorkSummary | None = result.values.get(WorkSource.name)
            if summary is None:
                continue
            env_id = result.environment.id
            for state, count in summary.items.items():
                f.items.add_metric([env_id, state], count)
            for state, dist in summary.heartbeat_age.items():
                _add_distribution(f.heartbeat_age, f.heartbeat_age_max, [env_id, state], dist)
                f.without_heartbeat.add_metric([env_id, state], summary.without_heartbeat[state])
                f.without_heartbeat_age_max.add_metric(
                    [env_id, state], summary.without_heartbeat_age_max[state]
                )
            for state, dist in summary.state_age.items():
                _add_distribution(f.state_age, f.state_age_max, [env_id, state], dist)
            for field, count in summary.unparseable.items():
                f.unparseable.add_metric([env_id, field], count)
            for field, count in summary.implausible.items():
                f.implausible.add_metric([env_id, field], count)
            for (key, value, state), count in sorted(summary.by_metadata.items()):
                f.by_metadata.add_metric([env_id, state, key, value], count)
        yield from f.all()


class _Families:
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
        self.without_heartbeat_age_max = GaugeMetricFamily(
            "anthropic_work_without_heartbeat_age_max_seconds",
            "The longest time in the current state among items that have never heartbeated; 0 when none. "
            "A worker heartbeats right after it acknowledges: a starting item past the 90 s lease "
            "without one has lost its worker.",
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
        self.by_metadata = GaugeMetricFamily(
            "anthropic_work_items_by_metadata",
            "Work items per state and value of each configured metadata key (breakdown.metadata_keys); "
            "__missing__ for items without the key, __other__ past breakdown.max_values values.",
            labels=[ENV, "state", "key", "value"],
        )
        self.unparseable = GaugeMetricFamily(
            "anthropic_work_unparseable_timestamps",
            "Items in this listing whose timestamp field was present but not RFC 3339 "
            "(left out of the ages, still counted per state).",
            labels=[ENV, "field"],
        )
        self.implausible = GaugeMetricFamily(
            "anthropic_work_implausible_timestamps",
            "Items in this listing whose timestamp field lies more than scrape.clock_skew_seconds ahead of "
            "the page's arrival, or before the timestamp its step starts from (acknowledged before "
            "created, stopped before started, ...); they observe no duration and no future transition.",
            labels=[ENV, "field"],
        )

    def all(self) -> list[Metric]:
        return [
            self.items,
            self.heartbeat_age,
            self.heartbeat_age_max,
            self.without_heartbeat,
            self.without_heartbeat_age_max,
            self.state_age,
            self.state_age_max,
            self.by_metadata,
            self.unparseable,
            self.implausible,
        ]


def _add_distribution(
    histogram: GaugeHistogramMetricFamily,
    maximum: GaugeMetricFamily,
    labels: list[str],
    dist: AgeDistribution,
) -> None:
    buckets = [(floatToGoString(bound), count) for bound, count in dist.cumulative()]
    histogram.add_metric(labels, buckets, dist.total)
    maximum.add_metric(labels, dist.maximum)
