"""Load and validate the exporter's YAML config.

Every problem is collected before anything is reported, so an operator fixes a
broken file in one pass. Each message names the file, the line (where the YAML
parser knows it) and the key path, e.g.::

    config.yaml:7: environments[1].credentials.type: must be environment_key or api_key

Credentials are resolved here from `value_env` or `value_file`; the key itself
is wrapped in :class:`Secret` so that no repr, log line or traceback can show
it. A key from a `value_file` is a `FileSecret`: it is read again when the file
changes on disk (a rotated Kubernetes Secret), with no reload.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.config.keys import FileSecret, KeyProblem, Secret, read_key_file, usable_key
from exporter.config.vocabulary import (
    CREDENTIAL_TYPES,
    DEFAULT_ANTHROPIC_VERSION,
    MANAGED_AGENTS_BETA,
    environment_id_problem,
)
from exporter.config.yamldoc import ConfigError, YamlDocument

__all__ = ["ConfigError", "Credentials", "Environment", "Secret", "load_config", "parse_config"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
ENVIRONMENT_KEY_VAR = "ANTHROPIC_ENVIRONMENT_KEY"
API_KEY_VAR = "ANTHROPIC_API_KEY"

# Workers heartbeat every min(ttl/2, 30) s and lose their lease after 90 s without one
# (the SDK's worker): 45 s is one missed heartbeat, 90 s a lost lease; coarse buckets
# above show a worker long gone.
DEFAULT_HEARTBEAT_BUCKETS = (5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Time in state spans seconds (a queue that drains) to days (stuck work).
DEFAULT_STATE_AGE_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
)

# Flow histograms: seconds for a queue that keeps up to hours for one that does not,
# and runs of minutes to a working day.
DEFAULT_QUEUE_WAIT_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
DEFAULT_START_DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DEFAULT_RUN_DURATION_BUCKETS = (
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
)
DEFAULT_STOP_DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Every key the config accepts, by section: anything else is an error.
KEYS: dict[str, set[str]] = {
    "": {"api", "scrape", "buckets", "breakdown", "discovery", "environments"},
    "api": {
        "base_url",
        "credentials",
        "anthropic_version",
        "betas",
        "workspace_id",
        "page_size",
        "max_pages",
        "request_timeout_seconds",
        "max_retries",
        "max_response_bytes",
        "allow_insecure_http",
        "stats_credentials",
        "max_requests_per_second",
    },
    "credentials": {"type", "value_env", "value_file"},
    "scrape": {
        "mode",
        "min_interval_seconds",
        "refresh_interval_seconds",
        "refresh_timeout_seconds",
        "timeout_seconds",
        "timeout_offset_seconds",
        "concurrency",
        "clock_skew_seconds",
        "max_recent_transitions",
    },
    "buckets": {
        "heartbeat_age_seconds",
        "state_age_seconds",
        "queue_wait_seconds",
        "start_duration_seconds",
        "run_duration_seconds",
        "stop_duration_seconds",
    },
    "breakdown": {"metadata_keys", "max_values"},
    "discovery": {"credentials", "refresh_interval_seconds", "environment_keys_dir", "unwatch_after_missing"},
    "environments[]": {"id", "name", "credentials", "stats_credentials", "workspace_id"},
}


@dataclass(frozen=True)
class Credentials:
    """How to authenticate: `environment_key` is a bearer token, `api_key` an X-Api-Key."""

    type: str
    value: Secret
    source: str  # where it came from, for messages: "env ANTHROPIC_API_KEY", "file /run/secrets/k"


# An environment found by discovery with no key to list it with (type "none"): its listing
# fails with reason no_credentials instead of asking the API.
NO_CREDENTIALS = Credentials("none", Secret(""), "no key")


def missing_key(credentials: Credentials) -> str | None:
    """Why these credentials have no key to send now (reason no_credentials), or None when they have."""
    if credentials.type == NO_CREDENTIALS.type:
        return credentials.source
    if isinstance(credentials.value, FileSecret) and credentials.value.problem is not None:
        return credentials.value.problem  # the key file changed into something that is no key
    return None


@dataclass(frozen=True)
class Environment:
    id: str
    name: str
    credentials: Credentials
    workspace_id: str | None = None
    stats_credentials: Credentials | None = None  # for work/stats; None: `credentials`


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    betas: tuple[str, ...] = (MANAGED_AGENTS_BETA,)
    workspace_id: str | None = None
    page_size: int = 100
    max_pages: int = 1000
    request_timeout_seconds: float = 10.0
    max_retries: int = 2
    # Decompressed bytes one response may have: a 1,000-item page is about 0.6 MiB.
    max_response_bytes: int = 8 * 1024 * 1024
    allow_insecure_http: bool = False
    max_requests_per_second: float = 0.0  # every upstream request together; 0: no limit


SCRAPE_MODES = ("on_demand", "background")


@dataclass(frozen=True)
class ScrapeConfig:
    mode: str = "on_demand"  # on_demand: list when scraped; background: list on a timer
    min_interval_seconds: float = 0.0  # on_demand: a listing younger than this is served again
    refresh_interval_seconds: float = 60.0  # background: how often each environment is listed
    refresh_timeout_seconds: float = 300.0  # background: how long one listing may take, from its turn
    timeout_seconds: float = 10.0
    timeout_offset_seconds: float = 0.5
    concurrency: int = 32  # measured: benchmarks/fleet.py, docs/design.md
    # How far the API's clock may run behind ours without a transition being missed; a timestamp
    # more than this ahead of ours is implausible.
    clock_skew_seconds: float = 60.0
    # Transitions per environment the flow ledger remembers between listings (so that each is
    # counted once); past it the oldest are forgotten, and counted.
    max_recent_transitions: int = 50_000


@dataclass(frozen=True)
class BucketConfig:
    heartbeat_age_seconds: tuple[float, ...] = DEFAULT_HEARTBEAT_BUCKETS
    state_age_seconds: tuple[float, ...] = DEFAULT_STATE_AGE_BUCKETS
    queue_wait_seconds: tuple[float, ...] = DEFAULT_QUEUE_WAIT_BUCKETS
    start_duration_seconds: tuple[float, ...] = DEFAULT_START_DURATION_BUCKETS
    run_duration_seconds: tuple[float, ...] = DEFAULT_RUN_DURATION_BUCKETS
    stop_duration_seconds: tuple[float, ...] = DEFAULT_STOP_DURATION_BUCKETS


@dataclass(frozen=True)
class Thresholds:
    """When a work item needs attention: the bundled alerts' own thresholds (docs/runbooks.md).

    Workers renew a 90 s lease every 30 s (the SDK's worker): a heartbeat older than the
    lease, or none past it, means the worker is gone.
    """

    queue_wait_seconds: float = 300.0  # AnthropicWorkQueueWaitTooLong
    stale_heartbeat_seconds: float = 90.0  # AnthropicWorkStaleHeartbeat
    without_heartbeat_seconds: float = 90.0  # AnthropicWorkStartingWithoutHeartbeat
    stopping_seconds: float = 600.0  # AnthropicWorkStuckStopping


@dataclass(frozen=True)
class BreakdownConfig:
    metadata_keys: tuple[str, ...] = ()  # work items are counted per value of these metadata keys
    max_values: int = 50  # per key and environment; further values count as "__other__"


@dataclass(frozen=True)
class DiscoveryConfig:
    """Watch every self-hosted, unarchived environment `GET /v1/environments` lists."""

    credentials: Credentials  # an API key: the listing is account-wide
    refresh_interval_seconds: float = 300.0
    # A file named <environment_id> here holds that environment's key (a mounted Secret).
    environment_keys_dir: Path | None = None
    # Consecutive successful discoveries an environment may be missing from and still be watched
    # (with its series and counters): one answer that leaves it out does not flap the fleet.
    unwatch_after_missing: int = 3


@dataclass(frozen=True)
class Config:
    environments: tuple[Environment, ...]
    api: ApiConfig = field(default_factory=ApiConfig)
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)
    buckets: BucketConfig = field(default_factory=BucketConfig)
    breakdown: BreakdownConfig = field(default_factory=BreakdownConfig)
    discovery: DiscoveryConfig | None = None
    stats_credentials: Credentials | None = None  # api.stats_credentials, for discovered environments
    thresholds: Thresholds = field(default_factory=Thresholds)

    def credentials(self) -> list[tuple[str, Credentials]]:
        """Every configured credential, with where it is used ("env_01", "discovery", ...)."""
        used: list[tuple[str, Credentials]] = []
        for env in self.environments:
            used.append((env.id, env.credentials))
            if env.stats_credentials is not None:
                used.append((env.id, env.stats_credentials))
        if self.discovery is not None:
            used.append(("discovery", self.discovery.credentials))
        if self.stats_credentials is not None:
            used.append(("api.stats_credentials", self.stats_credentials))
        return used

    def secrets(self) -> list[str]:
        """Every configured key as it is now (a key file's current one), so that logs can be scrubbed."""
        keys = [env.credentials.value.reveal() for env in self.environments]
        keys += [e.stats_credentials.value.reveal() for e in self.environments if e.stats_credentials]
        for extra in (self.discovery.credentials if self.discovery else None, self.stats_credentials):
            if extra is not None:
                keys.append(extra.value.reveal())
        return keys


def load_config(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read `path` and validate it; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read config file: not UTF-8 text"]) from None
    return parse_config(text, environ, source=str(path), base_dir=path.parent)


def parse_config(
    text: str,
    environ: Mapping[str, str],
    source: str = "config.yaml",
    base_dir: Path | None = None,
) -> Config:
    """Validate YAML text; `environ` is where `value_env` names are looked up."""
    document = YamlDocument(text, source)
    checker = _Checker(document, environ, base_dir or Path("."))
    config = checker.config(document.data)
    document.raise_problems()
    assert config is not None
    return config


_Check = Callable[[Any], str | None]


class _Checker:
    """Walks the parsed YAML once, building the Config and collecting problems."""

    def __init__(self, document: YamlDocument, environ: Mapping[str, str], base_dir: Path):
        self.document = document
        self.problems = document.problems  # the same list: read to tell whether a check added one
        self.environ = environ
        self.base_dir = base_dir

    def problem(self, path: str, message: str) -> None:
        self.document.problem(path, message)

    # -- generic shape checks ------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(
        self, m: dict[str, Any], key: str, path: str, default: str | None = None, required: bool = False
    ) -> str | None:
        p = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            if required:
                self.problem(p, "is required")
            return default
        value = m[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(p, f"must be a non-empty string, got {_kind(value)}")
            return default
        return value

    def number(
        self,
        m: dict[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        integer: bool = False,
        minimum: float = 0,
        exclusive: bool = True,
    ) -> Any:
        p = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            return default
        value = m[key]
        ok_type = (isinstance(value, int) if integer else isinstance(value, int | float)) and not isinstance(
            value, bool
        )
        if not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            self.problem(p, f"must be {'an integer' if integer else 'a number'}, got {_kind(value)}")
            return default
        if value < minimum or (exclusive and value == minimum):
            self.problem(p, f"must be {'>' if exclusive else '>='} {minimum:g}, got {value}")
            return default
        return int(value) if integer else float(value)

    def boolean(self, m: dict[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m or m[key] is None:
            return default
        if not isinstance(m[key], bool):
            self.problem(f"{path}.{key}", f"must be true or false, got {_kind(m[key])}")
            return default
        return m[key]

    # -- sections -------------------------------------------------------------

    def config(self, data: Any) -> Config | None:
        top = self.mapping(data, "", KEYS[""])
        if data is not None and not isinstance(data, dict):
            return None
        api_raw = self.mapping(top.get("api"), "api", KEYS["api"])
        api = self.api(api_raw)
        has_default = api_raw.get("credentials") is not None
        default_creds = self.credentials(api_raw["credentials"], "api.credentials") if has_default else None
        stats_raw = api_raw.get("stats_credentials")
        default_stats = (
            self.credentials(stats_raw, "api.stats_credentials") if stats_raw is not None else None
        )
        discovery = None
        if "discovery" in top:
            discovery = self.discovery(self.mapping(top.get("discovery"), "discovery", KEYS["discovery"]))
        environments = self.environments(
            top.get("environments"),
            default_creds,
            has_default=has_default,
            default_stats=default_stats,
            optional="discovery" in top,
        )
        scrape = self.scrape(self.mapping(top.get("scrape"), "scrape", KEYS["scrape"]))
        buckets = self.buckets(self.mapping(top.get("buckets"), "buckets", KEYS["buckets"]))
        breakdown = self.breakdown(self.mapping(top.get("breakdown"), "breakdown", KEYS["breakdown"]))
        return Config(
            environments=tuple(environments),
            api=api,
            scrape=scrape,
            buckets=buckets,
            breakdown=breakdown,
            discovery=discovery,
            stats_credentials=default_stats,
        )

    def discovery(self, m: dict[str, Any]) -> DiscoveryConfig | None:
        d_interval = 300.0
        creds = None
        if m.get("credentials") is None:
            self.problem("discovery.credentials", "is required: discovery lists environments with an API key")
        else:
            creds = self.credentials(m["credentials"], "discovery.credentials")
        interval = self.number(m, "refresh_interval_seconds", "discovery", d_interval)
        keys_dir = None
        raw_dir = self.string(m, "environment_keys_dir", "discovery")
        if raw_dir is not None:
            keys_dir = Path(raw_dir) if Path(raw_dir).is_absolute() else self.base_dir / raw_dir
            if not keys_dir.is_dir():
                self.problem("discovery.environment_keys_dir", f"{raw_dir} is not a directory")
        unwatch = self.number(
            m, "unwatch_after_missing", "discovery", DiscoveryConfig.unwatch_after_missing, integer=True
        )
        if creds is None:
            return None
        return DiscoveryConfig(creds, interval, keys_dir, unwatch)

    def api(self, m: dict[str, Any]) -> ApiConfig:
        d = ApiConfig()
        allow_http = self.boolean(m, "allow_insecure_http", "api", d.allow_insecure_http)
        base_url = self.string(m, "base_url", "api", d.base_url) or d.base_url
        base_url = self.base_url(base_url.rstrip("/"), allow_http)
        betas = d.betas
        if m.get("betas") is not None:
            raw = m["betas"]
            if not isinstance(raw, list) or not all(isinstance(b, str) and b for b in raw):
                self.problem("api.betas", "must be a list of beta names")
            else:
                # The managed-agents beta is what makes the endpoint exist; keep it first.
                betas = (MANAGED_AGENTS_BETA, *[b for b in raw if b != MANAGED_AGENTS_BETA])
        version = m.get("anthropic_version")
        if version is not None and not isinstance(version, str):
            # Unquoted, 2023-06-01 is a YAML date: say how to fix it.
            self.problem(
                "api.anthropic_version",
                'must be a string such as "2023-06-01" (quote it: YAML reads an unquoted date as a date)',
            )
            version = None
        elif version is not None:
            version = self.string(m, "anthropic_version", "api")
        return ApiConfig(
            base_url=base_url,
            anthropic_version=version or d.anthropic_version,
            betas=betas,
            workspace_id=self.string(m, "workspace_id", "api"),
            page_size=self.number(m, "page_size", "api", d.page_size, integer=True),
            max_pages=self.number(m, "max_pages", "api", d.max_pages, integer=True),
            request_timeout_seconds=self.number(
                m, "request_timeout_seconds", "api", d.request_timeout_seconds
            ),
            max_retries=self.number(m, "max_retries", "api", d.max_retries, integer=True, exclusive=False),
            max_response_bytes=self.number(
                m,
                "max_response_bytes",
                "api",
                d.max_response_bytes,
                integer=True,
                minimum=65536,
                exclusive=False,
            ),
            allow_insecure_http=allow_http,
            max_requests_per_second=self.number(
                m, "max_requests_per_second", "api", d.max_requests_per_second, exclusive=False
            ),
        )

    def base_url(self, url: str, allow_http: bool) -> str:
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port  # both parse lazily, and raise on "http://[::1" or ":x"
        except ValueError as exc:
            self.problem("api.base_url", f"not a URL: {exc}")
            return DEFAULT_BASE_URL
        if parts.scheme not in ("http", "https") or not host:
            self.problem("api.base_url", f"must be an http(s) URL with a host, got {url!r}")
            return DEFAULT_BASE_URL
        if parts.scheme == "http" and not allow_http and not _is_loopback(host):
            self.problem(
                "api.base_url",
                "plain http:// is allowed for loopback hosts only; "
                "use https:// or set api.allow_insecure_http: true",
            )
        return url

    def scrape(self, m: dict[str, Any]) -> ScrapeConfig:
        d = ScrapeConfig()
        mode = m.get("mode", d.mode)
        if mode not in SCRAPE_MODES:
            self.problem("scrape.mode", f"must be {' or '.join(SCRAPE_MODES)}, got {mode!r}")
            mode = d.mode
        return ScrapeConfig(
            mode=mode,
            min_interval_seconds=self.number(
                m, "min_interval_seconds", "scrape", d.min_interval_seconds, exclusive=False
            ),
            refresh_interval_seconds=self.number(
                m, "refresh_interval_seconds", "scrape", d.refresh_interval_seconds
            ),
            refresh_timeout_seconds=self.number(
                m, "refresh_timeout_seconds", "scrape", d.refresh_timeout_seconds
            ),
            timeout_seconds=self.number(m, "timeout_seconds", "scrape", d.timeout_seconds),
            timeout_offset_seconds=self.number(
                m, "timeout_offset_seconds", "scrape", d.timeout_offset_seconds, exclusive=False
            ),
            concurrency=self.number(m, "concurrency", "scrape", d.concurrency, integer=True),
            clock_skew_seconds=self.number(
                m, "clock_skew_seconds", "scrape", d.clock_skew_seconds, exclusive=False
            ),
            max_recent_transitions=self.number(
                m, "max_recent_transitions", "scrape", d.max_recent_transitions, integer=True
            ),
        )

    def buckets(self, m: dict[str, Any]) -> BucketConfig:
        d = BucketConfig()
        return BucketConfig(
            heartbeat_age_seconds=self.bucket_list(m, "heartbeat_age_seconds", d.heartbeat_age_seconds),
            state_age_seconds=self.bucket_list(m, "state_age_seconds", d.state_age_seconds),
            queue_wait_seconds=self.bucket_list(m, "queue_wait_seconds", d.queue_wait_seconds),
            start_duration_seconds=self.bucket_list(m, "start_duration_seconds", d.start_duration_seconds),
            run_duration_seconds=self.bucket_list(m, "run_duration_seconds", d.run_duration_seconds),
            stop_duration_seconds=self.bucket_list(m, "stop_duration_seconds", d.stop_duration_seconds),
        )

    def breakdown(self, m: dict[str, Any]) -> BreakdownConfig:
        d = BreakdownConfig()
        keys = m.get("metadata_keys")
        metadata_keys = d.metadata_keys
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                self.problem("breakdown.metadata_keys", "must be a list of metadata key names")
            elif len(set(keys)) != len(keys):
                self.problem("breakdown.metadata_keys", "names a key twice")
            else:
                metadata_keys = tuple(keys)
        return BreakdownConfig(
            metadata_keys=metadata_keys,
            max_values=self.number(m, "max_values", "breakdown", d.max_values, integer=True),
        )

    def bucket_list(self, m: dict[str, Any], key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = m.get(key)
        if raw is None:
            return default
        ok = (
            isinstance(raw, list)
            and raw
            and all(
                isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) and b > 0
                for b in raw
            )
        )
        if not ok or any(a >= b for a, b in itertools.pairwise(raw)):
            self.problem(
                f"buckets.{key}",
                "must be a non-empty, strictly increasing list of "
                "positive finite numbers (+Inf is added for you)",
            )
            return default
        return tuple(float(b) for b in raw)

    def credentials(self, raw: Any, path: str) -> Credentials | None:
        m = self.mapping(raw, path, KEYS["credentials"])
        if not m and raw is not None and not isinstance(raw, dict):
            return None
        kind = m.get("type")
        if kind not in CREDENTIAL_TYPES:
            self.problem(
                f"{path}.type", "must be environment_key or api_key" + ("" if "type" in m else " (missing)")
            )
        has_env, has_file = m.get("value_env") is not None, m.get("value_file") is not None
        if has_env == has_file:
            self.problem(path, "needs exactly one of value_env or value_file")
            return None
        value: str | None = None
        if has_env:
            name = self.string(m, "value_env", path)
            if name is None:
                return None
            value = self.environ.get(name)
            if not value:
                self.problem(f"{path}.value_env", f"environment variable {name} is not set or empty")
                return None
            source = f"env {name}"
        else:
            fname = self.string(m, "value_file", path)
            if fname is None:
                return None
            file = Path(fname) if Path(fname).is_absolute() else self.base_dir / fname
            try:
                value = read_key_file(file)
            except KeyProblem as exc:
                self.problem(f"{path}.value_file", str(exc))
                return None
            if kind not in CREDENTIAL_TYPES:
                return None
            return Credentials(type=kind, value=FileSecret(value, file), source=f"file {fname}")
        if not usable_key(value):
            key = "value_env" if has_env else "value_file"
            self.problem(
                f"{path}.{key}",
                f"the key in {source} is not usable: it must be printable ASCII with no spaces inside",
            )
            return None
        if kind not in CREDENTIAL_TYPES:
            return None
        return Credentials(type=kind, value=Secret(value), source=source)

    def fallback_credentials(self) -> Credentials | None:
        """With no credentials configured, the SPEC's default: environment key, then API key."""
        for var, kind in ((ENVIRONMENT_KEY_VAR, "environment_key"), (API_KEY_VAR, "api_key")):
            value = self.environ.get(var)
            if value:
                if not usable_key(value):
                    self.problem(
                        "environments",
                        f"the key in env {var} is not usable: "
                        "it must be printable ASCII with no spaces inside",
                    )
                    return None
                return Credentials(kind, Secret(value), f"env {var}")
        return None

    def environments(
        self,
        raw: Any,
        default_creds: Credentials | None,
        has_default: bool,
        default_stats: Credentials | None = None,
        optional: bool = False,
    ) -> list[Environment]:
        if raw is None or (optional and raw == []):
            if not optional:
                self.problem("environments", "is required: list at least one environment id (or discovery)")
            return []
        if not isinstance(raw, list):
            self.problem("environments", f"must be a list of environments, got {_kind(raw)}")
            return []
        if not raw:
            self.problem("environments", "is empty: list at least one environment id")
            return []
        needs_fallback = not has_default and any(
            isinstance(item, dict) and item.get("credentials") is None for item in raw
        )
        problems_before = len(self.problems)
        fallback = self.fallback_credentials() if needs_fallback else None
        fallback_broken = len(self.problems) > problems_before  # already reported, once
        envs: list[Environment] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            path = f"environments[{i}]"
            m = self.mapping(item, path, KEYS["environments[]"])
            if not isinstance(item, dict):
                continue
            env_id = self.string(m, "id", path, required=True)
            if env_id is not None:
                problem = environment_id_problem(env_id)
                if env_id in seen:
                    self.problem(f"{path}.id", f"duplicate environment id {env_id}")
                elif problem is not None:  # it goes into a URL path: one safe segment only
                    self.problem(f"{path}.id", f"not a valid environment id {env_id[:80]!r}: it {problem}")
                    env_id = None
                seen.add(env_id or "")
            name = self.string(m, "name", path)
            if m.get("credentials") is not None:
                creds = self.credentials(m["credentials"], f"{path}.credentials")
            elif has_default:
                creds = default_creds  # None when api.credentials is broken: already reported
            else:
                creds = fallback
                if creds is None and not fallback_broken:
                    self.problem(
                        f"{path}.credentials",
                        "no credentials: set api.credentials, "
                        f"this environment's credentials, or {ENVIRONMENT_KEY_VAR} / "
                        f"{API_KEY_VAR} in the exporter's environment",
                    )
            stats = default_stats
            if m.get("stats_credentials") is not None:
                stats = self.credentials(m["stats_credentials"], f"{path}.stats_credentials")
            workspace = self.string(m, "workspace_id", path)
            if env_id is not None and creds is not None:
                envs.append(
                    Environment(
                        id=env_id,
                        name=name or env_id,
                        credentials=creds,
                        workspace_id=workspace,
                        stats_credentials=stats,
                    )
                )
        return envs


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
