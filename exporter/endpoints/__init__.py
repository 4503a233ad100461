"""Every upstream endpoint read per environment: its source and its collectors, in one table.

Adding an endpoint is a source module (request, parse, fold: `sources/`), a
collector module (`collectors/`), and one line in `ENDPOINTS`. The first endpoint
is the primary one: its outcome is the environment's `scrape_success`.

A source is built per config generation (it may read the config); collectors are
built per render, from the results they show and what outlives a reload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client.registry import Collector

from exporter.config.model import Config
from exporter.endpoints.flow_collectors import FlowCollector
from exporter.endpoints.stats import StatsSource
from exporter.endpoints.stats_collectors import StatsCollector
from exporter.endpoints.work import WorkSource
from exporter.endpoints.work_collectors import WorkCollector
from exporter.folds.flow import FlowLedger
from exporter.results import EnvironmentResult
from exporter.running.sources import Source, WallClock


@dataclass(frozen=True)
class Shared:
    """What sources and collectors may use besides the config: long-lived, passed in."""

    ledger: FlowLedger
    wall_clock: WallClock


class Endpoint(NamedTuple):
    source: Callable[[Config, Shared], Source[Any]]
    collectors: Callable[[Sequence[EnvironmentResult], Shared], list[Collector]]


def _ids(results: Sequence[EnvironmentResult]) -> list[str]:
    return [result.environment.id for result in results]


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        lambda config, shared: WorkSource.from_config(config, shared.ledger, shared.wall_clock),
        lambda results, shared: [WorkCollector(results), FlowCollector(shared.ledger, _ids(results))],
    ),
    Endpoint(
        lambda config, shared: StatsSource(shared.wall_clock),
        lambda results, shared: [StatsCollector(results)],
    ),
)
