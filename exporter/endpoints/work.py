"""`GET /v1/environments/{id}/work`: every page, folded into per-state counts and ages.

Pages are folded as they arrive and dropped, so memory holds one page at a
time: into the snapshot of this listing (counts, ages, metadata breakdown) and
into its transitions (`flow.FlowFold`), which are committed to the long-lived
`FlowLedger` only when the whole listing succeeds. The listing ends when
`next_page` is null or empty; a cursor that repeats or more than `max_pages`
pages end it as a failure, never as an endless loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

from exporter.api.codec import UpstreamFormatError, page_params, parse_work_page, work_path
from exporter.config.model import BreakdownConfig, BucketConfig, Config, Credentials, Environment, Thresholds
from exporter.folds.flow import FlowFold, FlowLedger
from exporter.folds.work import ATTENTION_ITEMS, OTHER, Aggregator, WorkSummary
from exporter.results import SourceFailed
from exporter.running.sources import Fetch, WallClock

log = logging.getLogger("exporter.sources.work")


class WorkSource:
    """Lists one environment's work items into a WorkSummary."""

    name = "work"

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
        self.page_size = page_size
        self.max_pages = max_pages
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
        path = work_path(env.id)
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
        repeats = RepeatGuard()
        cursor: str | None = None
        for _ in range(self.max_pages):
            body = await fetch(path, page_params(self.page_size, cursor))
            arrived = self.wall_clock()
            try:
                page = parse_work_page(body, keys)
            except UpstreamFormatError as exc:  # a 200 that is not a listing page
                raise SourceFailed("invalid_response", f"HTTP 200 but not a work listing: {exc}") from None
            del body
            aggregator.add_page(page.items, arrived)
            flow.add(page.items, arrived)
            if page.next_page is None:
                break
            if repeats.seen(page.next_page):
                raise SourceFailed(
                    "repeated_cursor",
                    "the API returned a next_page cursor it had already returned; "
                    "stopped to avoid an endless loop",
                )
            cursor = page.next_page
        else:
            raise SourceFailed(
                "too_many_pages",
                f"more than api.max_pages={self.max_pages} pages; raise api.max_pages or api.page_size",
            )
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


class RepeatGuard:
    """Tells a cursor that comes back, in constant memory whatever the number of pages.

    The last `window` cursors are compared exactly, so a short loop is caught at
    once; a longer one is caught by Brent's cycle detection (one saved cursor,
    replaced at every power of two steps) within a few times its length.
    """

    def __init__(self, window: int = 16):
        self.recent: deque[str] = deque(maxlen=window)
        self.saved: str | None = None
        self.power, self.steps = 1, 0

    def seen(self, cursor: str) -> bool:
        if cursor == self.saved or cursor in self.recent:
            return True
        self.recent.append(cursor)
        self.steps += 1
        if self.steps == self.power:
            self.saved, self.power, self.steps = cursor, self.power * 2, 0
        return False
