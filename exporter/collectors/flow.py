"""Transitions and flow histograms, from the FlowLedger: counters that survive scrapes and reloads."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..flow import STEPS, FlowLedger

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
    """

    def __init__(self, ledger: FlowLedger, environment_ids: list[str]):
        self.ledger = ledger
        self.environment_ids = environment_ids

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        families = _families()
        transitions = families.pop("transitions")
        assert isinstance(transitions, CounterMetricFamily)
        for env_id in self.environment_ids:
            totals = self.ledger.totals(env_id)
            if totals is None:  # not listed successfully yet: no counters to start from
                continue
            for event, count in totals.transitions.items():
                transitions.add_metric([env_id, event], count)
            for name, dist in totals.steps.items():
                histogram = families[name]
                assert isinstance(histogram, HistogramMetricFamily)
                buckets = [(floatToGoString(bound), count) for bound, count in dist.cumulative()]
                histogram.add_metric([env_id], buckets, dist.total)
        yield transitions
        yield from families.values()


def _families() -> dict[str, Metric]:
    out: dict[str, Metric] = {
        "transitions": CounterMetricFamily(
            "anthropic_work_transitions",
            "Work items that reached `event` (created, acknowledged, started, stop_requested, stopped), "
            "counted once each from the timestamps the API reports.",
            labels=[ENV, "event"],
        )
    }
    for name in STEPS:
        out[name] = HistogramMetricFamily(f"anthropic_work_{name}_seconds", HELP[name], labels=[ENV])
    return out
