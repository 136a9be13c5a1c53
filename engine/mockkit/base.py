"""What a vendor mock is made of besides the vendor: :class:`MockBase`.

A vendor's mock subclasses it, adds its routes to ``self.app`` and keeps only what is the
vendor's (its state, limits, routes and answers). The base gives:

- ``clock``: the scaled clock (:mod:`.clock`); ``now()`` reads it;
- ``rng``: the random draws of latency, faults and anything else the vendor draws, from ``seed``;
- :meth:`fault_gate`: latency and a fault, drawn before the call changes any state; a
  faulted call is answered (and logged in ``fault_log``) without effect;
- ``tokens``: an optional :class:`~.tokens.TokenStore` for a vendor whose API takes OAuth
  tokens; :meth:`authorised` checks a request's ``Authorization`` header against it;
- :meth:`answer`: counts each answer's status by endpoint in ``statuses``;
- ``GET /__mock__/stats``: the vendor's :meth:`stats_fields`, the faults injected, the
  tokens issued (with a token store) and, unless ``?state=0``, the vendor's :meth:`snapshot`;
- :meth:`serve`: the app on loopback over HTTP, or HTTPS with a server SSL context.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from unenroll.mockkit.clock import ScaledClock
from unenroll.mockkit.faults import FaultLog, Faults, Latency, answer_fault
from unenroll.mockkit.server import MockServer
from unenroll.mockkit.tokens import TokenStore
from unenroll.mockkit.wire import WireOptions, mock_app

STATS_PATH = "/__mock__/stats"


class MockBase:
    """A mock server's plumbing; see the module's docstring for what it holds."""

    def __init__(
        self, *, time_scale: float, seed: int, latency: Latency, faults: Faults, wire: WireOptions,
        endpoints: Iterable[str] = (), clock: Callable[[], float] | None = None,
    ) -> None:
        self.clock = ScaledClock(time_scale, clock)
        self.rng = random.Random(seed)
        self.latency, self.faults = latency, faults
        self.fault_log = FaultLog()
        self.statuses: dict[str, Counter[int]] = {name: Counter() for name in endpoints}
        self.tokens: TokenStore | None = None
        self.app = mock_app(wire, time_scale, seed)
        self.app.router.add_get(STATS_PATH, self.stats)

    def serve(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> MockServer:
        """Serve on loopback; HTTPS with ``ssl_context`` (a server context, e.g. ``LoopbackTLS.server``)."""
        return MockServer(self.app, host, port, ssl_context)

    def now(self) -> float:
        return self.clock.now()

    # -- faults ----------------------------------------------------------------------------

    def draw_fault(self) -> str | None:
        """The fault this call gets, if any (a vendor with faults of its own extends it)."""
        return self.faults.draw(self.rng)

    async def answer_fault(self, kind: str, request: web.Request, sample: dict[str, Any]) -> web.StreamResponse:
        """The faulty answer of ``kind``; ``sample`` is a well-formed body to mangle."""
        return await answer_fault(kind, request, self.rng, self.faults, sample)

    async def fault_gate(self, request: web.Request, items: int, sample: dict[str, Any]) -> web.StreamResponse | None:
        """Wait the call's latency; the fault's answer if one was drawn, else ``None`` (serve it).

        Both are drawn (latency first) before the wait and before the caller changes any
        state: the caller serves the call only when this returns ``None``.
        """
        delay = self.latency.draw(items, self.rng, self.clock.time_scale)
        fault = self.draw_fault()
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is None:
            return None
        self.fault_log.injected[fault] += 1
        return await self.answer_fault(fault, request, sample)

    # -- tokens ----------------------------------------------------------------------------

    def issue_token(self) -> str:
        assert self.tokens is not None, "a mock that issues tokens sets self.tokens"
        return self.tokens.issue(self.now())

    def authorised(self, request: web.Request) -> bool:
        """Whether the request carries a live token of ``self.tokens``."""
        assert self.tokens is not None, "a mock that checks tokens sets self.tokens"
        return self.tokens.accepts(request.headers.get("Authorization", ""), self.now())

    # -- accounting ------------------------------------------------------------------------

    def answer(self, endpoint: str, response: web.StreamResponse) -> web.StreamResponse:
        """``response``, counted under ``endpoint`` by status."""
        self.statuses[endpoint][response.status] += 1
        return response

    def statuses_of(self, endpoint: str) -> dict[str, int]:
        return {str(status): count for status, count in self.statuses[endpoint].items()}

    def stats_fields(self) -> dict[str, Any]:
        """The vendor's own stats fields (called first, before :meth:`snapshot`)."""
        return {}

    def snapshot(self) -> dict[str, Any]:
        """The vendor's state, as the stats route shows it."""
        return {}

    async def stats(self, request: web.Request) -> web.Response:
        body = self.stats_fields()
        body["faults"] = dict(self.fault_log.injected)
        if self.tokens is not None:
            body["tokens_issued"] = self.tokens.issued
        if request.query.get("state", "1") != "0":
            body["state"] = self.snapshot()
        return web.json_response(body)
