"""Serving a mock app on loopback, over HTTP or HTTPS.

Invariant: the server accepts request lines up to 64 KiB, so an over-long URL reaches the
mock, which answers it as the vendor would (414), instead of being refused by aiohttp.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

MAX_LINE_SIZE = 65536

class MockServer:
    """A mock app served on loopback: ``async with MockServer(app) as server: server.url``.
    With ``ssl_context`` (a server context, e.g. :attr:`LoopbackTLS.server`) it serves HTTPS."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.app, self.host, self.port, self.ssl_context = app, host, port, ssl_context
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> MockServer:
        # long request lines are allowed in so the mock itself can answer 414
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, max_line_size=MAX_LINE_SIZE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"{'https' if self.ssl_context is not None else 'http'}://{self.host}:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on loopback for the block; yields its base URL."""
    async with MockServer(app, host, port, ssl_context) as server:
        yield server.url
