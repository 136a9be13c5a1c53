"""The mock's clock: vendor seconds, played faster or slower by ``time_scale``.

Invariant: a duration the vendor states in seconds (a window, a lock, a token's lifetime, a
latency) lasts ``seconds * time_scale`` on this clock, and :meth:`ScaledClock.now` reads the
event loop's time unless a test gives its own source.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class ScaledClock:
    """``now()``: the loop's time (or ``source()``); ``seconds(s)``: ``s`` vendor seconds on it."""

    __slots__ = ("_source", "time_scale")

    def __init__(self, time_scale: float = 1.0, source: Callable[[], float] | None = None) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError("time_scale must be a positive number")
        self.time_scale = time_scale
        self._source = source

    def now(self) -> float:
        return self._source() if self._source is not None else asyncio.get_running_loop().time()

    def seconds(self, vendor_seconds: float) -> float:
        return vendor_seconds * self.time_scale

    async def sleep(self, vendor_seconds: float) -> None:
        await asyncio.sleep(self.seconds(vendor_seconds))
