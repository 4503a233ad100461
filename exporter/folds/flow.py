"""Transitions and flow histograms from timestamps, each transition counted exactly once.

The API has no events, only timestamps: an item's `acknowledged_at` says when it
was acknowledged. The exporter turns them into counters (`transitions_total` per
event) and histograms of the steps they end (queue wait, start, run, stop).

**The rule.** A successful listing that starts at `S` (our clock) records a
watermark `W = S - clock_skew`: every transition stamped at or before `W` has
happened before the listing began, even if the API's clock runs up to
`clock_skew` seconds behind ours, so this listing saw it (if its item is still
listed). The next successful listing counts a transition it sees if it is
stamped after the previous `W` and is not among the previous mark's `recent`
transitions: those stamped after that `W` which an earlier listing has already
counted (or, for the first listing after start, taken as the baseline).

Pagination is not a snapshot, so the rule holds two more ways:

- an item on two pages of one listing (it moved while the listing paged) has each
  transition counted once: a listing remembers what it has counted (`counted`);
- an item missing from one listing and back in the next is not counted again: a
  mark's `recent` carries the previous mark's transitions still after the new
  watermark, not only those this listing saw.

So each transition is counted at most once, by the first successful listing
that shows it, whatever scrapes, probes or failed listings come between (a
failed listing commits nothing, and its transitions are counted by the next
one). It is missed only if no successful listing shows it while it is within
`clock_skew` of that listing's start, after the previous one: its item vanished
(or was skipped by pagination) in between. The state kept per environment is one
watermark and the transitions stamped after it; a listing adds those it counts:
bounded by the transitions of a time window (`clock_skew` plus one listing),
never by the number of items.

**Implausible timestamps.** A timestamp more than `clock_skew` ahead of the page's
arrival is no clock skew (an upstream clock far ahead, a `9999` "never" sentinel): it
is neither counted nor remembered until it is no longer in the future, so such items
cost no memory. A step that ends before it began (acknowledged before created, stopped
before started, ...) still counts its transition once, but observes nothing in its
histogram: a negative wait is no 0 s wait. `aggregate` counts both kinds per listing.

**Bounded whatever upstream sends.** What is remembered per environment is capped at
`max_recent` transitions (`scrape.max_recent_transitions`); past it the oldest are
forgotten (a forgotten transition could be counted again if its item came back), and
how many is counted (`FlowLedger.forgotten`).

`FlowFold` is the pure part, page by page, with the listing's start passed in;
`FlowLedger` keeps the per-environment state and the totals, long-lived.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.api.codec import EVENTS, WorkItem
from exporter.folds.work import AgeDistribution

# Each histogram: the step between two events, observed when the later one is counted.
STEPS = {
    "queue_wait": ("created", "acknowledged"),
    "start_duration": ("acknowledged", "started"),
    "run_duration": ("started", "stopped"),
    "stop_duration": ("stop_requested", "stopped"),
}
_INDEX = {event: i for i, event in enumerate(EVENTS)}
# For each event index: the (histogram, start event index) pairs it ends.
_ENDS: list[list[tuple[str, int]]] = [[] for _ in EVENTS]
for _name, (_start, _end) in STEPS.items():
    _ENDS[_INDEX[_end]].append((_name, _INDEX[_start]))


@dataclass(frozen=True)
class FlowMark:
    """What the last successful listing of an environment covered."""

    watermark: float
    recent: dict[tuple[str, int], float]  # (item id, event index) -> its stamp, after the watermark


@dataclass
class FlowTotals:
    """The counters and histograms of one environment, since its first successful listing."""

    transitions: dict[str, int]
    steps: dict[str, AgeDistribution]

    @classmethod
    def empty(cls, buckets: dict[str, Sequence[float]]) -> FlowTotals:
        return cls(dict.fromkeys(EVENTS, 0), {name: AgeDistribution(buckets[name]) for name in STEPS})


@dataclass
class FlowFold:
    """One listing's transitions, folded page by page; nothing is committed until it succeeds."""

    previous: FlowMark | None  # None: the first listing, which only sets the baseline
    started: float  # when the listing began, Unix seconds on our clock
    clock_skew: float
    buckets: dict[str, Sequence[float]]
    max_recent: int = 50_000  # transitions remembered: `recent` and `counted` each
    counts: list[int] = field(init=False)
    steps: dict[str, AgeDistribution] = field(init=False)
    recent: dict[tuple[str, int], float] = field(init=False, default_factory=dict)
    # Counted by this listing and stamped at or before its watermark (those after it are in
    # `recent`): a later page showing the item again does not count it twice.
    counted: set[tuple[str, int]] = field(init=False, default_factory=set)
    forgotten: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.counts = [0] * len(EVENTS)
        self.steps = {name: AgeDistribution(self.buckets[name]) for name in STEPS}
        self.watermark = self.started - self.clock_skew

    def add(self, items: Iterable[WorkItem], arrived: float) -> None:
        """One page's items; `arrived` is when the page came: stamps past it plus the skew are implausible."""
        previous = self.previous
        watermark = self.watermark
        future = arrived + self.clock_skew
        # Nothing stamped at or before this is recent here, nor to be counted: most items of a
        # listing, whose every transition is older than the watermarks, are passed over at once.
        floor = watermark if previous is None else min(watermark, previous.watermark)
        recent, counted = self.recent, self.counted
        for item in items:
            events = item.events
            c, a, s, r, p = events
            if (
                (c is None or c <= floor)
                and (a is None or a <= floor)
                and (s is None or s <= floor)
                and (r is None or r <= floor)
                and (p is None or p <= floor)
            ):
                continue
            for i, stamped in enumerate(events):
                if stamped is None or stamped <= floor or stamped > future:  # old, or not yet plausible
                    continue
                key = (item.id, i)
                if stamped > watermark:
                    if key in recent:  # the same item again, on a later page of this listing
                        continue
                    recent[key] = stamped
                    if len(recent) > 2 * self.max_recent:
                        self._forget_oldest()
                elif key in counted:
                    continue
                if previous is None or stamped <= previous.watermark or key in previous.recent:
                    continue  # the baseline, or counted by an earlier listing
                if stamped <= watermark:
                    if len(counted) < self.max_recent:
                        counted.add(key)
                    else:  # past the bound: not remembered (a repeat on a later page counts again)
                        self.forgotten += 1
                self.counts[i] += 1
                for name, start in _ENDS[i]:
                    began = events[start]
                    if began is not None and began <= stamped:  # a step that ends before it began: no time
                        self.steps[name].observe(stamped - began, (item.id, item.session, stamped))

    def _forget_oldest(self) -> None:
        """Keep the newest `max_recent` of `recent`, counting the rest as forgotten."""
        keep = heapq.nlargest(self.max_recent, self.recent.items(), key=lambda entry: entry[1])
        self.forgotten += len(self.recent) - len(keep)
        self.recent.clear()  # in place: `add` holds it
        self.recent.update(keep)

    def mark(self) -> FlowMark:
        """What this listing covered: its watermark, and every transition known after it."""
        recent = dict(self.recent)
        if self.previous is not None:  # what an earlier listing saw, and this one may have missed
            for key, stamped in self.previous.recent.items():
                if stamped > self.watermark:
                    recent.setdefault(key, stamped)
        self.recent = recent
        if len(recent) > self.max_recent:
            self._forget_oldest()
        return FlowMark(self.watermark, self.recent)


class FlowLedger:
    """Per environment: the last successful listing's mark and the totals. Survives reloads."""

    def __init__(self) -> None:
        self._marks: dict[str, FlowMark] = {}
        self._totals: dict[str, FlowTotals] = {}
        self.forgotten: dict[str, int] = {}  # transitions forgotten past the bound, per environment

    def mark(self, environment_id: str) -> FlowMark | None:
        return self._marks.get(environment_id)

    def totals(self, environment_id: str) -> FlowTotals | None:
        """None until the environment's first successful listing."""
        return self._totals.get(environment_id)

    def commit(self, environment_id: str, fold: FlowFold) -> bool:
        """Apply a successful listing's fold, unless another listing committed since it began.

        That can happen only when two listings of one environment overlap (around a
        config reload). Dropping the later one loses nothing: whatever it saw after the
        other's watermark, the next listing counts.
        """
        if self._marks.get(environment_id) is not fold.previous:
            return False
        totals = self._totals.get(environment_id)
        if totals is None or any(totals.steps[n].bounds != fold.buckets[n] for n in STEPS):
            totals = self._totals[environment_id] = FlowTotals.empty(fold.buckets)  # new buckets: start over
        for event, count in zip(EVENTS, fold.counts, strict=True):
            totals.transitions[event] += count
        for name, dist in fold.steps.items():
            totals.steps[name].merge(dist)
        self._marks[environment_id] = fold.mark()
        if fold.forgotten:
            self.forgotten[environment_id] = self.forgotten.get(environment_id, 0) + fold.forgotten
        return True

    def forget_all_but(self, environment_ids: set[str]) -> None:
        for table in (self._marks, self._totals, self.forgotten):
            for env_id in set(table) - environment_ids:
                del table[env_id]
