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

Background mode holds under slow listings, failures of its own and reloads:

- a listing may take longer than the interval, up to `scrape.refresh_timeout_seconds`;
  a turn that comes while the environment is still being listed starts nothing, and
  the served result changes only when a listing ends, so nothing flaps;
- before an environment's first listing ends it is `pending`: neither a success nor a
  failure (`scrape_success` is absent);
- a served result older than twice the interval, or twice its listing's duration when
  that is longer, is a failure (`stale`), never `scrape_success 1`;
- the schedule (each environment's next turn, and which are being listed) outlives a
  reload (`RefreshSchedule`), and a replaced policy lets its listings end rather than
  abandoning them, so a burst of reloads cannot starve any environment;
- the scheduler is supervised: if it raises, that is logged with the traceback,
  counted (`RefreshSchedule.restarts`) and it starts again a second later; one
  environment's turn that raises is that environment's `internal` failure.

Whatever the policy, every listing's result goes to the `ResultStore` as it ends
(the engine hands it over once per listing), and transitions are counted by the
listings themselves, so they stay exactly-once in every mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.config.schema import Environment
from exporter.pace import Pace
from exporter.results import EnvironmentResult, Failure
from exporter.running.engine import Engine
from exporter.running.failures import FailureLog
from exporter.running.isolation import Boundary
from exporter.running.store import ResultStore

log = logging.getLogger("exporter.policy")

SCHEDULER_RESTART_SECONDS = 1.0


class Policy(Protocol):
    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """One result per environment, in order, by `deadline` (event-loop time)."""

    def start(self) -> None:
        """Start whatever runs on its own (the background scheduler)."""

    def retire(self) -> None:
        """A newer config took over: start nothing more (what is in flight may still end)."""

    async def aclose(self, drain: bool = False) -> None:
        """Stop; with `drain`, let the listings in flight end by their own deadlines first."""


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

    def start(self) -> None:
        pass  # it lists only when scraped

    def retire(self) -> None:
        pass  # it lists only for scrapes, which hold their own runtime

    async def aclose(self, drain: bool = False) -> None:
        await self.engine.aclose()


@dataclass
class RefreshSchedule:
    """Background mode's schedule, long-lived: it outlives reloads, so turns keep coming."""

    origin: float | None = None  # event-loop time the first scheduler started: turns are offsets from it
    interval: float = 0.0
    turns: list[tuple[float, str]] = field(default_factory=list)  # a heap of (next turn, environment id)
    scheduled: set[str] = field(default_factory=set)  # the environments in `turns`
    listing: set[str] = field(default_factory=set)  # being listed now, by any config generation
    restarts: int = 0  # times the scheduler raised and was started again


PENDING = Failure("pending", "not listed yet: the first background refresh has not ended")


class BackgroundPolicy:
    """List on a timer, each environment on its own; scrapes read the latest results."""

    def __init__(
        self,
        engine: Engine,
        store: ResultStore,
        environments: Callable[[], Sequence[Environment]],
        interval: float,
        *,
        timeout: float,
        schedule: RefreshSchedule,
        failures: FailureLog,
        boundary: Boundary,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.engine = engine
        self.store = store
        self.environments = environments  # called every turn: the set may change (discovery)
        self.interval = interval
        self.timeout = timeout  # how long one listing may take, from its turn
        self.schedule = schedule
        self.failures = failures
        self.boundary = boundary
        self.wall_clock = wall_clock
        self._pending: dict[str, EnvironmentResult] = {}
        self._stale: dict[str, tuple[EnvironmentResult, EnvironmentResult]] = {}  # latest -> as stale
        self._listings: set[asyncio.Task[EnvironmentResult]] = set()
        self._unscheduled: set[str] = set()  # environments whose scheduling step failed
        self._scheduler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._scheduler = asyncio.get_running_loop().create_task(self._supervise(), name="background refresh")

    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        now = self.wall_clock()
        pace = Pace()
        out = []
        for env in environments:
            out.append(self._served(env, now))
            await pace()
        return out

    def _served(self, env: Environment, now: float) -> EnvironmentResult:
        latest = self.store.latest(env.id)
        if latest is None:
            pending = self._pending.get(env.id)
            if pending is None or pending.environment != env:
                pending = self._pending[env.id] = EnvironmentResult(
                    env, 0.0, now, failures={self.engine.primary: PENDING}, pending=True
                )
            return pending
        self._pending.pop(env.id, None)
        fresh = now - latest.finished_at <= max(2 * self.interval, 2 * latest.duration_seconds)
        if fresh or not latest.values:  # a failure says why already; only numbers go stale
            self._stale.pop(env.id, None)
            return latest
        kept = self._stale.get(env.id)
        if kept is None or kept[0] is not latest:
            age = now - latest.finished_at
            failure = Failure(
                "stale",
                f"the latest listing ended {age:.0f}s ago, more than twice the refresh interval "
                f"({self.interval:g}s) and twice its own duration: the background refresh is not keeping up",
            )
            stale = EnvironmentResult(
                env,
                latest.duration_seconds,
                latest.finished_at,
                {},
                dict.fromkeys(self.engine.names, failure),
            )
            kept = self._stale[env.id] = (latest, stale)
            self.failures.failed(env, self.engine.primary, failure)
        return kept[1]

    def offset(self, environment_id: str) -> float:
        """Where in the interval this environment's turn falls: stable across restarts and replicas."""
        digest = hashlib.sha256(environment_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * self.interval

    async def _supervise(self) -> None:
        while True:
            try:
                await self._schedule()
            except Exception:  # our own bug: logged and counted, and the refresh goes on
                self.schedule.restarts += 1
                log.exception(
                    "background refresh scheduler failed; starting it again",
                    extra={"restarts": self.schedule.restarts},
                )
                await asyncio.sleep(SCHEDULER_RESTART_SECONDS)

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        schedule = self.schedule
        if schedule.origin is None:
            schedule.origin = loop.time()
        if schedule.interval != self.interval:  # a reload changed the interval: every turn anew
            schedule.interval, schedule.turns, schedule.scheduled = self.interval, [], set()
        current: Sequence[Environment] | None = None
        by_id: dict[str, Environment] = {}
        pace = Pace()
        while True:
            now = loop.time()
            environments = self.environments()
            if environments is not current:  # the watched set changed (or this is the first turn)
                current, by_id = environments, {}
                for env in environments:
                    by_id[env.id] = env
                    if env.id not in schedule.scheduled:
                        self._schedule_first(env, now)
                    await pace()
            for env_id in list(self._unscheduled):  # their first turn failed: try again
                if env_id in by_id:
                    self._schedule_first(by_id[env_id], now)
            while schedule.turns and schedule.turns[0][0] <= now:
                _, env_id = heapq.heappop(schedule.turns)
                watched = by_id.get(env_id)
                if watched is None:  # no longer watched
                    schedule.scheduled.discard(env_id)
                    continue
                heapq.heappush(schedule.turns, (self._next_turn(env_id, now), env_id))
                self._turn(watched, now)
                await pace()
            # Wake for the next turn, or within a second to see environments come and go.
            wake = min(schedule.turns[0][0] if schedule.turns else now + 1.0, now + 1.0)
            await asyncio.sleep(max(0.0, wake - loop.time()))

    def _schedule_first(self, env: Environment, now: float) -> None:
        outcome = self.boundary.run(env, "schedule", lambda: self._next_turn(env.id, now, first=True))
        if isinstance(outcome, Failure):
            self._failed(env, outcome)
            self._unscheduled.add(env.id)
            return
        self._unscheduled.discard(env.id)
        heapq.heappush(self.schedule.turns, (outcome, env.id))
        self.schedule.scheduled.add(env.id)

    def _next_turn(self, environment_id: str, now: float, first: bool = False) -> float:
        """This environment's next turn after `now`; the first time, its latest turn not in the future
        (a newcomer is listed at once, not after a backlog), or its first after the origin."""
        phase = (self.schedule.origin or 0.0) + self.offset(environment_id)
        turns = max((now - phase) // self.interval + (0 if first else 1), 0)
        when = phase + turns * self.interval
        while not first and when <= now:  # floating point: now - phase can round to just under a turn
            when += self.interval
        return when

    def _turn(self, env: Environment, now: float) -> None:
        if env.id in self.schedule.listing:  # still being listed: no second listing
            return
        outcome = self.boundary.run(env, "schedule", lambda: self.engine.listing(env, now + self.timeout))
        if isinstance(outcome, Failure):
            self._failed(env, outcome)
            return
        if outcome is None:  # answered without a listing (no key)
            return
        self.schedule.listing.add(env.id)
        self._listings.add(outcome)
        outcome.add_done_callback(lambda task: self._ended(env.id, task))

    def _failed(self, env: Environment, failure: Failure) -> None:
        """A scheduling step of `env` raised: served as its listing's failure until one ends."""
        self.engine.fail(env, failure)

    def _ended(self, environment_id: str, task: asyncio.Task[EnvironmentResult]) -> None:
        self._listings.discard(task)
        self.schedule.listing.discard(environment_id)

    def retire(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()

    async def aclose(self, drain: bool = False) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        if drain:
            await self.engine.drain()
        await self.engine.aclose()
