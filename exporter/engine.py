"""The engine: every upstream call goes through here.

`Engine.scrape(environments, deadline)` lists each environment with every source
(work now; stats and discovery later), concurrently, and returns one
`EnvironmentResult` per environment by the deadline, whatever happens upstream.
It owns:

- **the in-flight table**: a scrape that asks for an environment already being
  listed joins that listing instead of asking the API again. The listing runs
  until the latest deadline of the scrapes waiting for it; each scrape waits only
  until its own deadline.
- **concurrency**: at most `concurrency` environments are listed at once.
  Environments whose last listing ran out of time queue behind the others, so a
  few stuck environments cannot make every healthy one miss the deadline too.
- **deadlines**: a listing not done by its deadline is cancelled, which closes
  its connections and frees its slot; its unfinished sources fail with reason
  `deadline`. Each request also ends within `api.request_timeout_seconds`.
- **retries**: 408, 409, 429, 5xx, timeouts and connection errors are retried as
  the official SDK does (backoff 0.5 s doubling to 8 s with up to 25 % jitter;
  `retry-after-ms`, `retry-after` and `x-should-retry` honoured), never past the
  deadline.
- **isolation**: anything a source raises ends that source with a reason;
  anything unexpected is `internal`, logged once with its traceback. Nothing
  reaches the HTTP response.
- **observers**: every request and every failed listing is reported to an
  `EngineObserver`; every failure and recovery to the `FailureLog`; a `Budget`, when given, is asked
  before every request.

All times are the running event loop's (monotonic) clock, so tests can run the
engine on a loop whose clock they control.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import __version__
from .client import TransportFailure, UpstreamClient
from .config import NO_CREDENTIALS, ApiConfig, Credentials, Environment
from .failures import Failure, FailureLog
from .models import (
    BETA_HEADER,
    REQUEST_ID_HEADER,
    RETRY_AFTER_HEADER,
    RETRY_AFTER_MS_HEADER,
    SHOULD_RETRY_HEADER,
    VERSION_HEADER,
    WORKSPACE_HEADER,
    auth_headers,
    parse_error,
)
from .redact import Redactor
from .sources import Fetch, Source, SourceFailed

log = logging.getLogger("exporter.engine")

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRYABLE_STATUS = frozenset({408, 409, 429})
# Failures that mean "this environment ran out of time", which sends it to the back of the queue.
LATE_REASONS = frozenset({"deadline", "timeout"})


class EngineObserver(Protocol):
    def request(self, environment_id: str, code: str) -> None:
        """One upstream request ended with `code`: an HTTP status, `timeout` or `error`."""

    def failed(self, environment_id: str, source: str, reason: str) -> None:
        """One listing of `source` for the environment ended without a result."""


class Budget(Protocol):
    async def acquire(self, deadline: float) -> None:
        """Wait until a request may be sent; raise SourceFailed if that is after `deadline`."""

    def pause(self, seconds: float) -> None:
        """The API asked to slow down: no request from anyone for `seconds`."""


class EngineCounters:
    """The observer behind the request and failure counters; long-lived across reloads."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}  # (environment_id, code) -> count
        self.failures: dict[tuple[str, str, str], int] = {}  # (environment_id, source, reason) -> count

    def request(self, environment_id: str, code: str) -> None:
        key = (environment_id, code)
        self.requests[key] = self.requests.get(key, 0) + 1

    def failed(self, environment_id: str, source: str, reason: str) -> None:
        key = (environment_id, source, reason)
        self.failures[key] = self.failures.get(key, 0) + 1


@dataclass(frozen=True)
class EnvironmentResult:
    """One environment's listing: each source's value or failure.

    `success` is whether the primary source (the work listing) produced its value.
    """

    environment: Environment
    duration_seconds: float
    finished_at: float  # Unix seconds
    values: Mapping[str, Any] = field(default_factory=dict)
    failures: Mapping[str, Failure] = field(default_factory=dict)
    success: bool = False


class _Listing:
    """One environment being listed: its task, and the deadline its waiters extend."""

    def __init__(self, env: Environment, deadline: float):
        self.env = env
        self.deadline = deadline
        self.timeout: asyncio.Timeout | None = None
        self.task: asyncio.Task[EnvironmentResult] | None = None
        self.running = False  # it holds a slot: its time is its own

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
        api: ApiConfig,
        sources: Sequence[Source[Any]],
        client: UpstreamClient,
        *,
        concurrency: int,
        observer: EngineObserver,
        failures: FailureLog,
        redactor: Redactor,
        budget: Budget | None = None,
        on_result: Callable[[EnvironmentResult], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ):
        self.api = api
        self.sources = list(sources)
        self.primary = self.sources[0].name
        self.client = client
        self.observer = observer
        self.failures = failures
        self.redactor = redactor
        self.budget = budget
        self.on_result = on_result  # each listing's result, once, as it ends (the result store)
        self.wall_clock = wall_clock
        self.jitter = jitter
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, _Listing] = {}
        self._tasks: set[asyncio.Task[EnvironmentResult]] = set()
        self._late: set[str] = set()

    # -- scrapes ---------------------------------------------------------------

    async def scrape(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """Results in the order of `environments`, by `deadline` (event-loop time)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Start the environments that were on time last time first: they take the free slots.
        order = sorted(environments, key=lambda env: env.id in self._late)
        listings: dict[str, _Listing | Failure] = {}
        for env in order:
            try:
                listings[env.id] = self._join(env, deadline)
            except Exception as exc:  # our own bug: this environment's failure, never the scrape's
                listings[env.id] = self._internal(exc)
        pending = [x.task for x in listings.values() if isinstance(x, _Listing) and x.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        return [self._outcome(env, listings[env.id], loop.time() - started) for env in environments]

    def _outcome(self, env: Environment, listing: _Listing | Failure, waited: float) -> EnvironmentResult:
        """What this scrape reports for `env`: the listing's result if it is done, else why not."""
        if isinstance(listing, Failure):  # it could not even start
            result = self._result(env, waited, {}, dict.fromkeys(self._names(), listing))
            self._record(result, ran=False)
            return result
        task = listing.task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()  # _run returns a result whatever happens inside; but be sure
            if error is None:
                return task.result()
            return self._result(env, waited, {}, dict.fromkeys(self._names(), self._internal(error)))
        # Still running for a scrape with a later deadline, or stuck: not ours to wait for.
        if listing.running:  # out of time with a slot: to the back of the next queue
            self._late.add(env.id)
        failure = Failure("deadline", "not finished before the scrape deadline")
        return self._result(env, waited, {}, dict.fromkeys(self._names(), failure))

    def _join(self, env: Environment, deadline: float) -> _Listing:
        listing = self._inflight.get(env.id)
        if listing is not None and listing.extend(deadline, asyncio.get_running_loop().time()):
            return listing
        listing = _Listing(env, deadline)
        task = listing.task = asyncio.create_task(self._run(listing), name=f"list {env.id}")
        self._inflight[env.id] = listing
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return listing

    def _internal(self, exc: BaseException) -> Failure:
        where = "".join(traceback.format_exception(exc))
        return Failure(
            "internal", self.redactor.clean(f"{type(exc).__name__}: {exc}"), self.redactor.redact(where)
        )

    async def aclose(self) -> None:
        """Abandon every listing in flight and close the connections."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    # -- one environment -------------------------------------------------------

    async def _run(self, listing: _Listing) -> EnvironmentResult:
        try:
            return await self._list(listing)
        except Exception as exc:  # a bug of ours outside any source: still only this environment's
            result = self._result(listing.env, 0.0, {}, dict.fromkeys(self._names(), self._internal(exc)))
            self._record(result, ran=False)
            return result
        finally:  # in the same step as the result: nobody can join a listing that has ended
            if self._inflight.get(listing.env.id) is listing:
                del self._inflight[listing.env.id]

    async def _list(self, listing: _Listing) -> EnvironmentResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        env = listing.env
        tasks: dict[str, asyncio.Task[Any]] = {}
        try:
            async with asyncio.timeout_at(listing.deadline) as timeout:
                listing.timeout = timeout
                async with self._slots:
                    listing.running = True
                    tasks = {
                        s.name: asyncio.create_task(
                            self._collect(s, env, self._fetcher(listing, s.credentials(env)))
                        )
                        for s in self.sources
                    }
                    await asyncio.wait(tasks.values())
        except TimeoutError:  # the latest waiter's deadline passed: abandon what is unfinished
            if listing.running:
                self._late.add(env.id)
        finally:  # on a timeout, or when the engine closes: cancel what is left, closing its connections
            unfinished = [task for task in tasks.values() if not task.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)
        values: dict[str, Any] = {}
        failures: dict[str, Failure] = {}
        for name in self._names():
            done = tasks.get(name)
            if done is None or done.cancelled():
                failures[name] = Failure("deadline", "not finished before the scrape deadline")
            elif isinstance(done.result(), Failure):
                failures[name] = done.result()
            else:
                values[name] = done.result()
        result = self._result(env, loop.time() - started, values, failures)
        self._record(result, listing.running)
        return result

    async def _collect(self, source: Source[Any], env: Environment, fetch: Fetch) -> Any:
        """The source's value, or a Failure; only cancellation passes through."""
        clean = self.redactor.clean
        try:
            return await source.collect(env, fetch)
        except SourceFailed as exc:
            return Failure(exc.reason, clean(str(exc)))
        except Exception as exc:  # the exporter's own bug: this environment's failure, never the scrape's
            return Failure(
                "internal",
                clean(f"{type(exc).__name__}: {exc}"),
                self.redactor.redact(traceback.format_exc()),
            )

    def _names(self) -> list[str]:
        return [s.name for s in self.sources]

    def _result(
        self, env: Environment, duration: float, values: dict[str, Any], failures: dict[str, Failure]
    ) -> EnvironmentResult:
        return EnvironmentResult(
            env, duration, self.wall_clock(), values, failures, success=self.primary in values
        )

    def _record(self, result: EnvironmentResult, ran: bool) -> None:
        env = result.environment
        for name in self._names():
            failure = result.failures.get(name)
            if failure is None:
                self.failures.succeeded(env, name)
            else:
                self.failures.failed(env, name, failure)
                self.observer.failed(env.id, name, failure.reason)
        # Late means it had a slot and still ran out of time; waiting for a slot is not its fault.
        late = ran and any(f.reason in LATE_REASONS for f in result.failures.values())
        (self._late.add if late else self._late.discard)(env.id)
        if self.on_result is not None:
            self.on_result(result)

    # -- requests --------------------------------------------------------------

    def _fetcher(self, listing: _Listing, credentials: Credentials) -> Fetch:
        env = listing.env

        async def fetch(path: str, params: Mapping[str, str | int]) -> bytes:
            if credentials.type == NO_CREDENTIALS.type:
                raise SourceFailed("no_credentials", f"no key for this environment: {credentials.source}")
            return await self.get(
                path,
                params,
                credentials,
                workspace=env.workspace_id,
                deadline=lambda: listing.deadline,
                count=lambda code: self.observer.request(env.id, code),
                pool=env.id,
            )

        return fetch

    async def get(
        self,
        path: str,
        params: Mapping[str, str | int],
        credentials: Credentials,
        *,
        deadline: Callable[[], float],
        count: Callable[[str], None],
        pool: str,
        workspace: str | None = None,
    ) -> bytes:
        """The 200 body of one GET of `path` (from the API root), after retries; SourceFailed otherwise.

        Every upstream request goes through here: the budget, the request timeout, the
        retry rules, and `count` told each request's code. `deadline` is read anew
        before each try (a listing's deadline grows when a later scrape joins it).
        """
        url = f"{self.api.base_url}{path}"
        headers = {
            VERSION_HEADER: self.api.anthropic_version,
            BETA_HEADER: ",".join(self.api.betas),
            "User-Agent": f"anthropic-work-exporter/{__version__}",
            **auth_headers(credentials.type, credentials.value.reveal()),
        }
        workspace = workspace or self.api.workspace_id
        if workspace:
            headers[WORKSPACE_HEADER] = workspace
        loop = asyncio.get_running_loop()
        retries = 0
        while True:
            if loop.time() >= deadline():
                raise SourceFailed("deadline", "not finished before the scrape deadline")
            if self.budget is not None:
                await self.budget.acquire(deadline())
            try:
                reply = await self.client.get(url, params, headers, self.api.request_timeout_seconds, pool)
            except TransportFailure as exc:
                count(exc.code)
                failure = SourceFailed(exc.reason, str(exc))
                if exc.reason not in ("timeout", "connection"):  # a body too large or malformed: no retry
                    raise failure from None
                delay = self._backoff(retries)
            except asyncio.CancelledError:  # the deadline cut this request short
                count("timeout")
                raise
            else:
                count(str(reply.status))
                if reply.status == 200:
                    return reply.body
                failure = self._http_failure(reply.status, reply.body, reply.headers)
                asked = _retry_after(reply.headers, self.wall_clock())
                delay = asked if asked is not None else self._backoff(retries)
                if self.budget is not None and (reply.status == 429 or asked is not None):
                    self.budget.pause(delay)  # the account, not this request, is asked to slow down
                if not _should_retry(reply.status, reply.headers):
                    raise failure
            if retries >= self.api.max_retries:
                raise failure
            if loop.time() + delay >= deadline():
                raise SourceFailed(
                    failure.reason,
                    f"{failure}; no time left before the scrape deadline to retry in {delay:.3g}s",
                )
            await asyncio.sleep(delay)
            retries += 1

    def _backoff(self, retries: int) -> float:
        return min(INITIAL_RETRY_DELAY * 2.0**retries, MAX_RETRY_DELAY) * (1 - 0.25 * self.jitter())

    def _http_failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> SourceFailed:
        error = parse_error(body, headers)
        clean = self.redactor.clean
        detail = (
            f"{clean(error.kind, 60)}: {clean(error.message)}"
            if error.kind or error.message
            else "no API error body"
        )
        suffix = f" ({REQUEST_ID_HEADER} {clean(error.request_id, 80)})" if error.request_id else ""
        return SourceFailed(f"http_{status}", f"HTTP {status} {detail}{suffix}")


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    verdict = headers.get(SHOULD_RETRY_HEADER)
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status in RETRYABLE_STATUS or status >= 500


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, if it asks for 0-60 s; `now` is Unix time, for dates."""
    try:
        seconds = float(headers[RETRY_AFTER_MS_HEADER]) / 1000
    except (KeyError, ValueError):
        raw = headers.get(RETRY_AFTER_HEADER)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:  # not seconds: an HTTP date
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                return None
            if parsed.tzinfo is None:
                return None
            seconds = parsed.timestamp() - now
    # NaN fails both comparisons, so it is ignored too.
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None
