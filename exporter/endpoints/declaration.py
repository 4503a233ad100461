"""An upstream endpoint, declared once: what it is, how it is read, what it shows, how it is simulated.

An `Endpoint` holds everything the rest of the exporter needs of it:

- `name` keys its outcome in a result (`work`, `stats`) and labels its failures (`source`);
- `path`, its path pattern (`{environment_id}` where the id goes), and `decode`, its
  response decoder: both the wire codec's;
- `source`, how a listing of it goes for one environment (by default one GET of `path`,
  decoded: `OneRequest`; the work listing pages and folds);
- `collectors`, the metric families of its results and its state;
- `credentials`, the credentials it is asked with, for an environment;
- `state`, what outlives a reload and its source and collectors share (the work listing's
  flow ledger), made once; `version`, what else an environment's rendered families depend
  on (so that they are rendered again when it changes);
- `simulate`, the simulator's route for it;
- `counts`, for the primary endpoint: items per state, for the landing page.

An account-wide endpoint (`per_environment=False`: discovery) is not listed per
environment; its collectors show its state on the exporter's own metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from prometheus_client.registry import Collector

from exporter.api.codec import UpstreamFormatError, environment_path
from exporter.config.schema import Config, Credentials, Environment
from exporter.results import EnvironmentResult, SourceFailed
from exporter.running.sources import Fetch, Source, WallClock
from exporter.simulator.routes import Route

State = Any  # an endpoint's long-lived state: whatever its source and collectors share


@runtime_checkable
class KeptPerEnvironment(Protocol):
    """A state that keeps something per environment: what is kept for environments no longer
    watched is dropped."""

    def forget_all_but(self, environment_ids: set[str]) -> None: ...


def listing_credentials(env: Environment) -> Credentials:
    """The environment's own credentials (an environment key): what the work listing takes."""
    return env.credentials


def stats_credentials(env: Environment) -> Credentials:
    """`stats_credentials` when configured, else the listing's."""
    return env.stats_credentials or env.credentials


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    decode: Callable[[bytes], Any]
    collectors: Callable[[Sequence[EnvironmentResult], State], list[Collector]]
    simulate: Route
    credentials: Callable[[Environment], Credentials] = listing_credentials
    source: Callable[[Endpoint, Config, State, WallClock], Source[Any]] | None = None
    state: Callable[[], State] = lambda: None
    version: Callable[[State, str], object] = lambda state, environment_id: None
    counts: Callable[[Any], Mapping[str, int]] | None = None
    per_environment: bool = True

    def path_of(self, environment_id: str) -> str:
        return environment_path(self.path, environment_id)

    def make_source(self, config: Config, state: State, wall_clock: WallClock) -> Source[Any]:
        if self.source is not None:
            return self.source(self, config, state, wall_clock)
        return OneRequest(self, wall_clock)


class Fetched(NamedTuple):
    """A one-request endpoint's value, and when it arrived (what ages in it are measured against)."""

    value: Any
    arrived: float  # Unix seconds


class OneRequest:
    """The source of an endpoint read with one GET: its body decoded, or `invalid_response`."""

    def __init__(self, endpoint: Endpoint, wall_clock: WallClock):
        self.endpoint = endpoint
        self.name = endpoint.name
        self.wall_clock = wall_clock

    def credentials(self, env: Environment) -> Credentials:
        return self.endpoint.credentials(env)

    async def collect(self, env: Environment, fetch: Fetch, attention: int = 0) -> Fetched:
        body = await fetch(self.endpoint.path_of(env.id), {})
        arrived = self.wall_clock()
        try:
            return Fetched(self.endpoint.decode(body), arrived)
        except UpstreamFormatError as exc:
            raise SourceFailed(
                "invalid_response", f"HTTP 200 but not what {self.endpoint.path} answers: {exc}"
            ) from None
