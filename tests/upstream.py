"""Real servers in the test process, each on a free loopback port: the simulator, and the exporter."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from exporter.cli import run_exporter
from exporter.config.keys import Secret
from exporter.config.schema import ApiConfig, Config, Credentials, Environment, ScrapeConfig
from exporter.endpoints import ENDPOINTS, Endpoint
from exporter.running.reload import Reloader
from exporter.running.targets import Shard
from exporter.simulator import SimEnvironment, Simulator, demo_environments, serve, static_items
from exporter.web.auth import WebConfig
from exporter.web.server import ServerLimits, bind

DEMO_ENVS = tuple(env.id for env in demo_environments())


@contextlib.contextmanager
def running_simulator(*envs: SimEnvironment, **kw) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(envs, **kw)
    server = serve(sim, "127.0.0.1", 0)
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


@dataclass
class Exporter:
    """An exporter serving from a thread of the test process."""

    address: str  # host:port
    loop: asyncio.AbstractEventLoop
    reloader: Reloader

    def reload(self) -> list[str]:
        return asyncio.run_coroutine_threadsafe(self.reloader.reload(), self.loop).result(30)


@contextlib.contextmanager
def running_exporter(
    config: Config,
    web: WebConfig | None = None,
    *,
    load: Callable[[], tuple[Config, WebConfig | None]] | None = None,
    limits: ServerLimits | None = None,
    shard: Shard | None = None,
    endpoints: Sequence[Endpoint] = ENDPOINTS,
    external_url: str = "",
) -> Iterator[Exporter]:
    """The exporter wired as the CLI wires it, on its own event loop in a thread; `endpoints`: what it
    reads upstream."""
    limits = limits or ServerLimits()
    sock = bind("127.0.0.1", 0, limits.backlog)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started: list[Reloader] = []
    ready = threading.Event()

    def on_started(reloader: Reloader) -> None:
        started.append(reloader)
        ready.set()

    async def main() -> None:
        await run_exporter(
            sock,
            (config, web),
            load or (lambda: (config, web)),
            stop,
            limits=limits,
            shard=shard,
            external_url=external_url,
            on_started=on_started,
            endpoints=endpoints,
        )

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="exporter", daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the exporter did not start"
        yield Exporter(f"127.0.0.1:{sock.getsockname()[1]}", loop, started[0])
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
