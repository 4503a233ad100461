"""The running configuration, and reloading it.

A `Runtime` is everything one generation of the config serves with: the config,
the web config and the refresh policy (with its engine and connections). A
request takes the current one when it starts and keeps it to the end, so an
in-flight scrape finishes on the config it started with; a replaced runtime is
closed once its last request is done.

A reload loads both files (in a thread: reading files, building a TLS context and
hashing a bcrypt password never run on the event loop), builds the new runtime and
starts it, or changes nothing: anything that raises on the way refuses the reload
as a whole, the running one stays, the problems are logged and answered, and
`ReloadState` says so for the reload metrics. A replaced runtime stops starting
listings at once and is closed once its last request is done, letting the
background listings it started end first, so a burst of reloads starves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from exporter.config.schema import Config
from exporter.config.yamldoc import ConfigError
from exporter.running.engine import Engine
from exporter.running.policies import Policy
from exporter.running.targets import Targets

log = logging.getLogger("exporter.reload")
LOAD_SECONDS = 30.0  # reading both files; key files never block (keyfiles), a hung file system might


@dataclass
class ReloadState:
    """What the last (re)load of the config did; the reloader writes it, the collector reads it."""

    successful: bool = True
    last_success_timestamp: float = 0.0
    message: str = ""  # why the last reload was refused; "" after a success


@dataclass
class Served:
    """What one config generation serves with."""

    policy: Policy
    targets: Targets
    engine: Engine  # for the debug page's fresh listings
    start: Callable[[], Coroutine[Any, Any, None]]  # keys read, targets merged, timers started
    retire: Callable[[], None]  # a newer generation took over: start nothing more
    aclose: Callable[[bool], Coroutine[Any, Any, None]]  # stop; True: let listings in flight end first


W = TypeVar("W")  # the web config: the web side's, opaque here
W_contra = TypeVar("W_contra", contravariant=True)


class WebSide(Protocol[W_contra]):
    """The web side of a reload (the server's TLS): the reloader hands it each web config."""

    def refusal(self, running: W_contra, loaded: W_contra) -> str | None:
        """Why `loaded` cannot replace `running` without a restart, or None."""

    def apply(self, web: W_contra) -> None:
        """Use `web` from now on (new connections)."""


Load = Callable[[], tuple[Config, W]]
Build = Callable[[Config], Served]


@dataclass
class Runtime(Generic[W]):
    config: Config
    web: W
    served: Served
    users: int = 0
    retired: bool = False

    @property
    def policy(self) -> Policy:
        return self.served.policy

    @property
    def targets(self) -> Targets:
        return self.served.targets

    @property
    def engine(self) -> Engine:
        return self.served.engine


class Reloader(Generic[W]):
    """Holds the current Runtime and replaces it on reload."""

    def __init__(
        self,
        initial: tuple[Config, W],
        load: Load[W],
        build: Build,
        *,
        state: ReloadState,
        tls: WebSide[W],
        forget: Callable[[set[str]], None],
        clean: Callable[[str], str] = lambda text: text,
        wall_clock: Callable[[], float] = time.time,
        reloaded: Callable[[], None] = lambda: None,
    ):
        self._initial = initial  # loaded by the caller, which reports its problems at start
        self._load = load
        self._build = build
        self.state = state
        self.tls = tls
        self.forget = forget  # drops what is kept for environments no longer watched
        self.clean = clean  # scrubs keys from an exception's text
        self.wall_clock = wall_clock
        self.reloaded = reloaded  # after each reload applied (the process settles its memory)
        self._lock = asyncio.Lock()
        self._next: asyncio.Task[list[str]] | None = None  # the reload the ones asked for now share
        self._closing: set[asyncio.Task[None]] = set()
        self._current: Runtime[W] | None = None

    @property
    def current(self) -> Runtime[W]:
        assert self._current is not None, "Reloader.start() first"
        return self._current

    async def start(self) -> None:
        """Build and start the first runtime, from the config loaded at start."""
        config, web = self._initial
        served = self._build(config)
        await served.start()
        self._current = Runtime(config, web, served)
        self.tls.apply(web)
        self.state.successful, self.state.last_success_timestamp = True, self.wall_clock()

    @contextlib.contextmanager
    def use(self) -> Iterator[Runtime[W]]:
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
        """Load the config files again; the problems that refused it, or [] when it was applied.

        One reload runs at a time, and the reloads asked for while it runs share the one after
        it, which reads the files anew: a flood of `POST /-/reload` costs two loads, not one each.
        """
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._after_current())
        # Shielded: a client that hangs up does not call off the reload others wait for.
        return await asyncio.shield(self._next)

    async def _after_current(self) -> list[str]:
        async with self._lock:
            self._next = None  # asked for from now on: a reload that reads the files after this one
            return await self._reload()

    async def _reload(self) -> list[str]:
        served: Served | None = None
        try:
            # A file that cannot be read in time (a hung file system) refuses the reload; the
            # thread is left to end, and the reloads after this one are not held up by it.
            config, web = await asyncio.wait_for(asyncio.to_thread(self._load), LOAD_SECONDS)
            refusal = self.tls.refusal(self.current.web, web)
            if refusal is not None:
                raise ConfigError([refusal])
            served = self._build(config)
            await served.start()
        except ConfigError as exc:
            return await self._refuse(exc.problems, served)
        except TimeoutError:
            problem = f"the config files could not be read within {LOAD_SECONDS:g}s"
            return await self._refuse([problem], served)
        except Exception as exc:  # whatever does not build refuses the reload whole, never a 500
            log.exception("reload could not build the new config")
            problem = self.clean(f"the new config could not be applied: {type(exc).__name__}: {exc}")
            return await self._refuse([problem], served)
        old = self.current
        self._current = Runtime(config, web, served)
        self.tls.apply(web)
        self.forget({env.id for env in served.targets.environments()})
        old.retired = True
        old.served.retire()
        if old.users == 0:
            self._close_later(old)
        self.state.successful, self.state.last_success_timestamp = True, self.wall_clock()
        self.state.message = ""
        log.info("config reloaded", extra={"environments": len(config.environments)})
        self.reloaded()
        return []

    async def _refuse(self, problems: list[str], built: Served | None) -> list[str]:
        self.state.successful, self.state.message = False, "\n".join(problems)
        log.error("reload refused; the running config stays", extra={"problems": "; ".join(problems)})
        if built is not None:  # it may have started timers before it failed
            try:
                await built.aclose(False)
            except Exception:  # our own bug, while cleaning up after another: logged, the refusal stands
                log.exception("closing a refused config failed")
        return problems

    def _close_later(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(runtime.served.aclose(True))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        if self._current is not None:
            await self._current.served.aclose(False)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
