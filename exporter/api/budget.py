"""The request budget every upstream request asks first: a rate shared by all, and scoped pauses.

**The rate.** A token bucket: `api.max_requests_per_second` tokens a second, up to a
burst of one second's worth (at least one token); each request reserves one, in the
order they ask (0: no limit on the rate). A listing asks for its pages one after the
other, so an environment has at most one request waiting at a time: the order of asking
is a round-robin over the environments being listed, and one with a thousand pages
cannot starve the others of tokens.

**Pauses, scoped to what shares the cause.** The API asks to slow down with
`Retry-After` (or `retry-after-ms`). Such a pause applies only to the requests that
share its cause, never to the whole budget: `RetryingGet` says which (a 429 pauses the
requests of that endpoint sent with the same credential; a 503 the same environment's
same endpoint). A request whose scopes are paused waits for the pause to end, unless the
pause outlasts its deadline: then it fails at once with reason `paused`, saying what is
paused and for how long, and the scrape answers early instead of waiting for nothing.
Pauses are kept until they end, so what is kept is bounded by the causes of the last
minute at most (`retry_after` caps a pause at 60 s).

Waiting for a token never outlasts the caller's deadline either: a request that could
not get one in time fails at once with reason `deadline`. `waited_seconds` adds up the
time requests really waited, for tokens and for pauses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import NamedTuple

from exporter.results import SourceFailed


class Pause(NamedTuple):
    until: float  # event-loop time
    why: str  # what asked for it, for the failure message: never a key


class RequestBudget:
    def __init__(self, rate: float = 0.0):
        self.rate = rate
        self.waited_seconds = 0.0  # in all, for the budget-wait counter
        self._tokens = self._burst()
        self._updated: float | None = None
        self._pauses: dict[Hashable, Pause] = {}

    def configure(self, rate: float) -> None:
        """A reloaded config's rate; the tokens in hand are kept (up to the new burst)."""
        self.rate = rate
        self._tokens = min(self._tokens, self._burst())

    def _burst(self) -> float:
        return max(1.0, self.rate)

    def pause(self, scope: Hashable, seconds: float, why: str) -> None:
        """No request in `scope` for `seconds` (a 429 or a retry-after said so)."""
        now = asyncio.get_running_loop().time()
        for ended in [key for key, pause in self._pauses.items() if pause.until <= now]:
            del self._pauses[ended]
        kept = self._pauses.get(scope)
        if kept is None or kept.until < now + seconds:
            self._pauses[scope] = Pause(now + seconds, why)

    async def acquire(self, deadline: float, scopes: Iterable[Hashable] = ()) -> None:
        """Wait until a request in `scopes` may be sent; SourceFailed if that would be after `deadline`."""
        loop = asyncio.get_running_loop()
        scopes = tuple(scopes)
        while True:  # a pause may be extended while we wait for it
            now = loop.time()
            pause = max((p for s in scopes if (p := self._pauses.get(s)) is not None), default=None)
            if pause is None or pause.until <= now:
                break
            if pause.until > deadline:
                raise SourceFailed(
                    "paused",
                    f"{pause.why}: paused {pause.until - now:.3g}s more, past this scrape's deadline",
                )
            await self._wait(pause.until - now)
        if self.rate > 0:
            await self._token(deadline)

    async def _wait(self, seconds: float) -> None:
        """Sleep, counting the time really waited (a cancelled wait too)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.waited_seconds += loop.time() - started

    async def _token(self, deadline: float) -> None:
        """Reserve the next token (the bucket goes below zero for reservations ahead) and wait for it."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._updated is not None:
            self._tokens = min(self._burst(), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        wait = max(0.0, (1 - self._tokens) / self.rate)
        if now + wait > deadline:
            raise SourceFailed("deadline", "no request budget left before the scrape deadline")
        self._tokens -= 1
        if wait > 0:
            try:
                await self._wait(wait)
            except asyncio.CancelledError:  # the deadline came first: the token goes back
                self._tokens += 1
                raise
