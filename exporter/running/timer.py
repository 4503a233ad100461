"""A config generation's background loop (discovery, the key watcher): one task, stopped and closed
the same way by whoever owns it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Timer:
    """Owns one background task: `stop()` when a newer generation takes over, `aclose()` at the end."""

    _task: asyncio.Task[None] | None = None

    def _run(self, loop_body: Coroutine[Any, Any, None], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(loop_body, name=name)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
