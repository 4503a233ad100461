"""`anthropic-work-exporter`: flags, wiring, and the process's lifetime.

The only module that reads `os.environ`, calls `sys.exit` or builds the
long-lived registry; everything else gets what it needs passed in.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

import httpx
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from . import __version__
from .client import RequestCounter, WorkClient
from .collector import BuildInfoCollector
from .config import Config, ConfigError, load_config
from .logs import LEVELS, setup_logging
from .scrape import Scraper
from .server import ExporterApp, serve
from .web import WebConfig, load_web_config

# Listed as free in the Prometheus default port allocations when chosen.
DEFAULT_PORT = 9723
DEFAULT_LISTEN = f":{DEFAULT_PORT}"

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
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="address to serve on (default: %(default)s, all interfaces; 127.0.0.1:PORT for loopback only)",
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
    p.add_argument("--version", action="version", version=f"anthropic-work-exporter {__version__}")
    return p.parse_args(argv)


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: want HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)


def build_registry() -> CollectorRegistry:
    """The exporter's own metrics, shown on /metrics next to the environments'."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(BuildInfoCollector())
    return registry


def build_app(config: Config, web: WebConfig | None = None) -> tuple[ExporterApp, Scraper]:
    """Wire config -> client -> scraper -> app; one connection pool for everything."""
    concurrency = config.scrape.concurrency
    http = httpx.Client(
        limits=httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency),
        follow_redirects=False,
    )
    client = WorkClient(config.api, http, RequestCounter())
    scraper = Scraper(client, config.buckets, concurrency)
    return ExporterApp(config, scraper, build_registry(), web), scraper


def load(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Config, WebConfig | None]:
    """The config (or, with --demo, the simulator's) and the web config; every problem at once."""
    problems: list[str] = []
    config = web = None
    if args.demo:
        from .demo import start_demo  # the simulator loads only when asked for

        config = start_demo()
    else:
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


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        sys.exit(str(exc))
    try:
        config, web = load(args, os.environ)
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
    app, scraper = build_app(config, web)
    try:
        server = serve(app, host, port, web)
    except OSError as exc:
        sys.exit(f"cannot listen on {args.listen}: {exc.strerror}")
    log.info(
        "listening",
        extra={
            "address": f"{host}:{server.server_port}",
            "environments": len(config.environments),
            "tls": bool(web and web.ssl_context),
            "version": __version__,
        },
    )
    wait_for_signal()
    server.shutdown()
    scraper.close()


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
