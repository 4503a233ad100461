"""The exporter's command-line flags, parsed: shared by the exporter and its health check.

Only the standard library: the health check runs every few seconds in the container and
must start fast, so it reads these flags without loading the exporter.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from exporter import __version__
from exporter.config.shard import Shard

LOG_LEVELS = ("debug", "info", "warn", "error")


# Listed as free in the Prometheus default port allocations when chosen.
DEFAULT_PORT = 9723
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
DEMO_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"  # a demo is for the machine it runs on


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
        help="YAML config file (default: %(default)s); with --check-config, - reads standard input",
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
    p.add_argument(
        "--web.external-url",
        dest="external_url",
        default="",
        metavar="URL",
        help="the URL the exporter is reached at, when a proxy serves it under another address or path "
        "(https://example.com/work-exporter): the pages' links start with it",
    )
    p.add_argument("--log.level", dest="log_level", choices=list(LOG_LEVELS), default="info")
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
        "--check-config.skip-keys",
        dest="check_config_skip_keys",
        action="store_true",
        help="with --check-config: check everything but the keys themselves (no key file read, no key "
        "variable looked up), to check a rendered config before its Secrets exist; "
        "--config.file - reads the config from standard input",
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
    pod_prefix = None
    if index == "auto":
        match = re.search(r"(\d+)$", hostname)
        if match is None:
            raise ValueError(
                f"--shard.index auto: the host name {hostname!r} does not end in a number "
                "(a StatefulSet pod's does: name-0, name-1, ...)"
            )
        index, pod_prefix = match.group(1), hostname[: match.start()]
    if not index.isdigit() or not 0 <= int(index) < total:
        raise ValueError(f"--shard.index: want auto or a number from 0 to {total - 1}, got {index!r}")
    return Shard(int(index), total, pod_prefix)


def parse_external_url(value: str) -> str:
    """--web.external-url: an absolute http(s) URL without query or fragment, its trailing / dropped
    ("" when not set: links stay relative)."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"--web.external-url: want an absolute http(s) URL without ?query or #fragment, got {value!r}"
        )
    if not value.isascii() or any(c.isspace() or c in "<>\"'" for c in value):
        raise ValueError(f"--web.external-url: want a URL without spaces, quotes or <>, got {value!r}")
    return value.rstrip("/")


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: want HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)
