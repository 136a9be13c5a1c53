"""The wire: how an answer's bytes travel (pieces, pauses, chunked, gzip, stalls).

Invariant: whatever the options, the client receives every byte of the answer the mock
wrote; only how and when they arrive changes. Routes under ``/__`` travel plainly.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import random
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class WireOptions:
    """How a mock writes each answer of the vendor's routes on the wire (real networks
    deliver a body in pieces; a quiet loopback hides that). The default writes as aiohttp
    does: one piece with a Content-Length.

    Cut points are drawn from the mock's seed; seconds are multiplied by its time scale.
    Routes under ``/__`` (the mock's stats, the benchmarks' records) are always written plainly.
    """

    fragments: int = 1  # the body in this many pieces, cut at seeded random points
    fragment_bytes: int | None = None  # and no piece longer than this
    fragment_pause: float = 0.0  # seconds between two pieces
    chunked: bool = False  # Transfer-Encoding: chunked, one chunk per piece
    gzip: bool = False  # Content-Encoding: gzip; the pieces are cut from the compressed bytes
    stall_after: int | None = None  # bytes of the (encoded) body written before the answer stalls
    stall_seconds: float = 0.0  # how long it stalls
    stall_share: float = 1.0  # share of answers that stall (seeded)

    def __post_init__(self) -> None:
        if self.fragments < 1 or (self.fragment_bytes is not None and self.fragment_bytes < 1):
            raise ValueError("fragments and fragment_bytes must be at least 1")
        if (self.stall_after is not None and self.stall_after < 0) or not 0.0 <= self.stall_share <= 1.0:
            raise ValueError("stall_after must be >= 0 and stall_share between 0 and 1")
        if not (math.isfinite(self.fragment_pause) and math.isfinite(self.stall_seconds)
                and self.fragment_pause >= 0 and self.stall_seconds >= 0):
            raise ValueError("fragment_pause and stall_seconds must be finite seconds >= 0")

    @property
    def plain(self) -> bool:
        """Whether answers go out as aiohttp would write them anyway."""
        return (self.fragments == 1 and self.fragment_bytes is None and not self.chunked and not self.gzip
                and self.stall_after is None)

    def cuts(self, length: int, rng: random.Random) -> list[int]:
        """Ascending offsets in ``(0, length)`` where a body of ``length`` bytes is cut."""
        points: set[int] = set()
        if self.fragments > 1 and length > 1:
            points.update(rng.sample(range(1, length), min(self.fragments - 1, length - 1)))
        if self.fragment_bytes is not None:
            points.update(range(self.fragment_bytes, length, self.fragment_bytes))
        return sorted(points)


HOSTILE_WIRE = WireOptions(fragments=4, fragment_bytes=1000, fragment_pause=0.2, chunked=True, gzip=True)
"""Gzip, chunked, at least four pieces and one a kilobyte, 0.2 s (scaled) between pieces."""


class WireResponse(web.Response):
    """An answer written in pieces: the client receives every byte of ``body`` (gzip-encoded
    when asked), cut at ``cuts``, ``pause`` seconds between pieces, and a pause of ``stall``
    once ``stall_after`` bytes are out. ``body`` stays the plain answer for whoever inspects
    the response on its way out (the benchmarks' arrival recorder)."""

    def __init__(self, answer: web.Response, options: WireOptions, rng: random.Random, time_scale: float) -> None:
        headers = CIMultiDict(answer.headers)
        for name in (hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING, hdrs.TRANSFER_ENCODING):
            headers.popall(name, None)
        super().__init__(body=answer.body, status=answer.status, reason=answer.reason, headers=headers)
        plain = answer.body if isinstance(answer.body, bytes) else b""
        self._wire = gzip.compress(plain, mtime=0) if options.gzip else plain
        self._cuts = options.cuts(len(self._wire), rng)
        self._pause = options.fragment_pause * time_scale
        stalls = options.stall_after is not None and rng.random() < options.stall_share
        self._stall_after = options.stall_after if stalls else None
        self._stall = options.stall_seconds * time_scale
        self._wire_written = False
        if options.gzip:
            self.headers[hdrs.CONTENT_ENCODING] = "gzip"
        if options.chunked:
            self.enable_chunked_encoding()
        else:
            self.headers[hdrs.CONTENT_LENGTH] = str(len(self._wire))

    async def write_eof(self, data: bytes = b"") -> None:
        if self.prepared and not self._wire_written:
            self._wire_written = True
            stall_at = self._stall_after
            start = 0
            for end in [*self._cuts, len(self._wire)]:
                if stall_at is not None and start <= stall_at < end:  # the stall falls inside this piece
                    await self._write_piece(start, stall_at)
                    await asyncio.sleep(self._stall)
                    start, stall_at = stall_at, None
                await self._write_piece(start, end)
                start = end
                if end < len(self._wire):
                    await asyncio.sleep(self._pause)
            if stall_at is not None:  # at or past the end: stall before the message is finished
                await asyncio.sleep(self._stall)
        await web.StreamResponse.write_eof(self)

    async def _write_piece(self, start: int, end: int) -> None:
        if end > start:  # an empty chunk would end a chunked body
            await self.write(self._wire[start:end])


def wire_middleware(options: WireOptions, time_scale: float, seed: int) -> Middleware:
    """A middleware that sends every answer of the vendor's routes (faults included) as
    ``options`` say; installed by :func:`mock_app`."""
    rng = random.Random(f"wire:{seed}")  # its own draws: the mock's fault and latency draws are unchanged

    @web.middleware
    async def wire(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if (options.plain or request.path.startswith("/__") or request.method == "HEAD"
                or not isinstance(response, web.Response) or isinstance(response, WireResponse)
                or not isinstance(response.body, bytes)
                or request.transport is None or request.transport.is_closing()):  # a dropped connection
            return response
        return WireResponse(response, options, rng, time_scale)

    return wire


def mock_app(wire: WireOptions, time_scale: float, seed: int) -> web.Application:
    """The application every mock serves: answers go through the wire options."""
    middlewares = [] if wire.plain else [wire_middleware(wire, time_scale, seed)]
    return web.Application(middlewares=middlewares)
