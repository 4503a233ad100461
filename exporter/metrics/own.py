"""The exporter's own state: its version and whether its config loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.api.budget import RequestBudget
from exporter.config.shard import Shard
from exporter.running.policies import RefreshSchedule
from exporter.running.reload import ReloadState


class BuildInfoCollector(Collector):
    """`anthropic_work_exporter_build_info{version="0.1.0"} 1.0`, this replica's shard, and how many
    environments it watches of how many there are in every shard (asked at each scrape), so that
    rules can tell when the shards disagree or leave environments unwatched."""

    def __init__(
        self,
        shard: Shard | None = None,
        watched: Callable[[], int] | None = None,
        known: Callable[[], int] | None = None,
    ):
        self.shard = shard or Shard()
        self.watched = watched
        self.known = known

    def describe(self) -> Iterator[Metric]:
        yield from _build_info()

    def collect(self) -> Iterator[Metric]:
        info, shard, shards, watched, known = _build_info()
        info.add_metric([__version__], 1)
        shard.add_metric([str(self.shard.index), str(self.shard.total)], 1)
        shards.add_metric([], self.shard.total)
        if self.watched is not None:
            watched.add_metric([], self.watched())
        if self.known is not None:
            known.add_metric([], self.known())
        yield from (info, shard, shards, watched, known)


def _build_info() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "anthropic_work_exporter_build_info",
            "Always 1; the exporter's version as a label.",
            labels=["version"],
        ),
        GaugeMetricFamily(
            "anthropic_work_exporter_shard_info",
            "Always 1; the share of environments this replica watches (--shard.index of --shard.total).",
            labels=["index", "total"],
        ),
        GaugeMetricFamily(
            "anthropic_work_exporter_shards",
            "The number of shards this replica was started with (--shard.total).",
        ),
        GaugeMetricFamily(
            "anthropic_work_exporter_watched_environments",
            "Environments this replica lists: configured and discovered ones, in its shard.",
        ),
        GaugeMetricFamily(
            "anthropic_work_exporter_known_environments",
            "Environments configured and discovered in every shard: what all the replicas together "
            "must list.",
        ),
    )


class SchedulerCollector(Collector):
    """`anthropic_work_exporter_scheduler_restarts_total 0.0`: the background scheduler failed and was
    started again (each restart is logged with its traceback)."""

    def __init__(self, schedule: RefreshSchedule):
        self.schedule = schedule

    def describe(self) -> Iterator[Metric]:
        yield _scheduler_restarts()

    def collect(self) -> Iterator[Metric]:
        restarts = _scheduler_restarts()
        restarts.add_metric([], self.schedule.restarts)
        yield restarts


def _scheduler_restarts() -> CounterMetricFamily:
    return CounterMetricFamily(
        "anthropic_work_exporter_scheduler_restarts",
        "Times the background refresh scheduler failed and was started again (background mode).",
    )


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


class BudgetCollector(Collector):
    """`anthropic_work_budget_wait_seconds_total 12.5`: time requests waited for the request budget."""

    def __init__(self, budget: RequestBudget):
        self.budget = budget

    def describe(self) -> Iterator[Metric]:
        yield from _budget_families()

    def collect(self) -> Iterator[Metric]:
        waited, rate = _budget_families()
        waited.add_metric([], self.budget.waited_seconds)
        rate.add_metric([], self.budget.rate)
        yield from (waited, rate)


def _budget_families() -> tuple[CounterMetricFamily, GaugeMetricFamily]:
    return (
        CounterMetricFamily(
            "anthropic_work_budget_wait_seconds",
            "Seconds upstream requests spent waiting for the request budget (api.max_requests_per_second) "
            "or for a 429 / retry-after pause, in all.",
        ),
        GaugeMetricFamily(
            "anthropic_work_budget_requests_per_second",
            "The request budget: upstream requests a second for all environments together; 0 is no limit.",
        ),
    )
