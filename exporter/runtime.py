"""The running configuration, and reloading it.

A `Runtime` is everything one generation of the config serves with: the config,
the web config and the refresh policy (with its engine and connections). A
request takes the current one when it starts and keeps it to the end, so an
in-flight scrape finishes on the config it started with; a replaced runtime is
closed once its last request is done.

A reload loads both files and builds a new runtime, or changes nothing: a config
that does not load is refused as a whole, the running one stays, the problems
are logged, and `ReloadState` says so for the reload metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from .collectors.exporter import ReloadState
from .config import Config, ConfigError
from .policy import Policy
from .server import TlsContext
from .targets import Targets
from .web import WebConfig

log = logging.getLogger("exporter.reload")


@dataclass
class Served:
    """What one config generation serves with, as the wiring builds it."""

    policy: Policy
    targets: Targets
    aclose: Callable[[], Coroutine[Any, Any, None]]  # stops discovery, the policy and the connections


Load = Callable[[], tuple[Config, WebConfig | None]]
Build = Callable[[Config], Served]


@dataclass
class Runtime:
    config: Config
    web: WebConfig | None
    served: Served
    users: int = 0
    retired: bool = False

    @property
    def policy(self) -> Policy:
        return self.served.policy

    @property
    def targets(self) -> Targets:
        return self.served.targets


class Reloader:
    """Holds the current Runtime and replaces it on reload."""

    def __init__(
        self,
        initial: tuple[Config, WebConfig | None],
        load: Load,
        build: Build,
        *,
        state: ReloadState,
        tls: TlsContext,
        forget: Callable[[set[str]], None],
        wall_clock: Callable[[], float] = time.time,
    ):
        self._load = load
        self._build = build
        self.state = state
        self.tls = tls
        self.forget = forget  # drops what is kept for environments no longer watched
        self.wall_clock = wall_clock
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        config, web = initial  # loaded by the caller, which reports its problems at start
        self.current = Runtime(config, web, build(config))
        self.tls.context = web.ssl_context if web else None
        self.state.successful, self.state.last_success_timestamp = True, wall_clock()

    @contextlib.contextmanager
    def use(self) -> Iterator[Runtime]:
        """The current runtime, kept open until the caller is done with it."""
        runtime = self.current
        runtime.users += 1
        try:
            yield runtime
        finally:
            runtime.users -= 1
            if runtime.retired and runtime.users == 0:
                self._close_later(runtime)

    async def reload(self) -> list[str]:
        """Load the config files again; the problems that refused it, or [] when it was applied."""
        async with self._lock:
            try:
                config, web = self._load()
                old_tls = self.current.web is not None and self.current.web.ssl_context is not None
                new_tls = web is not None and web.ssl_context is not None
                if old_tls != new_tls:
                    raise ConfigError(["web config: turning TLS on or off needs a restart of the exporter"])
            except ConfigError as exc:
                self.state.successful = False
                log.error(
                    "reload refused; the running config stays", extra={"problems": "; ".join(exc.problems)}
                )
                return exc.problems
            old = self.current
            self.current = Runtime(config, web, self._build(config))
            self.tls.context = web.ssl_context if web else None
            self.forget({env.id for env in self.current.targets.environments()})
            old.retired = True
            if old.users == 0:
                self._close_later(old)
            self.state.successful, self.state.last_success_timestamp = True, self.wall_clock()
            log.info("config reloaded", extra={"environments": len(config.environments)})
            return []

    def _close_later(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(runtime.served.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        await self.current.served.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
