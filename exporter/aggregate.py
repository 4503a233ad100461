"""Fold work items into per-state counts and age distributions, page by page.

Pure: no I/O, no clock of its own. `now` (Unix seconds) is fixed when a listing
starts, so every item of one scrape is measured against the same instant, and
a test can pass any instant it likes. Memory is bounded by the number of states
and buckets, never by the number of items.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .models import HEARTBEAT_STATES, KNOWN_STATES, STATE_SINCE_FIELD, WorkItem


@dataclass
class AgeDistribution:
    """Ages observed in one state: per-bucket counts (not cumulative), sum, max."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    maximum: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, age: float) -> None:
        if age < 0:  # the server's clock is ahead of ours
            age = 0.0
        # Buckets are upper-inclusive (le), so the first bound >= age.
        self.counts[bisect_left(self.bounds, age)] += 1
        self.total += age
        if age > self.maximum:
            self.maximum = age

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs ending with (+Inf, count)."""
        out, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class EnvironmentSummary:
    """Everything the metrics show about one environment's listing."""

    items: dict[str, int]
    heartbeat_age: dict[str, AgeDistribution]
    without_heartbeat: dict[str, int]
    state_age: dict[str, AgeDistribution]


class Aggregator:
    """Consumes pages of WorkItems; `summary()` is the result so far."""

    def __init__(self, now: float, heartbeat_bounds: Sequence[float], state_bounds: Sequence[float]):
        self.now = now
        self._summary = EnvironmentSummary(
            items=dict.fromkeys(KNOWN_STATES, 0),
            heartbeat_age={s: AgeDistribution(heartbeat_bounds) for s in HEARTBEAT_STATES},
            without_heartbeat=dict.fromkeys(HEARTBEAT_STATES, 0),
            state_age={s: AgeDistribution(state_bounds) for s in STATE_SINCE_FIELD},
        )

    def add_page(self, items: Iterable[WorkItem]) -> None:
        s, now = self._summary, self.now
        counts, heartbeat_age, state_age = s.items, s.heartbeat_age, s.state_age
        for item in items:
            state = item.state
            counts[state] = counts.get(state, 0) + 1
            if item.state_since is not None:
                state_age[state].observe(now - item.state_since)
            beats = heartbeat_age.get(state)
            if beats is not None:
                if item.latest_heartbeat is not None:
                    beats.observe(now - item.latest_heartbeat)
                elif not item.heartbeat_unparseable:
                    s.without_heartbeat[state] += 1

    def summary(self) -> EnvironmentSummary:
        return self._summary
