"""Fold work items into per-state counts and age distributions, page by page.

Pure: no I/O, no clock of its own. Each page comes with the instant it arrived
(Unix seconds), and its items' ages are measured against that instant, so the
last pages of a long listing do not look younger than they are; a test passes
whatever instants it likes. Memory is bounded by the number of states, buckets
and metadata values, never by the number of items: states the exporter does not
know are counted under their own names up to `max_unknown_states`, and past that
under `OTHER`; metadata values likewise up to `max_values` per key.

The same pass finds the items that need attention (`Attention`: queued too long,
heartbeat stale, never heartbeated past the lease, stopping too long, by the alerts'
own `Thresholds`), counted exactly and the oldest few of each kept, and counts the
implausible timestamps: one more than `clock_skew` ahead of the page's arrival, or
earlier than the timestamp its step starts from (acknowledged before created, started
before acknowledged, stopped before started or before the stop was requested).
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.api.codec import (
    EVENT_FIELDS,
    HEARTBEAT_FIELD,
    HEARTBEAT_STATES,
    KNOWN_STATES,
    STATE_SINCE_EVENT,
    STATE_SINCE_FIELD,
    WorkItem,
)
from exporter.config.schema import Thresholds

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


class Noted(NamedTuple):
    """One item that needs attention, as the debug page shows it."""

    since: float  # what it is ranked by (Unix seconds): the older, the sooner it is shown
    work_id: str
    session_id: str | None
    state: str
    ages: tuple[tuple[str, float], ...]  # (what, seconds), e.g. ("heartbeat", 412.0)
    labels: tuple[tuple[str, str], ...]  # breakdown metadata: (key, value)


# The kinds of attention, in the order the debug page shows them.
QUEUED = "queued"  # queued longer than thresholds.queue_wait_too_long
STALE_HEARTBEAT = "stale_heartbeat"  # heartbeat older than thresholds.stale_heartbeat
NO_HEARTBEAT = (
    "no_heartbeat"  # never heartbeated, in its state longer than thresholds.starting_without_heartbeat
)
STUCK_STOPPING = "stuck_stopping"  # stopping longer than thresholds.stuck_stopping
ATTENTION_KINDS = (QUEUED, STALE_HEARTBEAT, NO_HEARTBEAT, STUCK_STOPPING)
ATTENTION_ITEMS = 20  # of each kind, kept by every listing (the debug page may ask more of its own)


class Attention:
    """The items that need attention: an exact count of each kind, and the `limit` oldest of each,
    chosen page by page in bounded memory (a heap per kind, its youngest on top to be dropped)."""

    def __init__(self, limit: int = ATTENTION_ITEMS):
        self.limit = limit
        self.counts = dict.fromkeys(ATTENTION_KINDS, 0)
        # Per kind, the kept items as (-since, order, item): the youngest kept on top, to be dropped.
        self.heaps: dict[str, list[tuple[float, int, Noted]]] = {kind: [] for kind in ATTENTION_KINDS}
        self._order = itertools.count()

    def keep(self, kind: str, noted: Noted) -> None:
        heap = self.heaps[kind]
        entry = (-noted.since, next(self._order), noted)
        if len(heap) < self.limit:
            heapq.heappush(heap, entry)
        else:
            heapq.heapreplace(heap, entry)

    def oldest(self, kind: str) -> list[Noted]:
        return [noted for _, _, noted in sorted(self.heaps[kind], key=lambda entry: (-entry[0], entry[1]))]


@dataclass
class WorkSummary:
    """Everything the metrics show about one environment's listing."""

    items: dict[str, int]
    heartbeat_age: dict[str, AgeDistribution]
    without_heartbeat: dict[str, int]
    without_heartbeat_age_max: dict[str, float]  # the longest time in state among those
    state_age: dict[str, AgeDistribution]
    unparseable: dict[str, int]  # items per timestamp field whose value could not be parsed
    implausible: dict[str, int]  # items per timestamp field in the future or before its step began
    attention: Attention = field(default_factory=Attention)
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
        *,
        thresholds: Thresholds | None = None,
        attention_items: int = ATTENTION_ITEMS,
        clock_skew: float = 60.0,
    ):
        self.max_unknown_states = max_unknown_states
        self.metadata_keys = metadata_keys
        self.max_values = max_values
        self.thresholds = thresholds or Thresholds()
        self.clock_skew = clock_skew
        self._values: list[set[str]] = [set() for _ in metadata_keys]  # the values kept, per key
        self._summary = WorkSummary(
            items=dict.fromkeys(KNOWN_STATES, 0),
            heartbeat_age={s: AgeDistribution(heartbeat_bounds) for s in HEARTBEAT_STATES},
            without_heartbeat=dict.fromkeys(HEARTBEAT_STATES, 0),
            without_heartbeat_age_max=dict.fromkeys(HEARTBEAT_STATES, 0.0),
            state_age={s: AgeDistribution(state_bounds) for s in STATE_SINCE_FIELD},
            unparseable=dict.fromkeys(TIMESTAMP_FIELDS, 0),
            implausible=dict.fromkeys(TIMESTAMP_FIELDS, 0),
            attention=Attention(attention_items),
        )

    def add_page(self, items: Iterable[WorkItem], now: float) -> None:
        """Count one page; `now` is when it arrived, in Unix seconds.

        The hot loop, once per item: lookups hoisted, an age observed in place rather than
        through `AgeDistribution.observe` (the same arithmetic: a negative age counts as 0,
        buckets are upper-inclusive), attention and plausibility checked on what is at hand.
        """
        s = self._summary
        counts, heartbeat_age, state_age, unparseable = s.items, s.heartbeat_age, s.state_age, s.unparseable
        without, without_max = s.without_heartbeat, s.without_heartbeat_age_max
        since_index, breakdown = _SINCE_INDEX, self._breakdown if self.metadata_keys else None
        limits, attention = self.thresholds, s.attention
        queue_limit, stale_limit = limits.queue_wait_too_long, limits.stale_heartbeat
        lease_limit, stopping_limit = limits.starting_without_heartbeat, limits.stuck_stopping
        # Counted, and kept while the heap has room or the item is older than its youngest.
        noted, kept = attention.counts, attention.limit
        queued_heap, stale_heap = attention.heaps[QUEUED], attention.heaps[STALE_HEARTBEAT]
        silent_heap, stopping_heap = attention.heaps[NO_HEARTBEAT], attention.heaps[STUCK_STOPPING]
        future = now + self.clock_skew  # later than this is no clock skew: implausible
        for item in items:
            state = item.state
            if state not in counts:
                state = self._unknown(state)
            counts[state] += 1
            events = item.events
            c, a, st, r, p = events
            # Implausible: in the future, or a step that ends before it began. Most items need
            # only the first comparison of each pair.
            if (
                (c is not None and c > future)
                or (a is not None and (a > future or (c is not None and a < c)))
                or (st is not None and (st > future or (a is not None and st < a)))
                or (r is not None and r > future)
                or (
                    p is not None and (p > future or (st is not None and p < st) or (r is not None and p < r))
                )
                or (item.latest_heartbeat is not None and item.latest_heartbeat > future)
            ):
                self._implausible(item, future)
            index = since_index.get(state)
            since = None if index is None else events[index]
            age = 0.0
            if since is not None:
                dist = state_age[state]
                age = now - since
                if age < 0:  # the server's clock is ahead of ours
                    age = 0.0
                dist.counts[bisect_left(dist.bounds, age)] += 1
                dist.total += age
                if age > dist.maximum:
                    dist.maximum = age
                if state == "queued":
                    if age > queue_limit:
                        noted[QUEUED] += 1
                        if len(queued_heap) < kept or since < -queued_heap[0][0]:
                            self._keep(QUEUED, since, item, state, (("waiting", age),))
                elif state == "stopping" and age > stopping_limit:
                    noted[STUCK_STOPPING] += 1
                    if len(stopping_heap) < kept or since < -stopping_heap[0][0]:
                        self._keep(STUCK_STOPPING, since, item, state, (("stopping", age),))
            if item.unparseable:
                for name in item.unparseable:
                    unparseable[name] += 1
            beats = heartbeat_age.get(state)
            if beats is not None:
                beat = item.latest_heartbeat
                if beat is not None:
                    beat_age = now - beat
                    if beat_age < 0:
                        beat_age = 0.0
                    beats.counts[bisect_left(beats.bounds, beat_age)] += 1
                    beats.total += beat_age
                    if beat_age > beats.maximum:
                        beats.maximum = beat_age
                    if beat_age > stale_limit:
                        noted[STALE_HEARTBEAT] += 1
                        if len(stale_heap) < kept or beat < -stale_heap[0][0]:
                            ages = (
                                (("heartbeat", beat_age), ("in state", age))
                                if since is not None
                                else (("heartbeat", beat_age),)
                            )
                            self._keep(STALE_HEARTBEAT, beat, item, state, ages)
                elif HEARTBEAT_FIELD not in item.unparseable:  # a garbled heartbeat is not "none yet"
                    without[state] += 1
                    if since is not None:
                        if age > without_max[state]:
                            without_max[state] = age
                        if age > lease_limit:
                            noted[NO_HEARTBEAT] += 1
                            if len(silent_heap) < kept or since < -silent_heap[0][0]:
                                self._keep(NO_HEARTBEAT, since, item, state, (("in state", age),))
            if breakdown is not None:
                breakdown(item, state)

    def _implausible(self, item: WorkItem, future: float) -> None:
        """Count each of the item's timestamp fields that is in the future or before its step began."""
        implausible = self._summary.implausible
        c, a, st, r, p = item.events
        for name, stamped, began in (
            (EVENT_FIELDS[0], c, None),
            (EVENT_FIELDS[1], a, c),
            (EVENT_FIELDS[2], st, a),
            (EVENT_FIELDS[3], r, None),
            (HEARTBEAT_FIELD, item.latest_heartbeat, None),
        ):
            if stamped is not None and (stamped > future or (began is not None and stamped < began)):
                implausible[name] += 1
        if p is not None and (p > future or (st is not None and p < st) or (r is not None and p < r)):
            implausible[EVENT_FIELDS[4]] += 1

    def _keep(
        self, kind: str, since: float, item: WorkItem, state: str, ages: tuple[tuple[str, float], ...]
    ) -> None:
        labels = tuple(
            (key, value) for key, value in zip(self.metadata_keys, item.labels, strict=False) if value
        )
        self._summary.attention.keep(kind, Noted(since, item.id, item.session, state, ages, labels))

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
