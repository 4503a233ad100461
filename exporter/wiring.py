"""Wiring: what outlives a reload (`Lasting`), and one config generation built on it (`build`).

    config -> connection pools -> client -> retrying GET -> sources (endpoints.ENDPOINTS)
           -> engine -> refresh policy;   targets (configured + discovered, in this shard),
           key watcher, discovery

`build` only constructs; `Served.start()` reads the keys, merges discovered
environments and starts the timers, so a reload can be refused if any of it raises.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.registry import Collector

from exporter.api.budget import RequestBudget
from exporter.api.client import UpstreamClient
from exporter.api.requests import RetryingGet
from exporter.api.transport import AiohttpTransport
from exporter.config.model import Config
from exporter.config.shard import Shard
from exporter.endpoints import ENDPOINTS, Shared
from exporter.folds.flow import FlowLedger
from exporter.metrics.exposition import Exposition
from exporter.metrics.scrape import EngineCountersCollector, ScrapeCollector
from exporter.redact import Redactor
from exporter.results import EnvironmentResult
from exporter.running.discovery import DISCOVERY_POOL, Discovery
from exporter.running.engine import Engine, EngineCounters
from exporter.running.failures import FailureLog
from exporter.running.isolation import Boundary
from exporter.running.keywatch import KeyWatcher
from exporter.running.policies import BackgroundPolicy, OnDemandPolicy, Policy, RefreshSchedule
from exporter.running.reload import Served
from exporter.running.store import ResultStore
from exporter.running.targets import DiscoveryState, KeyStore, Targets
from exporter.running.timer import Timer


@dataclass
class Lasting:
    """What outlives a config reload: counters, logs' memory, stored results, transitions, schedule."""

    counters: EngineCounters = field(default_factory=EngineCounters)
    failures: FailureLog = field(default_factory=FailureLog)
    redactor: Redactor = field(default_factory=Redactor)  # every key ever read, to scrub logs of
    store: ResultStore = field(default_factory=ResultStore)
    ledger: FlowLedger = field(default_factory=FlowLedger)
    budget: RequestBudget = field(default_factory=RequestBudget)
    discovered: DiscoveryState = field(default_factory=DiscoveryState)
    keys: KeyStore = field(default_factory=KeyStore)
    schedule: RefreshSchedule = field(default_factory=RefreshSchedule)
    # Made once per process: loading the CA bundle for every reload would cost a
    # megabyte of memory and tens of milliseconds each time.
    upstream_tls: ssl.SSLContext = field(default_factory=httpx.create_ssl_context)
    wall_clock: Callable[[], float] = time.time
    # One environment's connections to the API; tests give httpx's own transport, which respx fakes.
    transport: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport] = AiohttpTransport
    boundary: Boundary = field(init=False)
    exposition: Exposition = field(init=False)
    watched: set[str] | None = None  # None until the first generation says

    def __post_init__(self) -> None:
        self.boundary = Boundary(self.failures, self.redactor)
        self.shared = Shared(self.ledger, self.wall_clock)
        self.exposition = Exposition(self.per_environment, self.live, self.ledger.mark, self.boundary)

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop what is kept for environments no longer watched."""
        self.watched = environment_ids
        self.store.forget_all_but(environment_ids)
        self.ledger.forget_all_but(environment_ids)
        self.exposition.forget_all_but(environment_ids)
        self.counters.forget_all_but(environment_ids)
        self.failures.forget_all_but(environment_ids)

    def keep(self, result: EnvironmentResult) -> None:
        """A listing's result as it ends: stored, and rendered ahead of the next scrape.

        A listing of a replaced generation may end after its environment stopped being
        watched: its result is dropped, so nothing kept outgrows what is watched.
        """
        if self.watched is not None and result.environment.id not in self.watched:
            return
        self.store.put(result)
        self.exposition.prepare(result)

    def per_environment(self, results: Sequence[EnvironmentResult]) -> list[Collector]:
        """The families that change only when an environment's listing ends (or its counters reset)."""
        collectors: list[Collector] = [ScrapeCollector(results, self.store.last_success)]
        for endpoint in ENDPOINTS:
            collectors += endpoint.collectors(results, self.shared)
        return collectors

    def live(self, environment_ids: Sequence[str]) -> list[Collector]:
        """The families that change with every request."""
        return [EngineCountersCollector(self.counters, environment_ids)]


def build(config: Config, lasting: Lasting, shard: Shard) -> Served:
    """Wire one config generation; nothing runs until `Served.start()`."""

    def connection_pool() -> httpx.AsyncBaseTransport:  # one per environment: a request or two at a time
        return lasting.transport(lasting.upstream_tls)

    lasting.budget.configure(config.api.max_requests_per_second)
    client = UpstreamClient(connection_pool, config.api.max_response_bytes)
    requests = RetryingGet(
        config.api,
        client,
        lasting.redactor,
        budget=lasting.budget,
        wall_clock=lasting.wall_clock,
    )
    engine = Engine(
        [endpoint.source(config, lasting.shared) for endpoint in ENDPOINTS],
        requests,
        concurrency=config.scrape.concurrency,
        observer=lasting.counters,
        failures=lasting.failures,
        redactor=lasting.redactor,
        on_result=lasting.keep,
        wall_clock=lasting.wall_clock,
    )
    targets = Targets(config, shard, lasting.discovered, lasting.keys, lasting.boundary)

    async def changed() -> None:
        """Discovery or the keys changed: merge them in, and drop what is kept for the gone."""
        if await targets.refresh():
            watched = {env.id for env in targets.environments()}
            lasting.forget_all_but(watched)
            engine.forget_all_but(watched)
            await client.forget_all_but(watched | {DISCOVERY_POOL})

    watcher = KeyWatcher(config, lasting.keys, lasting.redactor.hold, changed)
    discovery = (
        Discovery(config.discovery, requests, lasting.discovered, lasting.redactor, changed)
        if config.discovery is not None
        else None
    )
    scrape = config.scrape
    policy: Policy
    if scrape.mode == "background":
        policy = BackgroundPolicy(
            engine,
            lasting.store,
            targets.environments,
            scrape.refresh_interval_seconds,
            timeout=scrape.refresh_timeout_seconds,
            schedule=lasting.schedule,
            failures=lasting.failures,
            boundary=lasting.boundary,
            wall_clock=lasting.wall_clock,
        )
    else:
        policy = OnDemandPolicy(engine, lasting.store, scrape.min_interval_seconds, lasting.wall_clock)
    timers: list[Timer] = [watcher] if discovery is None else [watcher, discovery]

    async def start() -> None:
        await watcher.start()
        await changed()
        if discovery is not None:
            discovery.start()
        policy.start()

    def retire() -> None:
        policy.retire()
        for timer in timers:  # the generation that took over has its own
            timer.stop()

    async def aclose(drain: bool) -> None:
        for timer in timers:
            await timer.aclose()
        await policy.aclose(drain)
        await requests.aclose()

    return Served(policy, targets, engine, start, retire, aclose)
