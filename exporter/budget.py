"""A request budget shared by every upstream request: listings, work/stats, discovery.

A token bucket: `api.max_requests_per_second` tokens a second, up to a burst of one
second's worth (at least one token); each request takes one, in the order they ask.
0 means no limit on the rate. Whatever the rate, a 429 or a `retry-after` pauses the
whole budget, not one request: the API said this account should slow down.

Waiting never outlasts the caller's deadline: a request that could not get a token in
time fails at once with reason `deadline` instead of waiting for nothing.
"""

from __future__ import annotations

import asyncio

from .sources import SourceFailed


class RequestBudget:
    def __init__(self, rate: float = 0.0):
        self.rate = rate
        self.waited_seconds = 0.0  # in all, for the budget-wait counter
        self._tokens = self._burst()
        self._updated: float | None = None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def configure(self, rate: float) -> None:
        """A reloaded config's rate; the tokens in hand are kept (up to the new burst)."""
        self.rate = rate
        self._tokens = min(self._tokens, self._burst())

    def _burst(self) -> float:
        return max(1.0, self.rate)

    def pause(self, seconds: float) -> None:
        """No request from anyone for `seconds` (a 429 or retry-after said so)."""
        now = asyncio.get_running_loop().time()
        self._paused_until = max(self._paused_until, now + seconds)

    async def acquire(self, deadline: float) -> None:
        """Wait for a token, in turn; SourceFailed if the wait would pass `deadline`."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:  # others are still waiting in front: no time left
            raise SourceFailed("deadline", "no request budget left before the scrape deadline") from None
        try:
            now = loop.time()
            self._refill(now)
            wait = max(0.0, self._paused_until - now)
            if self.rate > 0 and self._tokens < 1:
                wait = max(wait, (1 - self._tokens) / self.rate)
            if now + wait > deadline:
                raise SourceFailed("deadline", "no request budget left before the scrape deadline")
            if wait > 0:
                await asyncio.sleep(wait)
                self._refill(loop.time())
            if self.rate > 0:
                self._tokens -= 1
            self.waited_seconds += loop.time() - asked  # in the queue and for the token
        finally:
            self._lock.release()

    def _refill(self, now: float) -> None:
        if self._updated is not None and self.rate > 0:
            self._tokens = min(self._burst(), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
