"""When to list: refresh policies over a store of the latest results.

A policy answers one question for the HTTP side: "results for these
environments, by this deadline". `OnDemandPolicy` lists them now (sharing
listings already in flight) and records each result in the `ResultStore`,
which keeps the latest result per environment for the landing page and for the
policies that serve stored results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .config import Environment
from .engine import Engine, EnvironmentResult


class ResultStore:
    """The latest result per environment id; long-lived across config reloads."""

    def __init__(self) -> None:
        self._latest: dict[str, EnvironmentResult] = {}

    def put(self, result: EnvironmentResult) -> None:
        self._latest[result.environment.id] = result

    def latest(self, environment_id: str) -> EnvironmentResult | None:
        return self._latest.get(environment_id)

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop environments no longer watched, so the store stays the size of the config."""
        for env_id in set(self._latest) - environment_ids:
            del self._latest[env_id]


class Policy(Protocol):
    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        """One result per environment, in order, by `deadline` (event-loop time)."""

    async def aclose(self) -> None: ...


class OnDemandPolicy:
    """List on every scrape: what a scrape shows is what the API said during it."""

    def __init__(self, engine: Engine, store: ResultStore):
        self.engine = engine
        self.store = store

    async def results(self, environments: Sequence[Environment], deadline: float) -> list[EnvironmentResult]:
        results = await self.engine.scrape(environments, deadline)
        for result in results:
            self.store.put(result)
        return results

    async def aclose(self) -> None:
        await self.engine.aclose()
