"""Load and validate the exporter's YAML config, by its schema (`schema.py`).

Every problem is collected before anything is reported, so an operator fixes a
broken file in one pass. Each message names the file, the line (where the YAML
parser knows it) and the key path, e.g.::

    config.yaml:7: environments[1].credentials.type: must be environment_key or api_key

The walker reads the schema: each section's keys, each key's type, default and rules.
What a type alone cannot say has a check of its own here (`parse_<name>`, named by the
key's `parse` rule): bucket bounds, credentials, the API's URL and version, the
environment list. Credentials are resolved from `value_env` or `value_file`; the key
itself is wrapped in `Secret` so that no repr, log line or traceback can show it. A key
from a `value_file` is a `FileSecret`: it is read again when the file changes on disk (a
rotated Kubernetes Secret), with no reload.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.config.keys import FileSecret, KeyProblem, Secret, read_key_file, usable_key
from exporter.config.schema import (
    API_KEY_VAR,
    CREDENTIAL_KEYS,
    DEFAULT_BASE_URL,
    ENVIRONMENT_KEY_VAR,
    KEYS,
    NO_CREDENTIALS,
    BucketConfig,
    Config,
    Credentials,
    DiscoveryConfig,
    Environment,
    yaml_keys,
)
from exporter.config.vocabulary import (
    CREDENTIAL_TYPES,
    MANAGED_AGENTS_BETA,
    PER_ENVIRONMENT_FAMILIES,
    environment_id_problem,
)
from exporter.config.yamldoc import ConfigError, YamlDocument, read_text

__all__ = ["KEYS", "ConfigError", "load_config", "parse_config"]

_LEFT_OUT = object()  # a key left out (or null): the field keeps its default


def load_config(path: str | Path, environ: Mapping[str, str], read_keys: bool = True) -> Config:
    """Read `path` and validate it; raise ConfigError listing every problem. `read_keys=False`
    checks everything but the keys themselves (no key file read, no key variable looked up)."""
    path = Path(path)
    text = read_text(path, "config file")
    return parse_config(text, environ, source=str(path), base_dir=path.parent, read_keys=read_keys)


def parse_config(
    text: str,
    environ: Mapping[str, str],
    source: str = "config.yaml",
    base_dir: Path | None = None,
    read_keys: bool = True,
) -> Config:
    """Validate YAML text; `environ` is where `value_env` names are looked up."""
    document = YamlDocument(text, source)
    checker = _Checker(document, environ, base_dir or Path("."), read_keys)
    config = checker.config(document.data)
    document.raise_problems()
    assert config is not None
    return config


class _Checker:
    """Walks the parsed YAML once by the schema, building the Config and collecting problems."""

    def __init__(self, document: YamlDocument, environ: Mapping[str, str], base_dir: Path, read_keys: bool):
        self.document = document
        self.read_keys = read_keys  # False: where each key comes from is checked, the key is not read
        self.problems = document.problems  # the same list: read to tell whether a check added one
        self.environ = environ
        self.base_dir = base_dir
        self.top: dict[str, Any] = {}
        self.api_credentials: Credentials | None = None
        self.api_stats_credentials: Credentials | None = None
        self.api_keys_dir: Path | None = None

    def problem(self, path: str, message: str) -> None:
        self.document.problem(path, message)

    # -- the walk -------------------------------------------------------------------

    def config(self, data: Any) -> Config | None:
        if data is not None and not isinstance(data, dict):
            self.mapping(data, "", KEYS[""])
            return None
        self.top = self.mapping(data, "", KEYS[""])
        config: Config = self.section(Config, self.top, "")
        self.threshold_is_a_bound(config)
        return config

    def threshold_is_a_bound(self, config: Config) -> None:
        """The overview dashboard counts stale heartbeats by the bucket of thresholds.stale_heartbeat
        (`le`): without that bound its "Stale heartbeats" panel would be empty."""
        threshold, bounds = config.thresholds.stale_heartbeat, config.buckets.heartbeat_age_seconds
        if threshold not in bounds:
            self.problem(
                "thresholds.stale_heartbeat",
                f"{threshold:g} is not a bound of buckets.heartbeat_age_seconds: the overview dashboard's "
                "Stale heartbeats panel counts items past it by that bucket; add it to the buckets",
            )

    def section(self, kind: type[Any], m: dict[str, Any], path: str) -> Any:
        """`kind`, its fields read from `m` by the schema: a key left out keeps its default."""
        types = typing.get_type_hints(kind)
        values: dict[str, Any] = {}
        # The environments come last: they take their defaults from the api section.
        for f in sorted(yaml_keys(kind).values(), key=lambda f: f.name == "environments"):
            value = self.field(f, types[f.name], m, _join(path, f.name))
            if value is not _LEFT_OUT:
                values[f.name] = value
            if kind is Config and f.name == "api":
                self.api_credentials, self.api_stats_credentials = value.credentials, value.stats_credentials
                self.api_keys_dir = value.environment_keys_dir
        return kind(**values)

    def field(self, f: Field[Any], kind: Any, m: dict[str, Any], path: str) -> Any:
        rules = f.metadata
        if "parse" in rules:
            return getattr(self, f"parse_{rules['parse']}")(m, f.name, path)
        nested = f.default_factory if f.default_factory is not MISSING else None
        if nested is not None and is_dataclass(nested):
            return self.section(nested, self.mapping(m.get(f.name), path, set(yaml_keys(nested))), path)
        if f.name not in m or m[f.name] is None:
            return _LEFT_OUT
        value = m[f.name]
        if kind is bool:
            if not isinstance(value, bool):
                self.problem(path, f"must be true or false, got {_kind(value)}")
                return _LEFT_OUT
            return value
        if kind in (int, float):
            number = self.number(
                value, path, kind is int, rules.get("minimum", 0), rules.get("exclusive", True)
            )
            maximum = rules.get("maximum")
            if maximum is not None and number is not _LEFT_OUT and number > maximum:
                self.problem(path, f"must be <= {maximum:g}, got {value}")
                return _LEFT_OUT
            return number
        choices = rules.get("choices")
        if choices is not None:
            if value not in choices:
                self.problem(path, f"must be {' or '.join(choices)}, got {value!r}")
                return _LEFT_OUT
            return value
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"must be a non-empty string, got {_kind(value)}")
            return _LEFT_OUT
        return value

    # -- generic shape checks -----------------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(_join(path, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, m: dict[str, Any], key: str, path: str, required: bool = False) -> str | None:
        p = _join(path, key)
        if key not in m or m[key] is None:
            if required:
                self.problem(p, "is required")
            return None
        value = m[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(p, f"must be a non-empty string, got {_kind(value)}")
            return None
        return value

    def number(self, value: Any, path: str, integer: bool, minimum: float, exclusive: bool) -> Any:
        ok_type = (isinstance(value, int) if integer else isinstance(value, int | float)) and not isinstance(
            value, bool
        )
        if not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            self.problem(path, f"must be {'an integer' if integer else 'a number'}, got {_kind(value)}")
            return _LEFT_OUT
        if value < minimum or (exclusive and value == minimum):
            self.problem(path, f"must be {'>' if exclusive else '>='} {minimum:g}, got {value}")
            return _LEFT_OUT
        return int(value) if integer else float(value)

    # -- checks of their own, by the schema's `parse` rule --------------------------------------

    def parse_base_url(self, m: dict[str, Any], key: str, path: str) -> Any:
        url = (self.string(m, key, _parent(path)) or DEFAULT_BASE_URL).rstrip("/")
        allow_http = m.get("allow_insecure_http") is True
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port  # both parse lazily, and raise on "http://[::1" or ":x"
        except ValueError as exc:
            self.problem(path, f"not a URL: {exc}")
            return DEFAULT_BASE_URL
        if parts.scheme not in ("http", "https") or not host:
            self.problem(path, f"must be an http(s) URL with a host, got {url!r}")
            return DEFAULT_BASE_URL
        if parts.scheme == "http" and not allow_http and not _is_loopback(host):
            self.problem(
                path,
                "plain http:// is allowed for loopback hosts only; "
                "use https:// or set api.allow_insecure_http: true",
            )
        return url

    def parse_version(self, m: dict[str, Any], key: str, path: str) -> Any:
        version = m.get(key)
        if version is not None and not isinstance(version, str):
            # Unquoted, 2023-06-01 is a YAML date: say how to fix it.
            self.problem(
                path,
                'must be a string such as "2023-06-01" (quote it: YAML reads an unquoted date as a date)',
            )
            return _LEFT_OUT
        return self.string(m, key, _parent(path)) or _LEFT_OUT

    def parse_betas(self, m: dict[str, Any], key: str, path: str) -> Any:
        raw = m.get(key)
        if raw is None:
            return _LEFT_OUT
        if not isinstance(raw, list) or not all(isinstance(b, str) and b for b in raw):
            self.problem(path, "must be a list of beta names")
            return _LEFT_OUT
        # The managed-agents beta is what makes the endpoint exist; keep it first.
        return (MANAGED_AGENTS_BETA, *[b for b in raw if b != MANAGED_AGENTS_BETA])

    def parse_metadata_keys(self, m: dict[str, Any], key: str, path: str) -> Any:
        keys = m.get(key)
        if keys is None:
            return _LEFT_OUT
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            self.problem(path, "must be a list of metadata key names")
        elif len(set(keys)) != len(keys):
            self.problem(path, "names a key twice")
        else:
            return tuple(keys)
        return _LEFT_OUT

    def parse_buckets(self, m: dict[str, Any], key: str, path: str) -> Any:
        raw = m.get(key)
        if raw is None:
            return _LEFT_OUT
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
                path,
                "must be a non-empty, strictly increasing list of "
                "positive finite numbers (+Inf is added for you)",
            )
            return _LEFT_OUT
        bounds = tuple(float(b) for b in raw)
        rules = yaml_keys(BucketConfig)[key].metadata
        for bound, reader in rules.get("needed", ()):
            if bound not in bounds:
                bucket = f'le="{bound}"'
                self.problem(
                    path, f"must include {bound:g}: without its {bucket} bucket these are empty: {reader}"
                )
                return _LEFT_OUT
        return bounds

    def parse_families(self, m: dict[str, Any], key: str, path: str) -> Any:
        raw = m.get(key)
        if raw is None:
            return _LEFT_OUT
        if not isinstance(raw, list):
            self.problem(path, f"must be a list of metric family names, got {_kind(raw)}")
            return _LEFT_OUT
        names: list[str] = []
        for i, name in enumerate(raw):
            if name not in PER_ENVIRONMENT_FAMILIES:
                near = difflib.get_close_matches(str(name), PER_ENVIRONMENT_FAMILIES, n=1)
                hint = f"; did you mean {near[0]}?" if near else " (README, Metrics, lists them)"
                self.problem(f"{path}[{i}]", f"no per-environment family is called {str(name)[:100]!r}{hint}")
            elif name in names:
                self.problem(f"{path}[{i}]", f"{name} is listed twice")
            else:
                names.append(name)
        return tuple(names)

    def parse_directory(self, m: dict[str, Any], key: str, path: str) -> Any:
        raw = self.string(m, key, _parent(path))
        if raw is None:
            return _LEFT_OUT
        directory = Path(raw) if Path(raw).is_absolute() else self.base_dir / raw
        if self.read_keys and not directory.is_dir():  # a keys directory: a Secret, mounted later
            self.problem(path, f"{raw} is not a directory")
        return directory

    def parse_credentials(self, m: dict[str, Any], key: str, path: str) -> Any:
        if m.get(key) is None:
            return _LEFT_OUT
        return self.credentials(m[key], path)

    def parse_discovery(self, m: dict[str, Any], key: str, path: str) -> Any:
        if key not in m:
            return _LEFT_OUT
        d = self.mapping(m.get(key), path, KEYS["discovery"])
        if d.get("credentials") is None:
            self.problem("discovery.credentials", "is required: discovery lists environments with an API key")
        discovery = self.section(DiscoveryConfig, d, path)
        keys_dir = discovery.environment_keys_dir
        if keys_dir is not None and self.api_keys_dir is not None and keys_dir != self.api_keys_dir:
            self.problem(
                "discovery.environment_keys_dir",
                f"differs from api.environment_keys_dir ({self.api_keys_dir}): one directory holds every "
                "environment's key file; set api.environment_keys_dir only",
            )
        if (
            not isinstance(discovery.credentials, Credentials)
            or discovery.credentials.type not in CREDENTIAL_TYPES
        ):
            return None  # why is reported
        return discovery

    def parse_environments(self, m: dict[str, Any], key: str, path: str) -> Any:
        return tuple(self.environments(m.get(key), optional="discovery" in self.top))

    # -- credentials and environments --------------------------------------------------------

    def credentials(self, raw: Any, path: str) -> Credentials | None:
        m = self.mapping(raw, path, set(CREDENTIAL_KEYS))
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
            source = f"env {name}"
            if not self.read_keys:
                skipped = f"{source} (not looked up)"
                return Credentials(kind, Secret(""), skipped) if kind in CREDENTIAL_TYPES else None
            value = self.environ.get(name)
            if not value:
                self.problem(f"{path}.value_env", f"environment variable {name} is not set or empty")
                return None
        else:
            fname = self.string(m, "value_file", path)
            if fname is None:
                return None
            file = Path(fname) if Path(fname).is_absolute() else self.base_dir / fname
            if not self.read_keys:
                source = f"file {fname} (not read)"
                return Credentials(kind, Secret(""), source) if kind in CREDENTIAL_TYPES else None
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
        if not self.read_keys:
            where = f"env {ENVIRONMENT_KEY_VAR} or {API_KEY_VAR} (not looked up)"
            return Credentials("environment_key", Secret(""), where)
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

    def environments(self, raw: Any, optional: bool) -> list[Environment]:
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
        api = self.top.get("api")
        has_default = isinstance(api, dict) and api.get("credentials") is not None
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
            own = m.get("credentials") is not None
            if own:
                creds = self.credentials(m["credentials"], f"{path}.credentials")
            elif has_default:
                creds = self.api_credentials  # None when api.credentials is broken: already reported
            else:
                creds = fallback
                if creds is None and self.api_keys_dir is not None:
                    # Its key file comes first anyway; until one is there it reports no_credentials.
                    where = f"no key file for it in {self.api_keys_dir}, and no default credentials"
                    creds = Credentials(NO_CREDENTIALS.type, NO_CREDENTIALS.value, where)
                elif creds is None and not fallback_broken:
                    self.problem(
                        f"{path}.credentials",
                        "no credentials: set api.credentials, api.environment_keys_dir (a file named "
                        f"{env_id or 'by its id'} there), this environment's credentials, or "
                        f"{ENVIRONMENT_KEY_VAR} / {API_KEY_VAR} in the exporter's environment",
                    )
            stats = self.api_stats_credentials
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
                        own_credentials=own,
                    )
                )
        return envs


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


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
