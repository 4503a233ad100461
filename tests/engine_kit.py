"""Build the engine as the CLI does, for tests on a virtual-time loop, and a source tests can hold."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
from conftest import NOW

from exporter.api.budget import RequestBudget
from exporter.api.client import UpstreamClient
from exporter.api.requests import RetryingGet
from exporter.config.load import parse_config
from exporter.config.schema import BucketConfig, Config, Environment
from exporter.endpoints.work import WorkSource
from exporter.folds.flow import FlowLedger
from exporter.redact import Redactor
from exporter.running.engine import Engine, EngineCounters
from exporter.running.failures import FailureLog
from exporter.running.sources import Fetch, Source

API = "https://api.anthropic.com/v1/environments"
KEY_ENV = {"ANTHROPIC_ENVIRONMENT_KEY": "env-key"}


def config_for(
    *env_ids: str, yaml: str = "", environ: dict[str, str] | None = None, names: dict[str, str] | None = None
) -> Config:
    names = names or {}
    envs = "".join(
        f"  - id: {e}\n" + (f"    name: {json.dumps(names[e])}\n" if e in names else "") for e in env_ids
    )
    return parse_config(f"{yaml}environments:\n{envs}", KEY_ENV if environ is None else environ)


def work_source(
    config: Config, wall_clock: Callable[[], float] = lambda: NOW, ledger: FlowLedger | None = None
) -> WorkSource:
    return WorkSource.from_config(config, ledger if ledger is not None else FlowLedger(), wall_clock)


@contextlib.asynccontextmanager
async def running_engine(
    config: Config,
    sources: Sequence[Source[Any]] | None = None,
    *,
    buckets: BucketConfig | None = None,
    jitter: float = 0.0,
    wall_clock: Callable[[], float] = lambda: NOW,
    transport: httpx.AsyncBaseTransport | None = None,
    counters: EngineCounters | None = None,
    budget: RequestBudget | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> AsyncIterator[Engine]:
    """An Engine over one AsyncClient (respx intercepts it, or `transport` answers)."""
    if buckets is not None:
        config = Config(config.environments, config.api, config.scrape, buckets, config.breakdown)

    def http() -> httpx.AsyncBaseTransport:  # respx intercepts httpx's own transport
        return transport if transport is not None else httpx.AsyncHTTPTransport()

    redactor = Redactor(config.secrets())
    requests = RetryingGet(
        config.api,
        UpstreamClient(http, config.api.max_response_bytes),
        redactor,
        budget=budget,
        wall_clock=wall_clock,
        jitter=lambda: jitter,
    )
    engine = Engine(
        sources if sources is not None else [work_source(config, wall_clock)],
        requests,
        concurrency=config.scrape.concurrency,
        observer=counters if counters is not None else EngineCounters(),
        failures=FailureLog(clock=lambda: asyncio.get_running_loop().time()),
        redactor=redactor,
        wall_clock=wall_clock,
        on_result=on_result,
    )
    try:
        yield engine
    finally:
        await engine.aclose()
        await requests.aclose()


class HeldSource:
    """A source that does nothing until the test releases an environment.

    `entered[env_id]` is set when a listing of that environment starts, `release(env_id)`
    lets it finish with `value`, `cancelled` lists the environments whose listing was
    abandoned, and `calls` counts listings per environment.
    """

    name = "work"

    def credentials(self, env: Environment) -> Any:
        return env.credentials

    def __init__(self, value: Any = "listed"):
        self.value = value
        self.entered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.calls: defaultdict[str, int] = defaultdict(int)
        self.errors: dict[str, BaseException] = {}

    async def collect(self, env: Environment, fetch: Fetch, attention: int = 0) -> Any:
        self.started.append(env.id)
        self.calls[env.id] += 1
        self.entered[env.id].set()
        try:
            await self.gates[env.id].wait()
        except asyncio.CancelledError:
            self.cancelled.append(env.id)
            raise
        if env.id in self.errors:
            raise self.errors[env.id]
        return self.value

    def release(self, *env_ids: str) -> None:
        for env_id in env_ids:
            self.gates[env_id].set()


async def settle() -> None:
    """Let every task that can run, run (no time passes on a virtual-time loop)."""
    for _ in range(20):
        await asyncio.sleep(0)
