"""One log line per failing environment and source, not one per scrape.

The first failure of a kind (environment, source, reason) is logged at once;
the same kind again within `repeat_seconds` only counts, and is logged with that
count once the interval has passed. Recovery is logged once. An `internal`
failure (the exporter's own bug) carries its traceback, logged the first time.
Messages and tracebacks arrive already cleaned by the engine's Redactor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Environment

log = logging.getLogger("exporter.engine")


@dataclass(frozen=True)
class Failure:
    """Why one source of one environment did not produce a result."""

    reason: str
    message: str
    traceback: str | None = None  # only for `internal`


class FailureLog:
    def __init__(self, repeat_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.repeat_seconds = repeat_seconds
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[str, float, int]] = {}  # -> (reason, logged at, suppressed)

    def failed(self, env: Environment, source: str, failure: Failure, *, what: str | None = None) -> None:
        """`source` of `env` failed; `what` is the message (default: "listing <source> failed")."""
        now = self.clock()
        key = (env.id, source)
        reason, logged_at, suppressed = self._last.get(key, ("", -1e18, 0))
        if reason == failure.reason and now - logged_at < self.repeat_seconds:
            self._last[key] = (reason, logged_at, suppressed + 1)
            return
        self._last[key] = (failure.reason, now, 0)
        extra: dict[str, object] = {
            "environment_id": env.id,
            "environment_name": env.name,
            "source": source,
            "reason": failure.reason,
            "error": failure.message,
        }
        if reason == failure.reason and suppressed:
            extra["repeated"] = suppressed
        if failure.traceback is not None:
            extra["traceback"] = failure.traceback
        log.warning(what or f"listing {source} failed", extra=extra)

    def succeeded(self, env: Environment, source: str) -> None:
        if self._last.pop((env.id, source), None) is not None:
            log.info(
                f"listing {source} recovered",
                extra={"environment_id": env.id, "environment_name": env.name, "source": source},
            )
