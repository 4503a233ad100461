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
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.config.flags import parse_args, parse_external_url, parse_listen_address, parse_shard
from exporter.config.load import load_config, parse_config
from exporter.config.schema import Config
from exporter.config.shard import Shard
from exporter.config.yamldoc import ConfigError
from exporter.endpoints import ENDPOINTS, Endpoint
from exporter.logs import setup_logging
from exporter.metrics.own import (
    BudgetCollector,
    BuildInfoCollector,
    ReloadCollector,
    SchedulerCollector,
)
from exporter.redact import Redactor
from exporter.running.reload import Load, Reloader, ReloadState
from exporter.web.app import ExporterApp
from exporter.web.auth import WebConfig, load_web_config
from exporter.web.server import HttpServer, ServerLimits, TlsContext, bind
from exporter.wiring import Lasting, build

log = logging.getLogger("exporter")


def build_registry(
    reload_state: ReloadState,
    lasting: Lasting,
    shard: Shard,
    watched: Callable[[], int],
    known: Callable[[], int],
) -> CollectorRegistry:
    """The exporter's own metrics, shown on /metrics next to the environments'."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(BuildInfoCollector(shard, watched, known))
    registry.register(ReloadCollector(reload_state))
    registry.register(BudgetCollector(lasting.budget))
    for collector in lasting.account():  # the account-wide endpoints' metrics (discovery)
        registry.register(collector)
    registry.register(SchedulerCollector(lasting.schedule))
    return registry


def checked(config: Config, shard: Shard, source: str) -> str:
    """--check-config's answer: what was found, and which key each environment uses (never the key)."""
    discovery = config.discovery
    found = [
        f"{source}: OK: {len(config.environments)} environment(s) configured",
        "discovery on" + (f", keys in {config.keys_dir}" if config.keys_dir else "")
        if discovery
        else "discovery off",
        f"shard {shard.index} of {shard.total}" if shard.total > 1 else "one shard",
        f"scrape mode {config.scrape.mode}",
    ]
    lines = [", ".join(found)]
    keys_dir = config.api.environment_keys_dir
    for env in config.environments:
        where = f"{env.credentials.type} from {env.credentials.source}"
        if not env.own_credentials and keys_dir is not None:
            where = f"the key file {keys_dir / env.id} if there, else {where}"
        lines.append(f"  {env.id} ({env.name}): {where}")
    return "\n".join(lines)


def _source(config_file: str) -> str:
    return "<stdin>" if config_file == "-" else config_file


def loader(args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO | None = None) -> Load:
    """What (re)loading means for these flags: both files, every problem at once.

    With --demo the config is the simulator's, started once, here. `--config.file -` reads
    `stdin`, once (only --check-config takes it).
    """
    read_keys = not args.check_config_skip_keys
    demo: Config | None = None
    if args.demo:
        from exporter.demo import start_demo

        demo = start_demo()

    def load() -> tuple[Config, WebConfig | None]:
        problems: list[str] = []
        config = demo
        web = None
        if config is None:
            try:
                if args.config_file == "-" and stdin is not None:
                    config = parse_config(stdin.read(), environ, source="<stdin>", read_keys=read_keys)
                else:
                    config = load_config(args.config_file, environ, read_keys=read_keys)
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
    external_url: str = "",
    on_started: Callable[[Reloader], None] | None = None,
    endpoints: Sequence[Endpoint] = ENDPOINTS,
    watched_changed: Callable[[], None] = lambda: None,
    reloaded: Callable[[], None] = lambda: None,
) -> None:
    """Serve on `sock` until `stop` is set; then stop gracefully. `endpoints`: what is read upstream;
    `watched_changed` and `reloaded` are told when the watched set changes and after each reload."""
    lasting = Lasting(endpoints=endpoints, watched_changed=watched_changed)
    state, tls = ReloadState(), TlsContext(None)
    shard = shard or Shard()
    reloader = Reloader(
        initial,
        load,
        lambda config: build(config, lasting, shard),
        state=state,
        tls=tls,
        forget=lasting.forget_all_but,
        clean=lasting.redactor.clean,
        reloaded=reloaded,
    )
    await reloader.start()
    registry = build_registry(
        state,
        lasting,
        shard,
        watched=lambda: len(reloader.current.targets.environments()),
        known=lambda: reloader.current.targets.known(),
    )
    app = ExporterApp(
        reloader,
        registry,
        lasting.exposition,
        lasting.store,
        state,
        clean=lasting.redactor.clean,
        demo=demo,
        external_url=external_url,
    )
    app.start()
    server = HttpServer(app, sock, tls, limits or ServerLimits())
    await server.start()
    if on_started is not None:
        on_started(reloader)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    await app.aclose()
    await reloader.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reload handler is in place, not a kill
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = parse_listen_address(args.listen)
        shard = parse_shard(args.shard_index, args.shard_total, socket.gethostname())
        external_url = parse_external_url(args.external_url)
    except ValueError as exc:
        sys.exit(str(exc))
    if args.check_config_skip_keys and not args.check_config:
        sys.exit("--check-config.skip-keys goes with --check-config")
    if args.config_file == "-" and not args.check_config:
        sys.exit(
            "--config.file -: standard input can be read once, for --check-config; a running exporter "
            "reads its config file again on reload"
        )
    load = loader(args, os.environ, stdin=sys.stdin)
    try:
        config, web = load()
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # our own bug while loading: one line, never a traceback with a key in it
        sys.exit(f"the configuration could not be loaded: {type(exc).__name__}: {Redactor().clean(str(exc))}")
    if args.check_config:
        print(checked(config, shard, "--demo" if args.demo else _source(args.config_file)))
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
    asyncio.run(_serve_until_signalled(sock, (config, web), load, args.demo, limits, shard, external_url))


async def _serve_until_signalled(
    sock: socket.socket,
    initial: tuple[Config, WebConfig | None],
    load: Load,
    demo: bool,
    limits: ServerLimits,
    shard: Shard,
    external_url: str,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[list[str]]] = set()

    memory = LongLived()
    settling = loop.create_task(memory.settle_every(SETTLE_SECONDS), name="settle memory")

    def on_started(reloader: Reloader) -> None:
        memory.settle()  # modules, classes, the first config: they live as long as the process

        def reload() -> None:
            task = loop.create_task(reloader.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_exporter(
        sock,
        initial,
        load,
        stop,
        demo=demo,
        shard=shard,
        limits=limits,
        external_url=external_url,
        on_started=on_started,
        watched_changed=memory.freeze,
        reloaded=memory.settle,
    )
    settling.cancel()


SETTLE_SECONDS = 3600.0


class LongLived:
    """Keeps what lives long out of the cyclic garbage collector's way (`gc.freeze`), so that a full
    collection walks only what scrapes made since: with 20,000 environments, one took 60-70 ms.

    - `freeze()`, after the watched set changed (discovery): what is watched now is frozen. It
      costs nothing (the collector's lists are moved, not walked).
    - `settle()`, at start, after each reload and every `SETTLE_SECONDS`: the frozen objects are
      let go (`gc.unfreeze`), everything is collected once (about 70 ms for 20,000 environments),
      and what is left is frozen again. A cycle frozen while alive and dropped since (a replaced
      config generation) is collected here: tests/test_reload.py checks that reloads leak nothing.
    """

    def freeze(self) -> None:
        gc.freeze()

    def settle(self) -> None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    async def settle_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.settle()
