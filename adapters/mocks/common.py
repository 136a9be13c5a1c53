"""What every mock server shares: threshold counters, latency, seeded faults, serving.

Faults are drawn *before* a call changes any state, so a faulted call has no effect and
the client's retry is what does the work (a lost answer to a call that did take effect
is a separate, explicit setting of each mock where it matters).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

WindowKind = Literal["rolling", "fixed"]


class ThresholdCounter:
    """A vendor's "N calls per window, then locked for L" rule, as the vendor would count.

    ``rolling``: any ``window`` seconds; ``fixed``: calendar windows. The call that makes
    it N+1 starts the lock and is refused; calls during the lock are refused and do not
    extend it unless ``extend_lock_on_call``. ``max_in_window`` is the most calls this
    counter ever saw accepted within one window of the chosen kind.
    """

    def __init__(
        self, threshold: int, window: float, lock_period: float,
        kind: WindowKind = "rolling", extend_lock_on_call: bool = False,
    ) -> None:
        self.threshold, self.window, self.lock_period = threshold, window, lock_period
        self.kind, self.extend_lock_on_call = kind, extend_lock_on_call
        self._recent: deque[float] = deque()
        self._bucket: tuple[int, int] = (-1, 0)  # (window number, calls in it)
        self.locked_until = -math.inf
        self.calls = 0
        self.refused = 0
        self.lock_events = 0
        self.max_in_window = 0
        self.max_in_rolling_window = 0  # always measured, whatever the kind

    def hit(self, now: float) -> bool:
        """Count a call arriving at ``now``; ``False`` if it is refused (locked)."""
        self.calls += 1
        if now < self.locked_until:
            self.refused += 1
            if self.extend_lock_on_call:
                self.locked_until = now + self.lock_period
            return False
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        self.max_in_rolling_window = max(self.max_in_rolling_window, len(self._recent))
        if self.kind == "rolling":
            in_window = len(self._recent)
        else:
            number = int(now // self.window)
            in_window = self._bucket[1] + 1 if self._bucket[0] == number else 1
            self._bucket = (number, in_window)
        if in_window > self.threshold:
            self.refused += 1
            self.lock_events += 1
            self.locked_until = now + self.lock_period
            self._recent.clear()
            self._bucket = (-1, 0)
            return False
        self.max_in_window = max(self.max_in_window, in_window)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "refused": self.refused, "lock_events": self.lock_events,
            "max_in_window": self.max_in_window, "max_in_rolling_window": self.max_in_rolling_window,
        }


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds per answer: ``base + per_item * items + jitter * U(0, 1)``, before time scale."""

    base: float = 0.0
    per_item: float = 0.0
    jitter: float = 0.0

    def draw(self, items: int, rng: random.Random, time_scale: float) -> float:
        return (self.base + self.per_item * items + self.jitter * rng.random()) * time_scale


@dataclass(frozen=True, slots=True)
class Faults:
    """Shares of calls answered with a fault instead of being served (0 to 1 each)."""

    server_error: float = 0.0  # 500/502/503
    drop: float = 0.0  # connection closed without an answer
    hang: float = 0.0  # no answer for ``hang_seconds`` (past the client's timeout)
    truncated: float = 0.0  # half a JSON document
    html: float = 0.0  # an HTML error page with status 200
    wrong_type: float = 0.0  # a plain-text body where JSON was expected
    hang_seconds: float = 30.0

    def draw(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for name in ("server_error", "drop", "hang", "truncated", "html", "wrong_type"):
            share = getattr(self, name)
            if roll < share:
                return name
            roll -= share
        return None


@dataclass
class FaultLog:
    injected: Counter[str] = field(default_factory=Counter)


async def answer_fault(
    kind: str, request: web.Request, rng: random.Random, faults: Faults, sample: dict[str, Any]
) -> web.StreamResponse:
    """The faulty answer of kind ``kind``; ``sample`` is a well-formed body to mangle."""
    if kind == "server_error":
        return web.json_response({"code": "500", "message": "Sorry! Server error occured"},
                                 status=rng.choice((500, 502, 503)))
    if kind == "drop":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)  # never reaches the client
    if kind == "hang":
        await asyncio.sleep(faults.hang_seconds)
        return web.Response(status=504)
    if kind == "truncated":
        text = json.dumps(sample)
        return web.Response(text=text[: len(text) // 2], content_type="application/json")
    if kind == "html":
        return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
    return web.Response(text="Service temporarily unavailable", content_type="text/plain")


class MockServer:
    """A mock app served on loopback: ``async with MockServer(app) as server: server.url``."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> MockServer:
        # long request lines are allowed in so the mock itself can answer 414
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, max_line_size=65536)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on loopback for the block; yields its base URL."""
    async with MockServer(app, host, port) as server:
        yield server.url
