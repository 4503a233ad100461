"""A real upstream for tests: the simulator on a free loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from exporter.config import ApiConfig, Config, Credentials, Environment, ScrapeConfig, Secret
from exporter.simulator import SimEnvironment, Simulator, static_items
from exporter.simulator import serve as serve_simulator


@contextlib.contextmanager
def running_simulator(*envs: SimEnvironment, **kw) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(envs, **kw)
    server = serve_simulator(sim, "127.0.0.1", 0)
    try:
        yield sim, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def static_env(id: str, count: int, now: float, **kw) -> SimEnvironment:
    return SimEnvironment(id, f"name-of-{id}", items=static_items(count, now, seed=len(id) + count), **kw)


def config_for(
    url: str,
    *envs: SimEnvironment,
    api: dict | None = None,
    scrape: ScrapeConfig | None = None,
    keys: dict[str, str] | None = None,
) -> Config:
    """Watch `envs` at `url` with their own keys, or with `keys[env_id]` instead."""
    keys = keys or {}
    return Config(
        api=ApiConfig(base_url=url, **(api or {})),
        scrape=scrape or ScrapeConfig(),
        environments=tuple(
            Environment(e.id, e.name, Credentials("environment_key", Secret(keys.get(e.id, e.key)), "test"))
            for e in envs
        ),
    )
