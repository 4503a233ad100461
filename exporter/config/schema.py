"""The config's schema, declared once: every key, its type, default, constraints and one line of docs.

Each section is a frozen dataclass; each key one field, declared with `option(default,
doc, **rules)`. The loader (`load.py`) reads nothing else: the keys a section accepts,
their checks and the messages that name them all follow from here, and so does the test
that `config.example.yaml` shows every key (`KEYS`). Rules:

- `minimum`, `exclusive` (default true): a number's lower bound (`> 0` unless said);
- `choices`: the words a string may be;
- `parse`: a check of its own, by name, where the type alone does not say enough
  (bucket bounds, credentials, a URL, the environment list);
- `needed`: for bucket bounds, (bound, the bundled rules that read it) pairs: those rules
  read the bucket by its `le`, so a list without the bound is refused, naming them;
- `yaml=False`: set by the exporter (or its flags), not read from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from exporter.config.keys import FileSecret, Secret
from exporter.config.vocabulary import DEFAULT_ANTHROPIC_VERSION, MANAGED_AGENTS_BETA

DEFAULT_BASE_URL = "https://api.anthropic.com"
ENVIRONMENT_KEY_VAR = "ANTHROPIC_ENVIRONMENT_KEY"
API_KEY_VAR = "ANTHROPIC_API_KEY"
SCRAPE_MODES = ("on_demand", "background")

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


def option(default: Any, doc: str, *, compare: bool = True, **rules: Any) -> Any:
    """A key: its default, one line of docs, and its rules (see the module's docstring).

    `compare=False` for what is no setting but a key (credentials): two configs that differ only
    in their keys have the same settings."""
    if isinstance(default, list | dict | set):
        raise TypeError("a mutable default is shared by every config: use a tuple")
    return field(default=default, compare=compare, metadata={"doc": doc, **rules})


def section(kind: type, doc: str, **rules: Any) -> Any:
    """A nested section, every key at its default when left out."""
    return field(default_factory=kind, metadata={"doc": doc, **rules})


# -- credentials and environments ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to authenticate: `environment_key` is a bearer token, `api_key` an X-Api-Key."""

    type: str
    value: Secret
    source: str  # where it came from, for messages: "env ANTHROPIC_API_KEY", "file /run/secrets/k"


# The keys of a `credentials` block: not the fields above, which are what the loader makes of them.
CREDENTIAL_KEYS = {
    "type": "environment_key (sent as Authorization: Bearer) or api_key (sent as X-Api-Key)",
    "value_env": "the environment variable that holds the key",
    "value_file": "the file that holds the key (a regular file of 16 characters or more; read on change)",
}

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


@dataclass(frozen=True, slots=True)
class Environment:
    id: str = option("", "the environment to watch: one safe URL path segment", yaml_required=True)
    name: str = option("", "display name, on anthropic_work_environment_info (default: the id)")
    credentials: Credentials = option(NO_CREDENTIALS, "this environment's own key (default: api.credentials)")
    workspace_id: str | None = option(None, "this environment's workspace (default: api.workspace_id)")
    stats_credentials: Credentials | None = option(
        None, "credentials for its work/stats (default: api.stats_credentials, else its own)"
    )
    # False when `credentials` are the defaults: a key file named by its id in
    # api.environment_keys_dir then comes first.
    own_credentials: bool = option(True, "whether credentials are its own", yaml=False)


# -- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiConfig:
    allow_insecure_http: bool = option(False, "allow plain http:// to hosts other than loopback")
    base_url: str = option(DEFAULT_BASE_URL, "the API root", parse="base_url")
    credentials: Credentials | None = option(
        None, "the default credentials of every environment", parse="credentials", compare=False
    )
    stats_credentials: Credentials | None = option(
        None,
        "credentials for GET .../work/stats (default: each environment's own)",
        parse="credentials",
        compare=False,
    )
    anthropic_version: str = option(
        DEFAULT_ANTHROPIC_VERSION, "the anthropic-version header", parse="version"
    )
    betas: tuple[str, ...] = option(
        (MANAGED_AGENTS_BETA,), "extra anthropic-beta values (managed-agents is always sent)", parse="betas"
    )
    workspace_id: str | None = option(None, "the anthropic-workspace-id header")
    environment_keys_dir: Path | None = option(
        None,
        "a file named <environment_id> here holds the key of any environment without credentials of its own",
        parse="directory",
    )
    page_size: int = option(100, "items per page (limit)", minimum=0)
    max_pages: int = option(1000, "more pages than this fail a listing", minimum=0)
    request_timeout_seconds: float = option(
        10.0, "one request's time, further cut by the deadline", minimum=0
    )
    max_retries: int = option(
        2, "retries of 408, 409, 429, 5xx and connection errors", minimum=0, exclusive=False
    )
    # A 1,000-item page is about 0.6 MiB.
    max_response_bytes: int = option(
        8 * 1024 * 1024, "bytes one response may have, decompressed", minimum=65536, exclusive=False
    )
    max_requests_per_second: float = option(
        0.0, "every upstream request together; 0: no limit", minimum=0, exclusive=False
    )


@dataclass(frozen=True)
class ScrapeConfig:
    mode: str = option(
        "on_demand", "on_demand: list when scraped; background: on a timer", choices=SCRAPE_MODES
    )
    min_interval_seconds: float = option(
        0.0, "on_demand: a listing younger than this is served again", minimum=0, exclusive=False
    )
    refresh_interval_seconds: float = option(
        60.0, "background: how often each environment is listed", minimum=0
    )
    refresh_timeout_seconds: float = option(
        300.0, "background: how long one listing may take, from its turn", minimum=0
    )
    timeout_seconds: float = option(10.0, "a scrape's time when Prometheus does not say", minimum=0)
    timeout_offset_seconds: float = option(
        0.5, "less than X-Prometheus-Scrape-Timeout-Seconds", minimum=0, exclusive=False
    )
    concurrency: int = option(32, "environments listed at once (measured: benchmarks/fleet.py)", minimum=0)
    clock_skew_seconds: float = option(
        60.0,
        "how far the API's clock may run behind ours; more ahead is implausible",
        minimum=0,
        exclusive=False,
    )
    max_recent_transitions: int = option(
        50_000, "transitions per environment remembered between listings", minimum=0
    )


@dataclass(frozen=True)
class BucketConfig:
    heartbeat_age_seconds: tuple[float, ...] = option(
        DEFAULT_HEARTBEAT_BUCKETS,
        "heartbeat age gauge histogram bounds",
        parse="buckets",
        needed=(
            (90.0, "the recording rule environment_id_state:anthropic_work_heartbeat_older_than_90s:count"),
        ),
    )
    state_age_seconds: tuple[float, ...] = option(
        DEFAULT_STATE_AGE_BUCKETS, "time in state gauge histogram bounds", parse="buckets"
    )
    queue_wait_seconds: tuple[float, ...] = option(
        DEFAULT_QUEUE_WAIT_BUCKETS,
        "queue wait histogram bounds",
        parse="buckets",
        needed=(
            (
                300.0,
                "the recording rule environment_id:anthropic_work_queue_wait_over_300s:ratio_rate30m "
                "and the alert AnthropicWorkQueueWaitSLO",
            ),
        ),
    )
    start_duration_seconds: tuple[float, ...] = option(
        DEFAULT_START_DURATION_BUCKETS, "start duration histogram bounds", parse="buckets"
    )
    run_duration_seconds: tuple[float, ...] = option(
        DEFAULT_RUN_DURATION_BUCKETS, "run duration histogram bounds", parse="buckets"
    )
    stop_duration_seconds: tuple[float, ...] = option(
        DEFAULT_STOP_DURATION_BUCKETS, "stop duration histogram bounds", parse="buckets"
    )


@dataclass(frozen=True)
class Thresholds:
    """The bundled alerts' thresholds, named as the chart's `prometheusRule.thresholds` (which the
    chart copies here): the debug page's sections and the landing page use them, the alerts and the
    dashboards get them from the chart. docs/runbooks.md explains each.

    Workers renew a 90 s lease every 30 s (the SDK's worker): a heartbeat older than the
    lease, or none past it, means the worker is gone.
    """

    queue_backlog: float = option(
        50.0, "queued items (AnthropicWorkQueueBacklog)", minimum=0, exclusive=False
    )
    queue_wait_too_long: float = option(
        300.0, "seconds an item waits queued (AnthropicWorkQueueWaitTooLong)", minimum=0
    )
    queue_wait_slo: float = option(
        0.05,
        "the share of work picked up that waited over 300 s (AnthropicWorkQueueWaitSLO)",
        minimum=0,
        maximum=1,
    )
    stale_heartbeat: float = option(
        90.0, "seconds since an active item's last heartbeat (AnthropicWorkStaleHeartbeat)", minimum=0
    )
    starting_without_heartbeat: float = option(
        90.0,
        "seconds an item goes without a first heartbeat (AnthropicWorkStartingWithoutHeartbeat)",
        minimum=0,
    )
    stuck_stopping: float = option(
        600.0, "seconds an item has been stopping (AnthropicWorkStuckStopping)", minimum=0
    )


@dataclass(frozen=True)
class BreakdownConfig:
    metadata_keys: tuple[str, ...] = option(
        (), "count items per value of these metadata keys", parse="metadata_keys"
    )
    max_values: int = option(
        50, "values kept per key and environment; the rest count as __other__", minimum=0
    )


@dataclass(frozen=True)
class MetricsConfig:
    exclude: tuple[str, ...] = option(
        (),
        "per-environment families left out of every scrape, by name (counters with _total)",
        parse="families",
    )


@dataclass(frozen=True)
class DiscoveryConfig:
    """Watch every self-hosted, unarchived environment `GET /v1/environments` lists."""

    credentials: Credentials = option(
        NO_CREDENTIALS, "an API key: the listing is account-wide", parse="credentials", required=True
    )
    refresh_interval_seconds: float = option(300.0, "how often environments are discovered again", minimum=0)
    environment_keys_dir: Path | None = option(
        None, "a file named <environment_id> here holds that environment's key", parse="directory"
    )
    unwatch_after_missing: int = option(
        3, "successful discoveries in a row an environment may be missing from and stay watched", minimum=0
    )


@dataclass(frozen=True)
class Config:
    environments: tuple[Environment, ...] = option((), "the environments to watch", parse="environments")
    api: ApiConfig = section(ApiConfig, "the API and the defaults of every environment")
    scrape: ScrapeConfig = section(ScrapeConfig, "when and how environments are listed")
    buckets: BucketConfig = section(BucketConfig, "histogram bounds")
    breakdown: BreakdownConfig = section(BreakdownConfig, "items per metadata value")
    metrics: MetricsConfig = section(MetricsConfig, "which families are exposed")
    discovery: DiscoveryConfig | None = option(
        None, "also watch every environment the API lists", parse="discovery"
    )
    thresholds: Thresholds = section(Thresholds, "when an item needs attention, as the alerts say")

    @property
    def keys_dir(self) -> Path | None:
        """Where environments' key files are: api.environment_keys_dir, else discovery's (for the
        discovered ones only; the loader refuses two different directories)."""
        if self.api.environment_keys_dir is not None:
            return self.api.environment_keys_dir
        return self.discovery.environment_keys_dir if self.discovery is not None else None

    @property
    def stats_credentials(self) -> Credentials | None:
        """api.stats_credentials: for work/stats of discovered environments."""
        return self.api.stats_credentials

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
        return [credentials.value.reveal() for _, credentials in self.credentials()]


def yaml_keys(kind: type) -> dict[str, Any]:
    """The keys a section accepts in the file, with their fields."""
    return {f.name: f for f in fields(kind) if f.metadata.get("yaml", True)}


def _keys() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {
        "credentials": set(CREDENTIAL_KEYS),
        "environments[]": set(yaml_keys(Environment)),
    }

    def walk(kind: type, path: str) -> None:
        out[path] = set(yaml_keys(kind))
        for f in yaml_keys(kind).values():
            nested = f.default_factory if callable(f.default_factory) else None
            if nested is not None and is_dataclass(nested):
                walk(nested, f.name)  # type: ignore[arg-type]

    walk(Config, "")
    out["discovery"] = set(yaml_keys(DiscoveryConfig))
    return out


# Every key the config accepts, by section: anything else is an error (and config.example.yaml
# shows each one).
KEYS: dict[str, set[str]] = _keys()
