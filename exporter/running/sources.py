"""Sources: one per upstream endpoint. Each requests, parses and folds into a result.

A source never sees a socket, a retry or a deadline: it is handed a `Fetch`
(the engine's way to GET a path for one environment) and the wall clock, and
returns its result or raises `SourceFailed`. Anything else it raises is the
exporter's own bug, which the engine reports as reason `internal`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from exporter.config.schema import Credentials, Environment

T_co = TypeVar("T_co", covariant=True)

# GET `path` (from the API root) with `params` for the environment being listed; the body's bytes.
Fetch = Callable[[str, Mapping[str, str | int]], Awaitable[bytes]]
WallClock = Callable[[], float]


class Source(Protocol[T_co]):
    """One endpoint. `name` keys its outcome in an EnvironmentResult ("work", "stats")."""

    name: str

    def credentials(self, env: Environment) -> Credentials:
        """The credentials this endpoint is asked with, for `env`."""

    async def collect(self, env: Environment, fetch: Fetch, attention: int) -> T_co:
        """The result for `env`; `attention`: how many items of each kind needing attention to keep
        (more for a debug page of its own), for the sources that list items."""
