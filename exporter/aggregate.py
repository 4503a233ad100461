"""Fold work items into per-state counts and age distributions, page by page.

Pure: no I/O, no clock of its own. Each page comes with the instant it arrived
(Unix seconds), and its items' ages are measured against that instant, so the
last pages of a long listing do not look younger than they are; a test passes
whatever instants it likes. Memory is bounded by the number of states, buckets
and metadata values, never by the number of items: states the exporter does not
know are counted under their own names up to `max_unknown_states`, and past that
under `OTHER`; metadata values likewise up to `max_values` per key.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .models import (
    EVENT_FIELDS,
    HEARTBEAT_FIELD,
    HEARTBEAT_STATES,
    KNOWN_STATES,
    STATE_SINCE_EVENT,
    STATE_SINCE_FIELD,
    WorkItem,
)

# Where unknown states (and metadata values past the cap) go.
OTHER = "__other__"
MISSING = "__missing__"  # an item without the metadata key
MAX_UNKNOWN_STATES = 10
_SINCE_INDEX = STATE_SINCE_EVENT  # state -> the index in WorkItem.events its age runs from
# The timestamp fields whose unparseable values are counted.
TIMESTAMP_FIELDS = (*EVENT_FIELDS, HEARTBEAT_FIELD)


class Exemplar(NamedTuple):
    """An item observed in a bucket: which work, which session, its value, and when (Unix seconds)."""

    work_id: str
    session_id: str | None
    value: float
    timestamp: float


@dataclass
class AgeDistribution:
    """Ages observed in one state: per-bucket counts (not cumulative), sum, max, and, for the flow
    histograms, the latest item observed in each bucket."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    maximum: float = 0.0
    exemplars: list[Exemplar | None] | None = None  # per bucket, once one is given

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, age: float, item: tuple[str, str | None, float] | None = None) -> None:
        """One age; `item` (work id, session id, when) makes it its bucket's exemplar."""
        if age < 0:  # the server's clock is ahead of ours
            age = 0.0
        # Buckets are upper-inclusive (le), so the first bound >= age.
        bucket = bisect_left(self.bounds, age)
        self.counts[bucket] += 1
        self.total += age
        if age > self.maximum:
            self.maximum = age
        if item is not None:
            if self.exemplars is None:
                self.exemplars = [None] * len(self.counts)
            self.exemplars[bucket] = Exemplar(item[0], item[1], age, item[2])

    def merge(self, other: AgeDistribution) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)
        if other.exemplars is not None:  # the newer exemplar of each bucket wins
            mine = self.exemplars if self.exemplars is not None else [None] * len(self.counts)
            self.exemplars = [theirs or kept for theirs, kept in zip(other.exemplars, mine, strict=True)]

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs ending with (+Inf, count)."""
        out, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class WorkSummary:
    """Everything the metrics show about one environment's listing."""

    items: dict[str, int]
    heartbeat_age: dict[str, AgeDistribution]
    without_heartbeat: dict[str, int]
    without_heartbeat_age_max: dict[str, float]  # the longest time in state among those
    state_age: dict[str, AgeDistribution]
    unparseable: dict[str, int]  # items per timestamp field whose value could not be parsed
    # (metadata key, value, state) -> items, for the configured keys only
    by_metadata: dict[tuple[str, str, str], int] = field(default_factory=dict)
    unknown_states_capped: bool = False  # some unknown states were counted as OTHER
    capped_keys: set[str] = field(default_factory=set)  # metadata keys with values counted as OTHER


class Aggregator:
    """Consumes pages of WorkItems; `summary()` is the result so far."""

    def __init__(
        self,
        heartbeat_bounds: Sequence[float],
        state_bounds: Sequence[float],
        metadata_keys: Sequence[str] = (),
        max_values: int = 50,
        max_unknown_states: int = MAX_UNKNOWN_STATES,
    ):
        self.max_unknown_states = max_unknown_states
        self.metadata_keys = metadata_keys
        self.max_values = max_values
        self._values: list[set[str]] = [set() for _ in metadata_keys]  # the values kept, per key
        self._summary = WorkSummary(
            items=dict.fromkeys(KNOWN_STATES, 0),
            heartbeat_age={s: AgeDistribution(heartbeat_bounds) for s in HEARTBEAT_STATES},
            without_heartbeat=dict.fromkeys(HEARTBEAT_STATES, 0),
            without_heartbeat_age_max=dict.fromkeys(HEARTBEAT_STATES, 0.0),
            state_age={s: AgeDistribution(state_bounds) for s in STATE_SINCE_FIELD},
            unparseable=dict.fromkeys(TIMESTAMP_FIELDS, 0),
        )

    def add_page(self, items: Iterable[WorkItem], now: float) -> None:
        """Count one page; `now` is when it arrived, in Unix seconds.

        The hot loop, once per item: lookups hoisted, an age observed in place rather than
        through `AgeDistribution.observe` (the same arithmetic: a negative age counts as 0,
        buckets are upper-inclusive).
        """
        s = self._summary
        counts, heartbeat_age, state_age, unparseable = s.items, s.heartbeat_age, s.state_age, s.unparseable
        without, without_max = s.without_heartbeat, s.without_heartbeat_age_max
        since_index, breakdown = _SINCE_INDEX, self._breakdown if self.metadata_keys else None
        for item in items:
            state = item.state
            if state not in counts:
                state = self._unknown(state)
            counts[state] += 1
            index = since_index.get(state)
            since = None if index is None else item.events[index]
            if since is not None:
                dist = state_age[state]
                age = now - since
                if age < 0:  # the server's clock is ahead of ours
                    age = 0.0
                dist.counts[bisect_left(dist.bounds, age)] += 1
                dist.total += age
                if age > dist.maximum:
                    dist.maximum = age
            if item.unparseable:
                for name in item.unparseable:
                    unparseable[name] += 1
            beats = heartbeat_age.get(state)
            if beats is not None:
                beat = item.latest_heartbeat
                if beat is not None:
                    age = now - beat
                    if age < 0:
                        age = 0.0
                    beats.counts[bisect_left(beats.bounds, age)] += 1
                    beats.total += age
                    if age > beats.maximum:
                        beats.maximum = age
                elif HEARTBEAT_FIELD not in item.unparseable:  # a garbled heartbeat is not "none yet"
                    without[state] += 1
                    if since is not None and now - since > without_max[state]:
                        without_max[state] = now - since
            if breakdown is not None:
                breakdown(item, state)

    def _breakdown(self, item: WorkItem, state: str) -> None:
        s = self._summary
        for key, kept, value in zip(self.metadata_keys, self._values, item.labels, strict=True):
            if value is None:
                value = MISSING
            elif value not in kept:
                if len(kept) < self.max_values:
                    kept.add(value)
                else:
                    s.capped_keys.add(key)
                    value = OTHER
            label = (key, value, state)
            s.by_metadata[label] = s.by_metadata.get(label, 0) + 1

    def _unknown(self, state: str) -> str:
        s = self._summary
        if len(s.items) - len(KNOWN_STATES) < self.max_unknown_states:
            s.items[state] = 0
            return state
        s.unknown_states_capped = True
        s.items.setdefault(OTHER, 0)
        return OTHER

    def summary(self) -> WorkSummary:
        return self._summary
