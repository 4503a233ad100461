"""Real servers in the test process, each on a free loopback port: the simulator, and the exporter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from exporter.cli import build_app
from exporter.config import ApiConfig, Config, Credentials, Environment, ScrapeConfig, Secret
from exporter.server import serve
from exporter.simulator import SimEnvironment, Simulator, demo_environments, static_items
from exporter.simulator import serve as serve_simulator
from exporter.web import WebConfig

DEMO_ENVS = tuple(env.id for env in demo_environments())


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


@contextlib.contextmanager
def running_exporter(config: Config, web: WebConfig | None = None) -> Iterator[str]:
    """The exporter wired as the CLI wires it; yields its host:port."""
    app, scraper = build_app(config, web)
    server = serve(app, "127.0.0.1", 0, web)
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        scraper.close()
