"""The latest result of every watched environment: written by the engine alone, read by the rest.

Results flow one way. The engine `put`s each listing's result here as it ends, and nothing
else writes. The exposition reads results when a scrape asks, and learns which changed
from `changed()`, a feed for one reader (the web side's renderer, which renders new
results ahead of the next scrape); the landing page reads `summary()`. What is kept is
bounded by the watched set: a result of an environment no longer watched (a listing of a
replaced generation that ends late) is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from exporter.results import EnvironmentResult

NO_COUNTS: Mapping[str, int] = MappingProxyType({})


class Summary(NamedTuple):
    """An environment's latest listing, as the landing page shows it."""

    success: bool
    reasons: tuple[str, ...]  # why its sources failed, sorted; () when none did
    finished_at: float  # Unix seconds
    items: Mapping[str, int]  # items per state, from the primary source's value


class ResultStore:
    """The latest result per environment id, and when it last listed successfully. Long-lived.

    `counts` reads the items per state from the primary source's value (the endpoint that
    makes it says how), for the landing page's summary.
    """

    def __init__(self, counts: Callable[[EnvironmentResult], Mapping[str, int]] = lambda _: NO_COUNTS):
        self.counts = counts
        self._latest: dict[str, EnvironmentResult] = {}
        self._last_success: dict[str, float] = {}
        self._watched: set[str] | None = None  # None until the first generation says
        self._changed: set[str] = set()
        self._wakeup = asyncio.Event()

    def put(self, result: EnvironmentResult) -> None:
        """A listing's result as it ends: the engine's, and only the engine's."""
        env_id = result.environment.id
        if self._watched is not None and env_id not in self._watched:
            return  # a late listing of an environment no longer watched: nothing outgrows the watched
        if self._latest.get(env_id) is result:
            return  # the same answer again (an environment without a key): nothing changed
        self._latest[env_id] = result
        if result.success:
            self._last_success[env_id] = result.finished_at
        self._changed.add(env_id)
        self._wakeup.set()

    def latest(self, environment_id: str) -> EnvironmentResult | None:
        return self._latest.get(environment_id)

    def last_success(self, environment_id: str) -> float | None:
        """Unix time the environment's last successful listing ended, if it ever did."""
        return self._last_success.get(environment_id)

    def summary(self, environment_id: str) -> Summary | None:
        """The latest listing's outcome and counts, or None before the first one ends."""
        result = self._latest.get(environment_id)
        if result is None:
            return None
        reasons = tuple(sorted({failure.reason for failure in result.failures.values()}))
        return Summary(result.success, reasons, result.finished_at, self.counts(result))

    async def changed(self) -> set[str]:
        """The environments with a new result since the last call; waits for one (one reader)."""
        await self._wakeup.wait()
        self._wakeup.clear()
        changed, self._changed = self._changed, set()
        return changed

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop environments no longer watched, so the store stays the size of the config."""
        self._watched = environment_ids
        self._changed &= environment_ids
        for table in (self._latest, self._last_success):
            for env_id in set(table) - environment_ids:
                del table[env_id]
