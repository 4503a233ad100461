"""Long loops on the event loop hand it back now and then, so that no step blocks it for long.

A scrape of 20,000 environments walks them several times (start, outcome, render,
splice); done in one go, each walk holds the event loop for a tenth of a second or
more, and `/-/healthy` waits behind it. `Pace` is awaited once per element: it costs
one clock read, and yields to the loop whenever `quantum` seconds of work have passed
since it last did.
"""

from __future__ import annotations

import asyncio
import time

QUANTUM_SECONDS = 0.01


class Pace:
    def __init__(self, quantum: float = QUANTUM_SECONDS):
        self.quantum = quantum
        self._since = time.perf_counter()

    async def __call__(self) -> None:
        if time.perf_counter() - self._since >= self.quantum:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
