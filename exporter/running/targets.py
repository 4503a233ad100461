"""Which environments this exporter watches, with which keys: configured and discovered ones, in its shard.

`Targets` merges the configured environments with the discovered ones (a
configured entry wins for its name and credentials), keeps those in this
replica's shard (`shard.Shard`), and hands out the same list object until
something changes, so a scrape asks nothing of it but a reference. The list is
rebuilt by `refresh()`, awaited when discovery or the keys change, a slice at a
time (`pace.Pace`): 20,000 discovered environments never hold the event loop.

An environment without credentials of its own takes its key from
`api.environment_keys_dir/<environment_id>` (a discovered one also from
`discovery.environment_keys_dir`), a mounted Kubernetes Secret (`keys.read_keys_dir`:
regular files inside the directory only, at most 4 KiB each); a configured one without
a key file there falls back to the default credentials. An environment without a usable
key is still watched, and reported with reason `no_credentials` and why.

`KeyWatcher` looks at every key file every `KEYS_RECHECK_SECONDS`, in a thread:
a `value_file` that changed is read again and its key used from the next request
on; a keys directory that changed is read again whole. Each change is one log line
naming the environments whose key changed, never the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from exporter.api.codec import ListedEnvironment
from exporter.config.schema import NO_CREDENTIALS, Config, Credentials, Environment
from exporter.config.shard import Shard
from exporter.pace import Pace
from exporter.running.isolation import Boundary

log = logging.getLogger("exporter.targets")


@dataclass
class DiscoveryState:
    """What the last successful discovery found; long-lived, so a reload keeps it."""

    # Unique, safe ids: those the last discovery listed, and those it left out that are still
    # watched (`missing`), as they were last listed.
    environments: list[ListedEnvironment] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)  # id -> consecutive discoveries it was missing from
    invalid: list[str] = field(default_factory=list)  # why each unusable or repeated id was skipped
    generation: int = 0  # changes whenever `environments` does
    succeeded: bool | None = None  # None until the first attempt
    last_success_timestamp: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # by code


@dataclass
class KeyStore:
    """The keys last read from the keys directory; long-lived, so a reload reuses them."""

    directory: Path | None = None
    stamp: tuple[object, ...] = ()
    keys: dict[str, Credentials] = field(default_factory=dict)  # environment id -> credentials
    generation: int = 0


class Targets:
    """The environments this replica watches, now."""

    def __init__(
        self,
        config: Config,
        shard: Shard,
        discovered: DiscoveryState,
        keys: KeyStore,
        boundary: Boundary,
    ):
        self.config = config
        self.shard = shard
        self.discovered = discovered
        self.keys = keys
        self.boundary = boundary
        # Hashed once, here: configured environments change only with the config.
        self._configured = [env for env in config.environments if shard.owns(env.id)]
        self._environments = self._configured
        self._by_id = {env.id: env for env in self._configured}
        self._known = len(config.environments)  # in every shard: what the replicas together watch
        self._version: tuple[int, int] | None = None

    def environments(self) -> list[Environment]:
        """The same list object until a refresh changes it."""
        return self._environments

    def find(self, environment_id: str) -> Environment | None:
        return self._by_id.get(environment_id)

    def elsewhere(self, environment_id: str) -> str | None:
        """The shard that watches `environment_id` when it is another one (`shard 1 of 3 (pod x-1)`):
        configured, or found by the last discovery, and hashed to another shard. None otherwise."""
        owner = self.shard.owner(environment_id)
        if owner == self.shard.index:
            return None
        configured = any(env.id == environment_id for env in self.config.environments)
        discovered = self.config.discovery is not None and any(
            listed.id == environment_id and listed.self_hosted and not listed.archived
            for listed in self.discovered.environments
        )
        return self.shard.name(owner) if configured or discovered else None

    def here(self) -> str:
        """This replica's shard, by name (`shard 0 of 3 (pod x-0)`)."""
        return self.shard.name(self.shard.index)

    def known(self) -> int:
        """Environments configured and discovered in every shard: what all replicas must watch."""
        return self._known

    async def refresh(self) -> bool:
        """Merge in what discovery and the keys directory say now; True if anything changed."""
        keys_dir = self.config.keys_dir
        if self.config.discovery is None and keys_dir is None:
            return False
        version = (self.discovered.generation, self.keys.generation)
        if version == self._version:
            return False
        configured = self._configured
        if self.config.api.environment_keys_dir is not None:  # a key file comes before the defaults
            configured = [self._keyed(env) for env in configured]
        known = {env.id for env in self.config.environments}
        found: dict[str, Environment] = {}
        where = f"no key file for it in {keys_dir}" if keys_dir else "no environment_keys_dir"
        keyless = Credentials(NO_CREDENTIALS.type, NO_CREDENTIALS.value, where)  # one for all of them
        pace = Pace()
        everywhere = len(known)
        for listed in self.discovered.environments if self.config.discovery is not None else ():
            if listed.self_hosted and not listed.archived and listed.id not in known:
                everywhere += 1
                env = Environment(
                    id=listed.id,
                    name=listed.name,
                    credentials=self.keys.keys.get(listed.id, keyless),
                    stats_credentials=self.config.stats_credentials,
                )
                owned = self.boundary.run(env, "shard", partial(self.shard.owns, env.id))
                if owned is True:
                    found[env.id] = env
            await pace()
        self._known = everywhere
        merged = configured + sorted(found.values(), key=lambda env: env.id)
        self._environments, self._by_id, self._version = merged, {env.id: env for env in merged}, version
        return True

    def _keyed(self, env: Environment) -> Environment:
        """A configured environment with the key file named by its id, when it has no credentials of
        its own and there is one (a key file that holds no key: no_credentials, saying why)."""
        key = None if env.own_credentials else self.keys.keys.get(env.id)
        return env if key is None else replace(env, credentials=key)
