"""Seeded latency and faults: what a mock answers instead of serving a call.

Invariant: every draw comes from the mock's seeded ``random.Random``, so one seed gives one
sequence of delays and faults; a fault is drawn *before* a call changes any state (see
``MockBase.fault_gate``), so a faulted call has no effect and the client's retry does the work.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


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

    @classmethod
    def at_rate(cls, rate: float) -> Faults:
        """``rate`` of calls faulted, in equal shares: server errors, drops, truncated bodies."""
        share = rate / 3
        return cls(server_error=share, drop=share, truncated=share)

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
