"""One log line per failure episode of an environment's source, and one when it recovers.

A failure episode of (environment, source) starts with its first failure, which is
logged at once with its reason and message, and ends when the source succeeds again,
which is logged once with a summary of the episode: how many failures, of which
reasons, for how long. Failures in between, whatever their reasons (a flapping 500, 502,
503), only count, so however an upstream misbehaves one environment costs the log at
most two lines per episode and source. An episode of a step that has no success to end
it (rendering, scheduling) ends after `quiet_seconds` without a failure.

An `internal` failure (the exporter's own bug) is always worth its traceback: the first
one of an episode is logged even when the episode began with another reason. Messages
and tracebacks arrive already cleaned by the engine's Redactor; the log formatter
escapes whatever else is left (`logs.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.config.schema import Environment
from exporter.results import Failure

log = logging.getLogger("exporter.engine")


@dataclass(slots=True)
class _Episode:
    """One failure episode, changed in place: a failing environment costs no new object per scrape."""

    started: float
    last: float  # the latest failure
    reasons: dict[str, int] = field(default_factory=dict)  # failures by reason
    traceback_logged: bool = False


class FailureLog:
    def __init__(self, quiet_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self._episodes: dict[tuple[str, str], _Episode] = {}  # (environment id, source) -> its episode

    def failed(self, env: Environment, source: str, failure: Failure, *, what: str | None = None) -> None:
        """`source` of `env` failed; `what` is the message (default: "listing <source> failed")."""
        now = self.clock()
        key = (env.id, source)
        episode = self._episodes.get(key)
        if episode is not None and now - episode.last > self.quiet_seconds:
            episode = None  # quiet long enough: this is a new episode
        if episode is None:
            episode = self._episodes[key] = _Episode(now, now)
            self._log(env, source, failure, what or f"listing {source} failed", episode)
        elif failure.traceback is not None and not episode.traceback_logged:
            self._log(env, source, failure, what or f"listing {source} failed", episode)
        episode.last = now
        episode.reasons[failure.reason] = episode.reasons.get(failure.reason, 0) + 1

    def _log(self, env: Environment, source: str, failure: Failure, what: str, episode: _Episode) -> None:
        extra: dict[str, object] = {
            "environment_id": env.id,
            "environment_name": env.name,
            "source": source,
            "reason": failure.reason,
            "error": failure.message,
        }
        if failure.traceback is not None:
            extra["traceback"] = failure.traceback
            episode.traceback_logged = True
        log.warning(what, extra=extra)

    def succeeded(self, env: Environment, source: str) -> None:
        episode = self._episodes.pop((env.id, source), None)
        if episode is None:
            return
        reasons = sorted(episode.reasons.items(), key=lambda item: (-item[1], item[0]))
        log.info(
            f"listing {source} recovered",
            extra={
                "environment_id": env.id,
                "environment_name": env.name,
                "source": source,
                "failures": sum(count for _, count in reasons),
                "reasons": ",".join(f"{reason}:{count}" for reason, count in reasons),
                "failing_seconds": round(self.clock() - episode.started, 1),
            },
        )

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop the episodes of environments no longer watched."""
        for key in [key for key in self._episodes if key[0] not in environment_ids]:
            del self._episodes[key]
