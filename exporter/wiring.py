"""Wiring: what outlives a reload (`Lasting`), and one config generation built on it (`build`).

    config -> connection pools -> client -> retrying GET -> sources (each endpoint's)
           -> engine -> result store -> (the web side) exposition;
           targets (configured + discovered, in this shard), key watcher, discovery

The endpoints (`endpoints.ENDPOINTS`, or others handed in) are wired here and only here:
their sources into the engine, their collectors into the exposition, their long-lived
state into `Lasting`.

`build` only constructs; `Served.start()` reads the keys, merges discovered
environments and starts the timers, so a reload can be refused if any of it raises.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.registry import Collector

from exporter.api.budget import RequestBudget
from exporter.api.client import UpstreamClient
from exporter.api.requests import RetryingGet
from exporter.api.transport import AiohttpTransport
from exporter.config.schema import Config
from exporter.config.shard import Shard
from exporter.endpoints import DISCOVERY, ENDPOINTS, PRIMARY, Endpoint
from exporter.endpoints.declaration import KeptPerEnvironment, State
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
from exporter.running.store import NO_COUNTS, ResultStore
from exporter.running.targets import DiscoveryState, KeyStore, Targets
from exporter.running.timer import Timer


@dataclass
class Lasting:
    """What outlives a config reload: counters, logs' memory, stored results, transitions, schedule."""

    counters: EngineCounters = field(default_factory=EngineCounters)
    failures: FailureLog = field(default_factory=FailureLog)
    redactor: Redactor = field(default_factory=Redactor)  # every key in use, to scrub logs of
    store: ResultStore = field(default_factory=ResultStore)
    budget: RequestBudget = field(default_factory=RequestBudget)
    keys: KeyStore = field(default_factory=KeyStore)
    schedule: RefreshSchedule = field(default_factory=RefreshSchedule)
    # Made once per process: loading the CA bundle for every reload would cost a
    # megabyte of memory and tens of milliseconds each time.
    upstream_tls: ssl.SSLContext = field(default_factory=httpx.create_ssl_context)
    wall_clock: Callable[[], float] = time.time
    # One environment's connections to the API; tests give httpx's own transport, which respx fakes.
    transport: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport] = AiohttpTransport
    # What is read upstream: the first is the primary endpoint (its outcome is scrape_success).
    endpoints: Sequence[Endpoint] = ENDPOINTS
    watched_changed: Callable[[], None] = lambda: None  # told after the watched set changed
    states: dict[str, State] = field(init=False)  # each endpoint's long-lived state, by its name
    boundary: Boundary = field(init=False)
    exposition: Exposition = field(init=False)

    def __post_init__(self) -> None:
        self.states = {endpoint.name: endpoint.state() for endpoint in self.endpoints}
        self.boundary = Boundary(self.failures, self.redactor)
        self.store.counts = self.counts
        self.exposition = Exposition(self.per_environment, self.live, self.version, self.boundary)

    @property
    def ledger(self) -> FlowLedger:
        """The work listing's flow ledger: transitions counted once, kept across reloads."""
        ledger: FlowLedger = self.states[PRIMARY.name]
        return ledger

    @property
    def discovered(self) -> DiscoveryState:
        """What the last successful discovery found."""
        state: DiscoveryState = self.states[DISCOVERY.name]
        return state

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop what is kept for environments no longer watched."""
        self.store.forget_all_but(environment_ids)
        for state in self.states.values():
            if isinstance(state, KeptPerEnvironment):
                state.forget_all_but(environment_ids)
        self.exposition.forget_all_but(environment_ids)
        self.counters.forget_all_but(environment_ids)
        self.failures.forget_all_but(environment_ids)

    def per_environment(self, results: Sequence[EnvironmentResult]) -> list[Collector]:
        """The families that change only when an environment's listing ends (or its counters reset)."""
        collectors: list[Collector] = [ScrapeCollector(results, self.store.last_success)]
        for endpoint in self.endpoints:
            if endpoint.per_environment:
                collectors += endpoint.collectors(results, self.states[endpoint.name])
        return collectors

    def account(self) -> list[Collector]:
        """The families of the account-wide endpoints (discovery), for the exporter's own metrics."""
        return [
            collector
            for endpoint in self.endpoints
            if not endpoint.per_environment
            for collector in endpoint.collectors((), self.states[endpoint.name])
        ]

    def version(self, environment_id: str) -> tuple[object, ...]:
        """What an environment's rendered families depend on besides its result, endpoint by endpoint."""
        return tuple(
            endpoint.version(self.states[endpoint.name], environment_id) for endpoint in self.endpoints
        )

    def counts(self, result: EnvironmentResult) -> Mapping[str, int]:
        """Items per state, from the primary endpoint's value, for the landing page."""
        primary = self.endpoints[0]
        value = result.values.get(primary.name)
        return primary.counts(value) if value is not None and primary.counts is not None else NO_COUNTS

    def live(self, environment_ids: Sequence[str]) -> list[Collector]:
        """The families that change with every request."""
        return [EngineCountersCollector(self.counters, environment_ids)]


def build(config: Config, lasting: Lasting, shard: Shard) -> Served:
    """Wire one config generation; nothing runs until `Served.start()`."""

    def connection_pool() -> httpx.AsyncBaseTransport:  # one per environment: a request or two at a time
        return lasting.transport(lasting.upstream_tls)

    client = UpstreamClient(connection_pool, config.api.max_response_bytes)
    requests = RetryingGet(
        config.api,
        client,
        lasting.redactor,
        budget=lasting.budget,
        wall_clock=lasting.wall_clock,
    )
    engine = Engine(
        [
            endpoint.make_source(config, lasting.states[endpoint.name], lasting.wall_clock)
            for endpoint in lasting.endpoints
            if endpoint.per_environment
        ],
        requests,
        concurrency=config.scrape.concurrency,
        observer=lasting.counters,
        failures=lasting.failures,
        redactor=lasting.redactor,
        on_result=lasting.store.put,
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
            lasting.watched_changed()

    watcher = KeyWatcher(config, lasting.keys, lasting.redactor.hold, changed)
    discovery = (
        Discovery(
            config.discovery,
            requests,
            lasting.discovered,
            lasting.redactor,
            changed,
            path=DISCOVERY.path,
            decode=DISCOVERY.decode,
        )
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
        # What this generation sets on what outlives it, once nothing of its start can fail: a
        # reload refused on the way leaves the running generation's budget and families as they were.
        lasting.budget.configure(config.api.max_requests_per_second)
        lasting.exposition.exclude(frozenset(config.metrics.exclude))
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
