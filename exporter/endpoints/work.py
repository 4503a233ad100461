"""`GET /v1/environments/{id}/work`: every page, folded into per-state counts, ages and transitions.

Pages are folded as they arrive and dropped, so memory holds one page at a
time: into the snapshot of this listing (counts, ages, metadata breakdown, the items
that need attention) and into its transitions (`flow.FlowFold`), which are committed to
the long-lived `FlowLedger` only when the whole listing succeeds. The listing ends when
`next_page` is null or empty; a cursor that repeats or more than `api.max_pages` pages
end it as a failure, never as an endless loop (`api.pages`).

Its metrics: items per state and their ages (`WorkCollector`, from each listing), and
transitions and flow histograms (`FlowCollector`, from the ledger, which survives scrapes
and reloads). The endpoint is declared once, at the end (`WORK`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import aclosing

from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.api.codec import WORK_PATH, Page, UpstreamFormatError, environment_path, parse_work_page
from exporter.api.pages import Pages
from exporter.config.schema import BreakdownConfig, BucketConfig, Config, Credentials, Environment, Thresholds
from exporter.endpoints.declaration import Endpoint, State
from exporter.folds.flow import STEPS, FlowFold, FlowLedger
from exporter.folds.work import ATTENTION_ITEMS, OTHER, AgeDistribution, Aggregator, WorkSummary
from exporter.folds.work import Exemplar as Observed
from exporter.results import EnvironmentResult, SourceFailed
from exporter.running.sources import Fetch, WallClock
from exporter.simulator import routes

log = logging.getLogger("exporter.sources.work")
ENV = "environment_id"
WORK_NAME = "work"


class WorkSource:
    """Lists one environment's work items into a WorkSummary."""

    name = WORK_NAME

    def __init__(
        self,
        page_size: int,
        max_pages: int,
        buckets: BucketConfig,
        breakdown: BreakdownConfig,
        ledger: FlowLedger,
        clock_skew: float,
        wall_clock: WallClock,
        *,
        thresholds: Thresholds | None = None,
        max_recent_transitions: int = 50_000,
    ):
        self.pages = Pages(page_size, max_pages, "raise api.max_pages or api.page_size")
        self.buckets = buckets
        self.breakdown = breakdown
        self.ledger = ledger
        self.clock_skew = clock_skew
        self.wall_clock = wall_clock
        self.thresholds = thresholds or Thresholds()
        self.max_recent_transitions = max_recent_transitions
        self.flow_buckets: dict[str, Sequence[float]] = {
            "queue_wait": buckets.queue_wait_seconds,
            "start_duration": buckets.start_duration_seconds,
            "run_duration": buckets.run_duration_seconds,
            "stop_duration": buckets.stop_duration_seconds,
        }
        self._logged: set[tuple[str, str]] = set()

    @classmethod
    def from_config(cls, config: Config, ledger: FlowLedger, wall_clock: WallClock) -> WorkSource:
        return cls(
            config.api.page_size,
            config.api.max_pages,
            config.buckets,
            config.breakdown,
            ledger,
            config.scrape.clock_skew_seconds,
            wall_clock,
            thresholds=config.thresholds,
            max_recent_transitions=config.scrape.max_recent_transitions,
        )

    def credentials(self, env: Environment) -> Credentials:
        return env.credentials

    async def collect(self, env: Environment, fetch: Fetch, attention: int = ATTENTION_ITEMS) -> WorkSummary:
        """Every page folded as it arrives; `attention` items of each kind that needs it are kept."""
        keys = self.breakdown.metadata_keys
        aggregator = Aggregator(
            self.buckets.heartbeat_age_seconds,
            self.buckets.state_age_seconds,
            keys,
            self.breakdown.max_values,
            thresholds=self.thresholds,
            attention_items=attention,
            clock_skew=self.clock_skew,
        )
        flow = FlowFold(
            self.ledger.mark(env.id),
            self.wall_clock(),
            self.clock_skew,
            self.flow_buckets,
            self.max_recent_transitions,
        )
        path = environment_path(WORK_PATH, env.id)

        def decode(body: bytes) -> tuple[float, Page]:
            arrived = self.wall_clock()  # the page's ages are measured against this
            try:
                return arrived, parse_work_page(body, keys)
            except UpstreamFormatError as exc:  # a 200 that is not a listing page
                raise SourceFailed("invalid_response", f"HTTP 200 but not a work listing: {exc}") from None

        listing = self.pages.pages(lambda params: fetch(path, params), decode, lambda got: got[1].next_page)
        async with aclosing(listing):
            async for arrived, page in listing:
                aggregator.add_page(page.items, arrived)
                flow.add(page.items, arrived)
        self.ledger.commit(env.id, flow)
        summary = aggregator.summary()
        if summary.unknown_states_capped:
            self._once(env, "state", "too many unknown work states; the rest are counted as one")
        for key in summary.capped_keys:
            self._once(env, key, "too many values of a metadata key; the rest are counted as one")
        return summary

    def _once(self, env: Environment, what: str, message: str) -> None:
        if (env.id, what) not in self._logged:
            self._logged.add((env.id, what))
            log.warning(message, extra={"environment_id": env.id, "key": what, "counted_as": OTHER})


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
            summary: WorkSummary | None = result.values.get(WORK_NAME)
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


def _source(endpoint: Endpoint, config: Config, ledger: State, wall_clock: WallClock) -> WorkSource:
    return WorkSource.from_config(config, ledger, wall_clock)


def _collectors(results: Sequence[EnvironmentResult], ledger: State) -> list[Collector]:
    return [WorkCollector(results), FlowCollector(ledger, [result.environment.id for result in results])]


def _counts(summary: WorkSummary) -> Mapping[str, int]:
    return summary.items


WORK = Endpoint(
    name=WORK_NAME,
    path=WORK_PATH,
    decode=parse_work_page,
    collectors=_collectors,
    simulate=routes.WORK,
    source=_source,
    state=FlowLedger,
    version=lambda ledger, environment_id: ledger.mark(environment_id),  # flow renders from the ledger
    counts=_counts,
)
