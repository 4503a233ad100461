"""List many environments at once, inside one deadline.

`Scraper.scrape` starts (or joins) one listing per environment on a bounded
thread pool and waits until the deadline; whatever has not finished by then is
reported as failed with reason `deadline`, and the response goes out on time.
Two scrapes that overlap share one in-flight listing per environment instead of
asking the API twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial

from .aggregate import Aggregator, EnvironmentSummary
from .client import ListingFailed, WorkClient
from .config import BucketConfig, Environment

log = logging.getLogger("exporter.scrape")


@dataclass(frozen=True)
class EnvironmentResult:
    """One environment's listing: a summary on success, a failure otherwise."""

    environment: Environment
    duration_seconds: float
    summary: EnvironmentSummary | None = None
    failure: ListingFailed | None = None


class FailureLog:
    """One log line per failing environment, not one per scrape.

    The first failure of a kind (environment, reason) is logged at once; the
    same kind again within `repeat_seconds` only counts, and is logged with
    that count once the interval has passed. Recovery is logged once.
    """

    def __init__(self, repeat_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.repeat_seconds = repeat_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, float, int]] = {}  # env id -> (reason, logged at, suppressed)

    def failed(self, env: Environment, failure: ListingFailed) -> None:
        now = self.clock()
        with self._lock:
            reason, logged_at, suppressed = self._last.get(env.id, ("", -1e18, 0))
            if reason == failure.reason and now - logged_at < self.repeat_seconds:
                self._last[env.id] = (reason, logged_at, suppressed + 1)
                return
            self._last[env.id] = (failure.reason, now, 0)
        extra: dict[str, object] = {
            "environment_id": env.id,
            "environment_name": env.name,
            "reason": failure.reason,
            "error": str(failure),
        }
        if reason == failure.reason and suppressed:
            extra["repeated"] = suppressed
        log.warning("listing work failed", extra=extra)

    def succeeded(self, env: Environment) -> None:
        with self._lock:
            previous = self._last.pop(env.id, None)
        if previous is not None:
            log.info("listing work recovered", extra={"environment_id": env.id, "environment_name": env.name})


class Scraper:
    """Runs listings for a Collector; owns the thread pool and the in-flight table."""

    def __init__(
        self,
        client: WorkClient,
        buckets: BucketConfig,
        concurrency: int,
        *,
        wall_clock: Callable[[], float] = time.time,
        failures: FailureLog | None = None,
    ):
        self.client = client
        self.buckets = buckets
        self.wall_clock = wall_clock
        self.failures = failures or FailureLog(clock=client.clock)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="list-work")
        # Reentrant: a listing that is already done runs its callback inside _start.
        self._lock = threading.RLock()
        self._inflight: dict[str, Future[EnvironmentResult]] = {}

    def scrape(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """Results in the order of `environments`; `deadline` is on the client's clock."""
        started = self.client.clock()
        futures = [self._start(env, deadline) for env in environments]
        wait(futures, timeout=max(0.0, deadline - self.client.clock()))
        results = []
        for env, future in zip(environments, futures, strict=True):
            if future.done():
                result = future.result()
            else:
                result = EnvironmentResult(
                    env,
                    self.client.clock() - started,
                    failure=ListingFailed("deadline", "not finished before the scrape deadline"),
                )
            if result.failure is not None:
                self.failures.failed(env, result.failure)
            else:
                self.failures.succeeded(env)
            results.append(result)
        return results

    def _start(self, env: Environment, deadline: float) -> Future[EnvironmentResult]:
        with self._lock:
            future = self._inflight.get(env.id)
            if future is None:
                future = self._pool.submit(self._list, env, deadline)
                self._inflight[env.id] = future
                future.add_done_callback(partial(self._finished, env.id))
            return future

    def _finished(self, key: str, future: Future[EnvironmentResult]) -> None:
        with self._lock:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _list(self, env: Environment, deadline: float) -> EnvironmentResult:
        started = self.client.clock()
        aggregator = Aggregator(
            self.wall_clock(), self.buckets.heartbeat_age_seconds, self.buckets.state_age_seconds
        )
        try:
            for page in self.client.list_work(env, deadline):
                aggregator.add_page(page.items)
        except ListingFailed as failure:
            return EnvironmentResult(env, self.client.clock() - started, failure=failure)
        return EnvironmentResult(env, self.client.clock() - started, summary=aggregator.summary())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
