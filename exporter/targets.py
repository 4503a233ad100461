"""Which environments this exporter watches: configured and discovered ones, in its shard.

`Shard(index, total)` owns the environments whose stable hash of the id falls in
its share, so M replicas with `--shard.index 0..M-1 --shard.total M` cover every
environment exactly once, configured or discovered, and each always the same
replica (transition counters live in one replica's memory: an environment that
moved to another replica would have its counters start again there).

`Targets` merges the configured environments with the discovered ones (a
configured entry wins for its name and credentials). A discovered environment's
key is read from `environment_keys_dir/<environment_id>`, a mounted Kubernetes
Secret: the directory is looked at again when it changes, so a new key needs no
restart. An environment without a usable key is still watched, and reported with
reason `no_credentials`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import NO_CREDENTIALS, Config, Credentials, Environment, Secret
from .models import ListedEnvironment

log = logging.getLogger("exporter.targets")

_PRINTABLE_ASCII = re.compile(r"[!-~]+")
KEYS_RECHECK_SECONDS = 2.0  # how often the keys directory is looked at for changes, at most


@dataclass(frozen=True)
class Shard:
    index: int = 0
    total: int = 1

    def owns(self, environment_id: str) -> bool:
        if self.total == 1:
            return True
        digest = hashlib.sha256(b"shard/" + environment_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.total == self.index


@dataclass
class DiscoveryState:
    """What the last successful discovery found; long-lived, so a reload keeps it."""

    environments: list[ListedEnvironment] = field(default_factory=list)
    generation: int = 0  # changes whenever `environments` does
    succeeded: bool | None = None  # None until the first attempt
    last_success_timestamp: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # by code


class Targets:
    """The environments this replica watches, now."""

    def __init__(
        self,
        config: Config,
        shard: Shard,
        discovered: DiscoveryState | None = None,
        on_key: Callable[[str], None] = lambda key: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.shard = shard
        self.discovered = discovered
        self.on_key = on_key  # every key read from the directory, so logs can be scrubbed of it
        self.clock = clock
        self._keys: dict[str, Credentials] = {}
        self._keys_generation = 0
        self._keys_stamp: tuple[int, ...] | None = None
        self._keys_checked = -1e18
        self._cache: tuple[tuple[int, int], list[Environment]] | None = None
        # Hashed once: this is asked on every scrape.
        self._configured = [env for env in config.environments if shard.owns(env.id)]

    def environments(self) -> list[Environment]:
        configured = self._configured
        if self.discovered is None or self.config.discovery is None:
            return configured
        self._refresh_keys()
        version = (self.discovered.generation, self._keys_generation)
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1]
        known = {env.id for env in self.config.environments}
        found = [
            self._discovered(listed)
            for listed in self.discovered.environments
            if listed.self_hosted
            and not listed.archived
            and listed.id not in known
            and self.shard.owns(listed.id)
        ]
        merged = configured + sorted(found, key=lambda env: env.id)
        self._cache = (version, merged)
        return merged

    def find(self, environment_id: str) -> Environment | None:
        for env in self.environments():
            if env.id == environment_id:
                return env
        return None

    def _discovered(self, listed: ListedEnvironment) -> Environment:
        credentials = self._keys.get(listed.id)
        if credentials is None:
            keys_dir = self.config.discovery.environment_keys_dir if self.config.discovery else None
            where = f"no usable key file {keys_dir / listed.id}" if keys_dir else "no environment_keys_dir"
            credentials = Credentials(NO_CREDENTIALS.type, NO_CREDENTIALS.value, where)
        return Environment(
            id=listed.id,
            name=listed.name,
            credentials=credentials,
            stats_credentials=self.config.stats_credentials,
        )

    def _refresh_keys(self) -> None:
        keys_dir = self.config.discovery.environment_keys_dir if self.config.discovery else None
        now = self.clock()
        if keys_dir is None or now - self._keys_checked < KEYS_RECHECK_SECONDS:
            return
        self._keys_checked = now
        stamp = _stamp(keys_dir)
        if stamp == self._keys_stamp:
            return
        self._keys_stamp = stamp
        self._keys = dict(_read_keys(keys_dir, self.on_key))
        self._keys_generation += 1
        log.info("environment keys read", extra={"directory": str(keys_dir), "keys": len(self._keys)})


def _stamp(keys_dir: Path) -> tuple[int, ...]:
    """Changes whenever a key file is added, removed or rewritten (a Secret's update too)."""
    try:
        entries = sorted(os.scandir(keys_dir), key=lambda e: e.name)
        return (keys_dir.stat().st_mtime_ns, *(e.stat().st_mtime_ns for e in entries))
    except OSError:  # the directory went away: no keys until it is back
        return ()


def _read_keys(keys_dir: Path, on_key: Callable[[str], None]) -> Iterable[tuple[str, Credentials]]:
    for path in sorted(keys_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():  # a Secret's ..data and friends
            continue
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):  # unreadable: as good as missing, reported per environment
            continue
        if _PRINTABLE_ASCII.fullmatch(key):
            on_key(key)
            yield path.name, Credentials("environment_key", Secret(key), f"file {path}")
