"""When to list: refresh policies over a store of the latest results.

A policy answers one question for the HTTP side: "results for these
environments, by this deadline".

- `OnDemandPolicy` (`scrape.mode: on_demand`) lists them now, sharing listings
  already in flight; with `scrape.min_interval_seconds`, a result younger than
  that is served again instead (an HA pair of Prometheus servers, or `/probe`
  beside `/metrics`, then cost one listing, not two).
- `BackgroundPolicy` (`scrape.mode: background`) lists every environment every
  `scrape.refresh_interval_seconds` on its own schedule, spread over the
  interval by a stable hash of its id so that they do not all start at once;
  scrapes answer at once from the latest completed results.

Whatever the policy, every listing's result goes to the `ResultStore` as it ends
(the engine hands it over once per listing), and transitions are counted by the
listings themselves, so they stay exactly-once in every mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .config import Environment
from .engine import Engine, EnvironmentResult
from .failures import Failure


class ResultStore:
    """The latest result per environment id, and when it last listed successfully. Long-lived."""

    def __init__(self) -> None:
        self._latest: dict[str, EnvironmentResult] = {}
        self._last_success: dict[str, float] = {}

    def put(self, result: EnvironmentResult) -> None:
        env_id = result.environment.id
        self._latest[env_id] = result
        if result.success:
            self._last_success[env_id] = result.finished_at

    def latest(self, environment_id: str) -> EnvironmentResult | None:
        return self._latest.get(environment_id)

    def last_success(self, environment_id: str) -> float | None:
        """Unix time the environment's last successful listing ended, if it ever did."""
        return self._last_success.get(environment_id)

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop environments no longer watched, so the store stays the size of the config."""
        for table in (self._latest, self._last_success):
            for env_id in set(table) - environment_ids:
                del table[env_id]


class Policy(Protocol):
    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """One result per environment, in order, by `deadline` (event-loop time)."""

    async def aclose(self) -> None: ...


class OnDemandPolicy:
    """List on every scrape, unless a result younger than `min_interval` seconds is at hand."""

    def __init__(
        self,
        engine: Engine,
        store: ResultStore,
        min_interval: float = 0.0,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.engine = engine
        self.store = store
        self.min_interval = min_interval
        self.wall_clock = wall_clock

    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        fresh: dict[str, EnvironmentResult] = {}
        if self.min_interval > 0:
            now = self.wall_clock()
            for env in environments:
                latest = self.store.latest(env.id)
                if (
                    latest is not None
                    and latest.environment == env
                    and now - latest.finished_at < self.min_interval
                ):
                    fresh[env.id] = latest
        stale = [env for env in environments if env.id not in fresh]
        listed = iter(await self.engine.scrape(stale, deadline)) if stale else iter(())
        return [fresh[env.id] if env.id in fresh else next(listed) for env in environments]

    async def aclose(self) -> None:
        await self.engine.aclose()


PENDING = Failure("pending", "not listed yet: the first background refresh has not ended")


class BackgroundPolicy:
    """List on a timer, each environment on its own; scrapes read the latest results."""

    def __init__(
        self,
        engine: Engine,
        store: ResultStore,
        environments: Callable[[], Sequence[Environment]],
        interval: float,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.engine = engine
        self.store = store
        self.environments = environments  # called every turn: the set may change (discovery)
        self.interval = interval
        self.wall_clock = wall_clock
        self._listings: set[asyncio.Task[list[EnvironmentResult]]] = set()
        self._scheduler = asyncio.get_running_loop().create_task(self._schedule(), name="background refresh")

    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        out = []
        for env in environments:
            latest = self.store.latest(env.id)
            if latest is None:
                latest = EnvironmentResult(env, 0.0, self.wall_clock(), failures={"work": PENDING})
            out.append(latest)
        return out

    def offset(self, environment_id: str) -> float:
        """Where in the interval this environment's turn falls: stable across restarts and replicas."""
        digest = hashlib.sha256(environment_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * self.interval

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        due: dict[str, float] = {}
        while True:
            now = loop.time()
            current = {env.id: env for env in self.environments()}
            for env_id in set(due) - set(current):
                del due[env_id]
            for env_id in set(current) - set(due):
                due[env_id] = started + self.offset(env_id)
                while due[env_id] < now - self.interval:  # a newcomer: its next turn, not a backlog
                    due[env_id] += self.interval
            ready = [current[env_id] for env_id, when in due.items() if when <= now]
            for env in ready:
                due[env.id] += self.interval
                task = loop.create_task(self.engine.scrape([env], now + self.interval))
                self._listings.add(task)
                task.add_done_callback(self._listings.discard)
            # Wake for the next turn, or within a second to see environments come and go.
            wait = min([*due.values(), now + 1.0]) - loop.time()
            await asyncio.sleep(max(0.0, wait))

    async def aclose(self) -> None:
        self._scheduler.cancel()
        for task in list(self._listings):
            task.cancel()
        await asyncio.gather(self._scheduler, *self._listings, return_exceptions=True)
        await self.engine.aclose()
