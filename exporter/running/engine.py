"""The engine: every environment's listing goes through here.

`Engine.scrape(environments, deadline)` lists each environment with every source
(the work listing, `work/stats`), concurrently, and returns one `EnvironmentResult`
per environment by the deadline, whatever happens upstream. It owns:

- **the in-flight table**: a scrape that asks for an environment already being
  listed joins that listing instead of asking the API again. The listing runs
  until the latest deadline of the scrapes waiting for it; each scrape waits only
  until its own deadline.
- **concurrency**: at most `concurrency` environments are listed at once.
  Environments whose last listing ran out of time queue behind the others, so a
  few stuck environments cannot make every healthy one miss the deadline too.
- **the debug page's listings** (`examine`): a debug page joins the environment's
  listing in flight when there is one (a scrape's, or another debug page's), without
  extending its deadline, and reads its whole request log (every listing keeps one);
  otherwise it lists in a pool of its own (`DEBUG_LISTINGS`), so debug pages never take
  a slot a scrape needs. A debug page that gets no slot of that pool by its deadline, or
  finds `DEBUG_WAITING` debug listings already waiting for one, raises `Busy`.
- **sources, each on its own**: each source of an environment runs as its own task
  with the whole deadline, and has its own outcome. A scrape reports each source by
  its own task: a `work/stats` still hanging at the deadline costs `stats` only,
  never a work listing that completed beside it.
- **deadlines**: a listing not done by its deadline is cancelled, which closes
  its connections and frees its slot; its unfinished sources fail with reason
  `deadline`.
- **isolation**: each source's fetch, parse, fold and commit run inside one
  boundary (`_collect`): `SourceFailed` ends it with its reason, anything else is
  `internal` with its traceback (`isolation.py`). Nothing reaches the HTTP response.
- **environments with no key**: answered at once with reason `no_credentials`, the
  same result object every time (so it is rendered once), without a task or a slot:
  20,000 of them cost a scrape almost nothing, and never run out of time.
- **observers**: every failed source is reported to an `EngineObserver` and the
  `FailureLog` once per listing; every listing's result is handed to `on_result`
  once, as it ends.

Requests themselves (headers, budget, retries, counting) are `retrying.RetryingGet`'s.
All times are the running event loop's (monotonic) clock, so tests can run the
engine on a loop whose clock they control.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from exporter.api.requests import RequestLog, RetryingGet
from exporter.config.schema import Environment, missing_key
from exporter.folds.work import ATTENTION_ITEMS
from exporter.pace import Pace
from exporter.redact import Redactor
from exporter.results import EnvironmentResult, Failure, SourceFailed
from exporter.running.failures import FailureLog
from exporter.running.isolation import internal_failure
from exporter.running.sources import Fetch, Source

# Failures that mean "this environment ran out of time", which sends it to the back of the queue.
LATE_REASONS = frozenset({"deadline", "timeout"})
DEADLINE = Failure("deadline", "not finished before the scrape deadline")
NO_VALUES: Mapping[str, Any] = MappingProxyType({})
DEBUG_LISTINGS = 4  # debug pages' own listings at once, beside the scrapes' `concurrency`
DEBUG_WAITING = 16  # debug listings waiting for that pool; past it, a debug page is Busy at once


class Busy(Exception):
    """No debug listing can be had now: the debug pool stayed full. `retry_after` in seconds."""

    def __init__(self, retry_after: float):
        super().__init__(f"every debug listing slot is taken; try again in {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Examined:
    """A debug page's listing: its result, every request it made, and whether it was joined in flight."""

    result: EnvironmentResult
    tries: RequestLog
    joined: bool
    attention: int  # items of each kind needing attention the listing kept


class EngineObserver(Protocol):
    def request(self, environment_id: str, code: str) -> None:
        """One upstream request ended with `code`: an HTTP status, `timeout` or `error`."""

    def failed(self, environment_id: str, source: str, reason: str) -> None:
        """One listing of `source` for the environment ended without a result."""


class EngineCounters:
    """The observer behind the request and failure counters, per environment; long-lived across reloads."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, int]] = {}  # environment_id -> code -> count
        self.failures: dict[
            str, dict[tuple[str, str], int]
        ] = {}  # environment_id -> (source, reason) -> count

    def request(self, environment_id: str, code: str) -> None:
        counts = self.requests.setdefault(environment_id, {})
        counts[code] = counts.get(code, 0) + 1

    def failed(self, environment_id: str, source: str, reason: str) -> None:
        counts = self.failures.setdefault(environment_id, {})
        counts[(source, reason)] = counts.get((source, reason), 0) + 1

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop the counters of environments no longer watched: their series are gone too."""
        for table in (self.requests, self.failures):
            for env_id in set(table) - environment_ids:
                del table[env_id]


class _Listing:
    """One environment being listed: its task, its sources' tasks, the deadline its waiters extend,
    and its request log."""

    def __init__(self, env: Environment, deadline: float, attention: int = ATTENTION_ITEMS):
        self.env = env
        self.deadline = deadline
        self.attention = attention  # items of each kind needing attention to keep
        self.timeout: asyncio.Timeout | None = None
        self.task: asyncio.Task[EnvironmentResult] | None = None
        self.sources: dict[str, asyncio.Task[Any]] = {}  # once it holds a slot
        self.running = False  # it holds a slot: its time is its own
        self.tries = RequestLog()  # its requests, as sent and answered: a debug page may join

    def extend(self, deadline: float, now: float) -> bool:
        """Let it run until `deadline` too; False if it is already past its own (too late to join).

        A listing leaves the in-flight table in the same step as its sources finish (see
        `Engine._run`), so a listing found there still has its timeout running.
        """
        if now >= self.deadline or (self.timeout is not None and self.timeout.expired()):
            return False
        if deadline > self.deadline:
            self.deadline = deadline
            if self.timeout is not None:
                self.timeout.reschedule(deadline)
        return True


class Engine:
    def __init__(
        self,
        sources: Sequence[Source[Any]],
        requests: RetryingGet,
        *,
        concurrency: int,
        observer: EngineObserver,
        failures: FailureLog,
        redactor: Redactor,
        on_result: Callable[[EnvironmentResult], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.sources = list(sources)
        self.names = [s.name for s in self.sources]
        self.primary = self.names[0]
        self.requests = requests
        self.observer = observer
        self.failures = failures
        self.redactor = redactor
        self.on_result = on_result  # each listing's result, once, as it ends: the result store's `put`
        self.wall_clock = wall_clock
        self._slots = asyncio.Semaphore(concurrency)
        self._debug_slots = asyncio.Semaphore(DEBUG_LISTINGS)
        self._inflight: dict[str, _Listing] = {}
        self._debug_inflight: dict[str, _Listing] = {}  # the debug pages' own listings
        self._tasks: set[asyncio.Task[EnvironmentResult]] = set()
        self._late: set[str] = set()
        self._keyless: dict[str, EnvironmentResult] = {}  # the no_credentials result, per environment
        self._keyless_why: dict[str, Mapping[str, Failure]] = {}  # the failures, by why there is no key

    # -- scrapes ---------------------------------------------------------------

    async def scrape(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """Results in the order of `environments`, by `deadline` (event-loop time)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        pace = Pace()
        # Start the environments that were on time last time first: they take the free slots.
        order = sorted(environments, key=lambda env: env.id in self._late)
        listings: dict[str, _Listing | EnvironmentResult] = {}
        for env in order:
            listings[env.id] = self._start(env, deadline)
            await pace()
        pending = [x.task for x in listings.values() if isinstance(x, _Listing) and x.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        results = []
        for env in environments:
            results.append(self._outcome(env, listings[env.id], loop.time() - started))
            await pace()
        return results

    def listing(self, env: Environment, deadline: float) -> asyncio.Task[EnvironmentResult] | None:
        """Start (or join) a listing of `env` without waiting for it; None if it needs no task."""
        started = self._start(env, deadline)
        return started.task if isinstance(started, _Listing) else None

    async def examine(self, env: Environment, deadline: float, attention: int = ATTENTION_ITEMS) -> Examined:
        """A listing of `env` for the debug page, by `deadline`, keeping `attention` items of each kind.

        It joins the listing in flight when there is one, without extending it, and gets its
        whole request log; otherwise it lists in the debug pool, never in a scrape's slot.
        `Busy` when that pool stays full past `deadline`, or too many debug listings wait for it.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        listing = self._inflight.get(env.id) or self._debug_inflight.get(env.id)
        joined = listing is not None and listing.task is not None and not listing.task.done()
        if not joined:
            waiting = sum(1 for other in self._debug_inflight.values() if not other.running)
            if waiting >= DEBUG_WAITING:
                raise Busy(max(1.0, deadline - started))
            listing = self._spawn(_Listing(env, deadline, attention), debug=True)
        assert listing is not None and listing.task is not None
        # Waited for, never cancelled from here: a scrape may be waiting for the same listing.
        await asyncio.wait([listing.task], timeout=max(0.0, deadline - loop.time()))
        if not joined and not listing.running:  # it never got a debug slot
            raise Busy(max(1.0, deadline - started))
        task = listing.task
        if task.done() and not task.cancelled() and task.exception() is None:
            result = task.result()
        else:  # the listing joined is still running for a later deadline: each source so far
            result = self._result(env, loop.time() - started, *self._split(listing.sources))
        return Examined(result, listing.tries, joined, listing.attention)

    def fail(self, env: Environment, failure: Failure) -> None:
        """`env` could not even be scheduled (a step of ours raised): its result is that failure, handed
        on like any listing's, so that the engine stays the one writer of results."""
        if self.on_result is not None:
            self.on_result(EnvironmentResult(env, 0.0, self.wall_clock(), {}, {self.primary: failure}))

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop what is kept for environments no longer watched."""
        for env_id in set(self._keyless) - environment_ids:
            del self._keyless[env_id]
        in_use = {id(result.failures) for result in self._keyless.values()}
        self._keyless_why = {why: f for why, f in self._keyless_why.items() if id(f) in in_use}
        self._late &= environment_ids

    def _start(self, env: Environment, deadline: float) -> _Listing | EnvironmentResult:
        try:
            why = [missing_key(source.credentials(env)) for source in self.sources]
            if all(why):
                return self._without_credentials(env, str(why[0]))
            return self._join(env, deadline)
        except Exception as exc:  # our own bug: this environment's failure, never the scrape's
            result = self._failed_everywhere(env, exc)
            self._record(result, ran=False)
            return result

    def _without_credentials(self, env: Environment, why: str) -> EnvironmentResult:
        failures = self._keyless_failures(why)
        cached = self._keyless.get(env.id)
        if cached is None or cached.environment != env or cached.failures is not failures:
            cached = self._keyless[env.id] = EnvironmentResult(
                env, 0.0, self.wall_clock(), NO_VALUES, failures
            )
        self._record(cached, ran=False)
        return cached

    def _keyless_failures(self, why: str) -> Mapping[str, Failure]:
        """The same failures for every environment without a key for the same reason: 20,000
        environments then hold 20,000 results, not 60,000 objects for the collector to walk."""
        shared = self._keyless_why.get(why)
        if shared is None:
            failure = Failure("no_credentials", f"no key for this environment: {why}")
            shared = self._keyless_why[why] = dict.fromkeys(self.names, failure)
        return shared

    def _outcome(
        self, env: Environment, listing: _Listing | EnvironmentResult, waited: float
    ) -> EnvironmentResult:
        """What this scrape reports for `env`: the listing's result if it is done, else each source's."""
        if isinstance(listing, EnvironmentResult):  # answered without a listing
            return listing
        task = listing.task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()  # _run returns a result whatever happens inside; but be sure
            if error is None:
                return task.result()
            return self._failed_everywhere(env, error, waited)
        # Still running for a scrape with a later deadline, or stuck: each source by its own task.
        values, failures = self._split(listing.sources)
        if listing.running and failures:  # out of time with a slot: to the back of the next queue
            self._late.add(env.id)
        return self._result(env, waited, values, failures)

    def _join(self, env: Environment, deadline: float) -> _Listing:
        listing = self._inflight.get(env.id)
        if listing is not None and listing.extend(deadline, asyncio.get_running_loop().time()):
            return listing
        return self._spawn(_Listing(env, deadline), debug=False)

    def _spawn(self, listing: _Listing, debug: bool) -> _Listing:
        """Start `listing` as a task, in flight for others to join until it ends."""
        name = f"{'debug' if debug else 'list'} {listing.env.id}"
        task = listing.task = asyncio.create_task(self._run(listing, debug), name=name)
        (self._debug_inflight if debug else self._inflight)[listing.env.id] = listing
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return listing

    async def aclose(self) -> None:
        """Abandon every listing in flight (closing their connections when they end)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Let every listing in flight end by its own deadline."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- one environment -------------------------------------------------------

    async def _run(self, listing: _Listing, debug: bool = False) -> EnvironmentResult:
        table = self._debug_inflight if debug else self._inflight
        try:
            return await self._list(listing, self._debug_slots if debug else self._slots, record=not debug)
        except Exception as exc:  # a bug of ours outside any source: still only this environment's
            result = self._failed_everywhere(listing.env, exc)
            if not debug:
                self._record(result, ran=False)
            return result
        finally:  # in the same step as the result: nobody can join a listing that has ended
            if table.get(listing.env.id) is listing:
                del table[listing.env.id]

    async def _list(self, listing: _Listing, slots: asyncio.Semaphore, record: bool) -> EnvironmentResult:
        """List with every source in one of `slots`; `record` the result (a debug page's own listing
        is not: what a debug client asks for never changes what scrapes are served or counted)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        env = listing.env
        tasks = listing.sources
        try:
            async with asyncio.timeout_at(listing.deadline) as timeout:
                listing.timeout = timeout
                async with slots:
                    listing.running = True
                    for source in self.sources:
                        fetch = self._fetcher(listing, source)
                        tasks[source.name] = asyncio.create_task(
                            self._collect(source, env, fetch, listing.attention)
                        )
                    await asyncio.wait(tasks.values())
        except TimeoutError:  # the latest waiter's deadline passed: abandon what is unfinished
            pass
        finally:  # on a timeout, or when the engine closes: cancel what is left, closing its connections
            unfinished = [task for task in tasks.values() if not task.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)
        values, failures = self._split(tasks)
        result = self._result(env, loop.time() - started, values, failures)
        if record:
            self._record(result, listing.running)
        return result

    def _split(self, tasks: Mapping[str, asyncio.Task[Any]]) -> tuple[dict[str, Any], dict[str, Failure]]:
        """Each source's value, or its failure (`deadline` for one not done)."""
        values: dict[str, Any] = {}
        failures: dict[str, Failure] = {}
        for name in self.names:
            task = tasks.get(name)
            outcome = task.result() if task is not None and task.done() and not task.cancelled() else DEADLINE
            if isinstance(outcome, Failure):
                failures[name] = outcome
            else:
                values[name] = outcome
        return values, failures

    async def _collect(self, source: Source[Any], env: Environment, fetch: Fetch, attention: int) -> Any:
        """The boundary of one source of one environment: its value, or a Failure; only cancellation
        passes through."""
        try:
            return await source.collect(env, fetch, attention)
        except SourceFailed as exc:
            return Failure(exc.reason, self.redactor.clean(str(exc)))
        except Exception as exc:  # the exporter's own bug: this environment's failure, never the scrape's
            return internal_failure(exc, self.redactor)

    def _result(
        self, env: Environment, duration: float, values: dict[str, Any], failures: dict[str, Failure]
    ) -> EnvironmentResult:
        return EnvironmentResult(
            env, duration, self.wall_clock(), values, failures, success=self.primary in values
        )

    def _failed_everywhere(
        self, env: Environment, exc: BaseException, duration: float = 0.0
    ) -> EnvironmentResult:
        """Every source of `env` failed as `internal` by `exc`, a bug of ours."""
        failure = internal_failure(exc, self.redactor)
        return self._result(env, duration, {}, dict.fromkeys(self.names, failure))

    def _record(self, result: EnvironmentResult, ran: bool) -> None:
        env = result.environment
        primary = result.failures.get(self.primary)
        for name in self.names:
            failure = result.failures.get(name)
            if failure is None:
                self.failures.succeeded(env, name)
                continue
            if failure is not primary or name == self.primary:  # one cause, one log line
                self.failures.failed(env, name, failure)
            self.observer.failed(env.id, name, failure.reason)
        # Late means it had a slot and still ran out of time; waiting for a slot is not its fault.
        late = ran and any(f.reason in LATE_REASONS for f in result.failures.values())
        (self._late.add if late else self._late.discard)(env.id)
        if self.on_result is not None:
            self.on_result(result)

    # -- requests --------------------------------------------------------------

    def _fetcher(self, listing: _Listing, source: Source[Any]) -> Fetch:
        env = listing.env
        credentials = source.credentials(env)

        async def fetch(path: str, params: Mapping[str, str | int]) -> bytes:
            why = missing_key(credentials)
            if why is not None:
                raise SourceFailed("no_credentials", f"no key for this environment: {why}")
            return await self.requests.get(
                path,
                params,
                credentials,
                workspace=env.workspace_id,
                deadline=lambda: listing.deadline,
                count=lambda code: self.observer.request(env.id, code),
                pool=env.id,
                endpoint=source.name,
                trace=listing.tries.append,
            )

        return fetch
