"""Key files read again when they change on disk: a `value_file`, and the keys directory.

`KeyWatcher` looks at every key file every `KEYS_RECHECK_SECONDS`, in a thread: a
`value_file` that changed is read again and its key used from the next request on (or,
while it holds no usable key, its environments report `no_credentials`); a keys
directory that changed is read again whole. Each change is one log line naming the
environments whose key changed, never the key. Every read is off the event loop and
never blocks (`config.keys.read_key_file`), and is given up after `KEY_READ_SECONDS`
all the same (a file system that hangs): the watcher goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from pathlib import Path
from typing import TypeVar

from exporter.config.keys import (
    FileSecret,
    KeyProblem,
    Secret,
    read_key_file,
    read_keys_dir,
    stamp,
    stamp_dir,
)
from exporter.config.schema import NO_CREDENTIALS, Config, Credentials
from exporter.running.targets import KeyStore
from exporter.running.timer import Timer

log = logging.getLogger("exporter.targets")
T = TypeVar("T")


KEYS_RECHECK_SECONDS = 2.0  # how often key files are looked at for changes


class KeyWatcher(Timer):
    """Reads key files again when they change on disk; one per config generation.

    Every read is off the event loop, never blocks (`keyfiles.read_key_file`), and is
    given up after `KEY_READ_SECONDS` all the same (a file system that hangs): the watcher
    goes on, and a file fixed later is read at the next look.
    """

    def __init__(
        self,
        config: Config,
        store: KeyStore,
        hold: Callable[[Hashable, Iterable[str]], None],
        on_change: Callable[[], Awaitable[object]],
        interval: float = KEYS_RECHECK_SECONDS,
    ):
        self.config = config
        self.directory = config.keys_dir
        self.store = store
        self.hold = hold  # the keys in use, by holder: logs are scrubbed of them, and of no others
        self.on_change = on_change  # the directory's keys changed: merge them in
        self.interval = interval
        users: dict[int, tuple[FileSecret, list[str]]] = {}
        for where, credentials in config.credentials():
            if isinstance(credentials.value, FileSecret):
                secret = credentials.value
                users.setdefault(id(secret), (secret, []))[1].append(where)
        self._files = list(users.values())
        self._stamps: dict[int, object] = {}

    async def start(self) -> None:
        """Read the keys directory (if it changed since the last generation), then watch."""
        self.hold(self, self.config.secrets())
        for secret, _ in self._files:
            self._stamps[id(secret)] = await _off_loop(stamp, secret.path)
        await self._check_directory()
        self._run(self._watch(), "key watcher")

    async def aclose(self) -> None:
        await super().aclose()
        self.hold(self, ())  # this generation's keys are no longer in use (unless the next one's)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except TimeoutError:  # a file system that hangs: tried again at the next look
                log.warning(
                    "reading key files took too long; trying again", extra={"within": KEY_READ_SECONDS}
                )
            except Exception:  # our own bug: logged, and the watching goes on
                log.exception("checking key files failed")

    async def check(self) -> None:
        await self._check_files()
        await self._check_directory()

    async def _check_files(self) -> None:
        changed = False
        for secret, users in self._files:
            now = await _off_loop(stamp, secret.path)
            if now == self._stamps.get(id(secret)):
                continue
            try:
                key = await _off_loop(read_key_file, secret.path)
            except KeyProblem as exc:
                if secret.problem != str(exc):
                    secret.spoil(str(exc))
                    changed = True
                    log.warning(
                        "key file changed and holds no usable key; its environments report no_credentials "
                        "until it is fixed",
                        extra={"used_by": ",".join(users), "error": str(exc)},
                    )
            else:
                if key != secret.reveal() or secret.problem is not None:
                    secret.update(key)
                    changed = True
                    log.info("key changed", extra={"used_by": ",".join(users), "file": str(secret.path)})
            self._stamps[id(secret)] = now  # read whatever came of it: not again until it changes
        if changed:
            self.hold(self, self.config.secrets())

    async def _check_directory(self) -> None:
        directory, store = self.directory, self.store
        if directory is None:
            return
        now = await _off_loop(stamp_dir, directory)
        if store.directory == directory and now == store.stamp:
            return
        found = await _off_loop(read_keys_dir, directory)
        keys: dict[str, Credentials] = {}
        for name, key in found.items():
            if isinstance(key, KeyProblem):
                keys[name] = Credentials(NO_CREDENTIALS.type, NO_CREDENTIALS.value, str(key))
            else:
                keys[name] = Credentials("environment_key", Secret(key), f"file {directory / name}")
        self.hold(KEYS_DIRECTORY, [c.value.reveal() for c in keys.values()])
        if store.directory == directory:  # a change: say whose key it was, never the key
            for env_id in sorted(set(keys) | set(store.keys)):
                before, after = store.keys.get(env_id), keys.get(env_id)
                if before != after:
                    change = "removed" if after is None else "added" if before is None else "changed"
                    log.info(f"environment key {change}", extra={"environment_id": env_id})
        else:
            usable = sum(1 for c in keys.values() if c.type != NO_CREDENTIALS.type)
            log.info("environment keys read", extra={"directory": str(directory), "keys": usable})
        store.directory, store.stamp, store.keys = directory, now, keys
        store.generation += 1
        await self.on_change()


KEYS_DIRECTORY = "keys directory"  # the redactor's holder of the keys read from it


KEY_READ_SECONDS = 10.0  # a key read that takes longer is given up


async def _off_loop(fn: Callable[[Path], T], path: Path) -> T:
    """`fn(path)` in a thread, given up after KEY_READ_SECONDS (TimeoutError): the thread is left to end."""
    return await asyncio.wait_for(asyncio.to_thread(fn, path), KEY_READ_SECONDS)
