"""The exporter's own state: its version and whether its config loaded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__


class BuildInfoCollector(Collector):
    """`anthropic_work_exporter_build_info{version="0.1.0"} 1.0`"""

    def describe(self) -> Iterator[Metric]:
        yield _build_info()

    def collect(self) -> Iterator[Metric]:
        info = _build_info()
        info.add_metric([__version__], 1)
        yield info


def _build_info() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "anthropic_work_exporter_build_info",
        "Always 1; the exporter's version as a label.",
        labels=["version"],
    )


@dataclass
class ReloadState:
    """What the last (re)load of the config did; the reloader writes it, the collector reads it."""

    successful: bool = True
    last_success_timestamp: float = 0.0


class ReloadCollector(Collector):
    """`anthropic_work_exporter_config_last_reload_successful 1.0`"""

    def __init__(self, state: ReloadState):
        self.state = state

    def describe(self) -> Iterator[Metric]:
        yield from _reload_families()

    def collect(self) -> Iterator[Metric]:
        successful, timestamp = _reload_families()
        successful.add_metric([], 1 if self.state.successful else 0)
        timestamp.add_metric([], self.state.last_success_timestamp)
        yield from (successful, timestamp)


def _reload_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "anthropic_work_exporter_config_last_reload_successful",
            "1 if the last load or reload of the config (and web config) worked, else 0.",
        ),
        GaugeMetricFamily(
            "anthropic_work_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load or reload of the config.",
        ),
    )
