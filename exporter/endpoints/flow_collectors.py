"""Transitions and flow histograms, from the FlowLedger: counters that survive scrapes and reloads."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Exemplar, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.folds.flow import STEPS, FlowLedger
from exporter.folds.work import AgeDistribution
from exporter.folds.work import Exemplar as Observed

ENV = "environment_id"
HELP = {
    "queue_wait": "Seconds from created_at to acknowledged_at, observed once per item as it is acknowledged.",
    "start_duration": "Seconds from acknowledged_at to started_at, observed once per item as it starts.",
    "run_duration": "Seconds from started_at to stopped_at, observed once per item as it stops.",
    "stop_duration": "Seconds from stop_requested_at to stopped_at, observed once per item as it stops.",
}


class FlowCollector(Collector):
    """Per environment, from its first successful listing on; the ledger is read, never changed.

    Sample line::

        anthropic_work_transitions_total{environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW",event="started"} 1234.0

    Each bucket of the flow histograms carries an exemplar, in OpenMetrics only: the latest
    item observed in it, as `work_id` and `session_id`::

        anthropic_work_queue_wait_seconds_bucket{environment_id="env_01",le="30.0"} 7.0 \
            # {session_id="sesn_01",work_id="work_01"} 21.5 1.7953488e+09
    """

    def __init__(self, ledger: FlowLedger, environment_ids: list[str]):
        self.ledger = ledger
        self.environment_ids = environment_ids

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        families = _families()
        transitions = families.pop("transitions")
        forgotten = families.pop("forgotten")
        assert isinstance(transitions, CounterMetricFamily) and isinstance(forgotten, CounterMetricFamily)
        for env_id in self.environment_ids:
            totals = self.ledger.totals(env_id)
            if totals is None:  # not listed successfully yet: no counters to start from
                continue
            for event, count in totals.transitions.items():
                transitions.add_metric([env_id, event], count)
            forgotten.add_metric([env_id], self.ledger.forgotten.get(env_id, 0))
            for name, dist in totals.steps.items():
                histogram = families[name]
                assert isinstance(histogram, HistogramMetricFamily)
                histogram.add_metric([env_id], _buckets(dist), dist.total)
        yield transitions
        yield forgotten
        yield from families.values()


# OpenMetrics allows an exemplar 128 characters of label names and values in all; Prometheus
# refuses the whole scrape past that. "work_id" and "session_id" leave 111 for the values.
MAX_WORK_ID, MAX_SESSION_ID = 55, 56


def _buckets(dist: AgeDistribution) -> list[tuple[str, int] | tuple[str, int, Exemplar]]:
    buckets: list[tuple[str, int] | tuple[str, int, Exemplar]] = []
    exemplars = dist.exemplars or [None] * len(dist.counts)
    for (bound, count), seen in zip(dist.cumulative(), exemplars, strict=True):
        le = floatToGoString(bound)
        buckets.append((le, count) if seen is None else (le, count, _exemplar(seen)))
    return buckets


def _exemplar(seen: Observed) -> Exemplar:
    labels = {"work_id": seen.work_id[:MAX_WORK_ID]}
    if seen.session_id:
        labels["session_id"] = seen.session_id[:MAX_SESSION_ID]
    return Exemplar(labels, seen.value, seen.timestamp)


def _families() -> dict[str, Metric]:
    out: dict[str, Metric] = {
        "transitions": CounterMetricFamily(
            "anthropic_work_transitions",
            "Work items that reached `event` (created, acknowledged, started, stop_requested, stopped), "
            "counted once each from the timestamps the API reports.",
            labels=[ENV, "event"],
        ),
        "forgotten": CounterMetricFamily(
            "anthropic_work_transitions_forgotten",
            "Transitions the exporter stopped remembering because more than scrape.max_recent_transitions "
            "were recent at once; a forgotten one may be counted again if its item is listed again.",
            labels=[ENV],
        ),
    }
    for name in STEPS:
        out[name] = HistogramMetricFamily(f"anthropic_work_{name}_seconds", HELP[name], labels=[ENV])
    return out
