"""`anthropic-work-exporter`: flags, wiring, and the process's lifetime.

The only module that reads `os.environ`, calls `sys.exit`, handles signals or
builds the long-lived registry; everything else gets what it needs passed in.

    SIGTERM, SIGINT  stop accepting, let requests being answered finish (at most
                     ServerLimits.graceful_seconds), abandon listings, exit 0
    SIGHUP           reload the config file and the web config
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .app import ExporterApp
from .budget import RequestBudget
from .client import UpstreamClient
from .collectors.exporter import (
    BudgetCollector,
    BuildInfoCollector,
    DiscoveryCollector,
    ReloadCollector,
    ReloadState,
)
from .collectors.flow import FlowCollector
from .collectors.scrape import EngineCountersCollector, ScrapeCollector
from .collectors.stats import StatsCollector
from .collectors.work import WorkCollector
from .config import Config, ConfigError, load_config
from .discovery import Discovery
from .engine import Engine, EngineCounters, EnvironmentResult
from .exposition import Exposition
from .failures import FailureLog
from .flow import FlowLedger
from .logs import LEVELS, setup_logging
from .policy import BackgroundPolicy, OnDemandPolicy, Policy, ResultStore
from .redact import Redactor
from .runtime import Load, Reloader, Served
from .server import HttpServer, ServerLimits, TlsContext, bind
from .sources.stats import StatsSource
from .sources.work import WorkSource
from .targets import DiscoveryState, Shard, Targets
from .web import WebConfig, load_web_config

# Listed as free in the Prometheus default port allocations when chosen.
DEFAULT_PORT = 9723
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
DEMO_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"  # a demo is for the machine it runs on

log = logging.getLogger("exporter")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="anthropic-work-exporter",
        description="Prometheus exporter for the work items of Anthropic Managed Agents "
        "self-hosted environments.",
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        metavar="PATH",
        help="YAML config file (default: %(default)s)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        metavar="HOST:PORT",
        help=f"address to serve on (default: {DEFAULT_LISTEN}, all interfaces; with --demo, {DEMO_LISTEN})",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="PATH",
        help="TLS and basic auth, in the Prometheus exporter-toolkit web config format",
    )
    p.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info")
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt")
    p.add_argument(
        "--demo",
        action="store_true",
        help="serve metrics of a built-in simulated API with three lively "
        "environments; needs no key and no config file",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config (and web config), print every problem, and exit",
    )
    p.add_argument(
        "--shard.index",
        dest="shard_index",
        default="0",
        metavar="N|auto",
        help="watch only the environments whose stable hash of the id falls in shard N of --shard.total; "
        "auto: N is the trailing number of the host name (StatefulSet pod name-2 is shard 2)",
    )
    p.add_argument(
        "--shard.total",
        dest="shard_total",
        type=int,
        default=1,
        metavar="M",
        help="how many shards (replicas) share the environments (default: %(default)s)",
    )
    p.add_argument("--version", action="version", version=f"anthropic-work-exporter {__version__}")
    args = p.parse_args(argv)
    if args.listen is None:
        args.listen = DEMO_LISTEN if args.demo else DEFAULT_LISTEN
    return args


def parse_shard(index: str, total: int, hostname: str) -> Shard:
    """--shard.index N|auto and --shard.total M; `hostname` is where auto reads N from."""
    if total < 1:
        raise ValueError(f"--shard.total: want a positive number, got {total}")
    if index == "auto":
        match = re.search(r"(\d+)$", hostname)
        if match is None:
            raise ValueError(
                f"--shard.index auto: the host name {hostname!r} does not end in a number "
                "(a StatefulSet pod's does: name-0, name-1, ...)"
            )
        index = match.group(1)
    if not index.isdigit() or not 0 <= int(index) < total:
        raise ValueError(f"--shard.index: want auto or a number from 0 to {total - 1}, got {index!r}")
    return Shard(int(index), total)


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: want HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)


def build_registry(reload_state: ReloadState, lasting: Lasting, shard: Shard) -> CollectorRegistry:
    """The exporter's own metrics, shown on /metrics next to the environments'."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(BuildInfoCollector(shard))
    registry.register(ReloadCollector(reload_state))
    registry.register(BudgetCollector(lasting.budget))
    registry.register(DiscoveryCollector(lasting.discovered))
    return registry


@dataclass
class Lasting:
    """What outlives a config reload: counters, logs' memory, stored results, transitions."""

    counters: EngineCounters = field(default_factory=EngineCounters)
    failures: FailureLog = field(default_factory=FailureLog)
    store: ResultStore = field(default_factory=ResultStore)
    ledger: FlowLedger = field(default_factory=FlowLedger)
    budget: RequestBudget = field(default_factory=RequestBudget)
    discovered: DiscoveryState = field(default_factory=DiscoveryState)
    # Made once per process: loading the CA bundle for every reload would cost a
    # megabyte of memory and tens of milliseconds each time.
    upstream_tls: ssl.SSLContext = field(default_factory=httpx.create_ssl_context)
    exposition: Exposition = field(init=False)

    def __post_init__(self) -> None:
        self.exposition = Exposition(self.per_environment, self.live, self.ledger.mark)

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """After a reload: drop what is kept for environments no longer watched."""
        self.store.forget_all_but(environment_ids)
        self.ledger.forget_all_but(environment_ids)
        self.exposition.forget_all_but(environment_ids)

    def keep(self, result: EnvironmentResult) -> None:
        """A listing's result as it ends: stored, and rendered ahead of the next scrape."""
        self.store.put(result)
        self.exposition.prepare(result)

    def per_environment(self, results: Sequence[EnvironmentResult]) -> list[Collector]:
        """The families that change only when an environment's listing ends (or its counters reset)."""
        return [
            WorkCollector(results),
            StatsCollector(results),
            ScrapeCollector(results, self.store.last_success),
            FlowCollector(self.ledger, [result.environment.id for result in results]),
        ]

    def live(self, environment_ids: list[str]) -> list[Collector]:
        """The families that change with every request."""
        return [EngineCountersCollector(self.counters, set(environment_ids))]


def build(config: Config, lasting: Lasting, shard: Shard) -> Served:
    """Wire one config generation: connection pools -> client -> sources -> engine -> policy,
    and what this replica watches (its shard of the configured and discovered environments)."""

    def connection_pool() -> httpx.AsyncClient:  # one per environment: a request or two at a time
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        return httpx.AsyncClient(verify=lasting.upstream_tls, limits=limits, follow_redirects=False)

    client = UpstreamClient(connection_pool, config.api.max_response_bytes)
    lasting.budget.configure(config.api.max_requests_per_second)
    redactor = Redactor(config.secrets())
    work = WorkSource(
        config.api.page_size,
        config.api.max_pages,
        config.buckets,
        config.breakdown,
        lasting.ledger,
        config.scrape.clock_skew_seconds,
        time.time,
    )
    engine = Engine(
        config.api,
        [work, StatsSource(time.time)],
        client,
        concurrency=config.scrape.concurrency,
        observer=lasting.counters,
        failures=lasting.failures,
        redactor=redactor,
        budget=lasting.budget,
        on_result=lasting.keep,
    )
    targets = Targets(config, shard, lasting.discovered, on_key=redactor.add)
    discovery = None
    if config.discovery is not None:
        discovery = Discovery(
            config.discovery,
            engine,
            lasting.discovered,
            redactor,
            on_change=lambda: lasting.forget_all_but({env.id for env in targets.environments()}),
        )
        discovery.start()
    scrape = config.scrape
    policy: Policy
    if scrape.mode == "background":
        policy = BackgroundPolicy(
            engine, lasting.store, targets.environments, scrape.refresh_interval_seconds
        )
    else:
        policy = OnDemandPolicy(engine, lasting.store, scrape.min_interval_seconds)

    async def aclose() -> None:
        if discovery is not None:
            await discovery.aclose()
        await policy.aclose()

    return Served(policy, targets, aclose)


def loader(args: argparse.Namespace, environ: Mapping[str, str]) -> Load:
    """What (re)loading means for these flags: both files, every problem at once.

    With --demo the config is the simulator's, started once, here.
    """
    demo: Config | None = None
    if args.demo:
        from .demo import start_demo  # the simulator loads only when asked for

        demo = start_demo()

    def load() -> tuple[Config, WebConfig | None]:
        problems: list[str] = []
        config = demo
        web = None
        if config is None:
            try:
                config = load_config(args.config_file, environ)
            except ConfigError as exc:
                problems += exc.problems
        if args.web_config:
            try:
                web = load_web_config(args.web_config)
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        assert config is not None
        return config, web

    return load


async def run_exporter(
    sock: socket.socket,
    initial: tuple[Config, WebConfig | None],
    load: Load,
    stop: asyncio.Event,
    *,
    demo: bool = False,
    shard: Shard | None = None,
    limits: ServerLimits | None = None,
    on_started: Callable[[Reloader], None] | None = None,
) -> None:
    """Serve on `sock` until `stop` is set; then stop gracefully."""
    lasting, state, tls, shard = Lasting(), ReloadState(), TlsContext(None), shard or Shard()
    reloader = Reloader(
        initial,
        load,
        lambda config: build(config, lasting, shard),
        state=state,
        tls=tls,
        forget=lasting.forget_all_but,
    )
    registry = build_registry(state, lasting, shard)
    app = ExporterApp(reloader, registry, lasting.exposition, lasting.store, demo=demo)
    server = HttpServer(app, sock, tls, limits or ServerLimits())
    await server.start()
    if on_started is not None:
        on_started(reloader)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    await reloader.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reload handler is in place, not a kill
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = parse_listen_address(args.listen)
        shard = parse_shard(args.shard_index, args.shard_total, socket.gethostname())
    except ValueError as exc:
        sys.exit(str(exc))
    load = loader(args, os.environ)
    try:
        config, web = load()
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(1)
    if args.check_config:
        source = "--demo" if args.demo else args.config_file
        print(f"{source}: OK, {len(config.environments)} environment(s)")
        for env in config.environments:  # which key each one uses, never the key itself
            print(f"  {env.id} ({env.name}): {env.credentials.type} from {env.credentials.source}")
        sys.exit(0)
    limits = ServerLimits()
    try:
        sock = bind(host, port, limits.backlog)
    except OSError as exc:
        sys.exit(f"cannot listen on {args.listen}: {exc.strerror}")
    log.info(
        "listening",
        extra={
            "address": f"{host}:{sock.getsockname()[1]}",
            "environments": len(config.environments),
            "tls": bool(web and web.ssl_context),
            "version": __version__,
            "pid": os.getpid(),
            "shard": f"{shard.index} of {shard.total}",
        },
    )
    asyncio.run(_serve_until_signalled(sock, (config, web), load, args.demo, limits, shard))


async def _serve_until_signalled(
    sock: socket.socket,
    initial: tuple[Config, WebConfig | None],
    load: Load,
    demo: bool,
    limits: ServerLimits,
    shard: Shard,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[list[str]]] = set()

    def on_started(reloader: Reloader) -> None:
        def reload() -> None:
            task = loop.create_task(reloader.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_exporter(
        sock, initial, load, stop, demo=demo, shard=shard, limits=limits, on_started=on_started
    )


def healthcheck(cmdline_path: str = "/proc/1/cmdline") -> None:
    """`python -m exporter.healthcheck`: exit 0 when the container's exporter answers, else 1."""
    from .healthcheck import exporter_arguments, probe

    cmdline = Path(cmdline_path).read_bytes().decode(errors="replace").split("\0")
    try:
        problem = probe(exporter_arguments([word for word in cmdline if word]))
    except ConfigError as exc:  # the web config cannot be read or is wrong
        problem = "; ".join(exc.problems)
    except ValueError as exc:  # bad flags
        problem = str(exc)
    if problem:
        sys.exit(f"unhealthy: {problem}")
