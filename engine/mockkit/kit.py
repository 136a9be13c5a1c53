"""What every mock server shares: threshold counters, latency, seeded faults, how answers
travel on the wire (pieces, pauses, chunked, gzip, stalls), HTTPS on loopback, serving.

Faults are drawn *before* a call changes any state, so a faulted call has no effect and
the client's retry is what does the work (a lost answer to a call that did take effect
is a separate, explicit setting of each mock where it matters).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import random
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

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


# -- the wire: how an answer's bytes travel --------------------------------------------------


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


# -- HTTPS on loopback -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoopbackTLS:
    """A throwaway certificate authority and a certificate it issued for 127.0.0.1 and
    localhost: ``server`` serves with it, ``client`` trusts that authority (and no other)."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    ca_pem: bytes

    @classmethod
    def generate(cls) -> LoopbackTLS:
        try:
            import trustme
        except ImportError:
            raise RuntimeError("a test certificate needs the trustme package (pip install trustme)") from None
        authority = trustme.CA()
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(server)
        client = ssl.create_default_context()
        authority.configure_trust(client)
        return cls(server, client, authority.cert_pem.bytes())


def server_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context from a certificate chain and its key (PEM files)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context



# -- the mocks' command lines ----------------------------------------------------------------


def add_wire_arguments(parser: argparse.ArgumentParser) -> None:
    """The wire and HTTPS flags every mock's ``main`` takes (read back by :func:`wire_from_arguments`)."""
    group = parser.add_argument_group("the wire (seconds are scaled by --time-scale)")
    group.add_argument("--fragments", type=int, default=1, help="write each answer in this many pieces")
    group.add_argument("--fragment-bytes", type=int, default=None, help="and no piece longer than this")
    group.add_argument("--fragment-pause", type=float, default=0.0, help="seconds between two pieces")
    group.add_argument("--chunked", action="store_true", help="Transfer-Encoding: chunked")
    group.add_argument("--gzip", action="store_true", help="Content-Encoding: gzip")
    group.add_argument("--stall-after", type=int, default=None, help="bytes of a body before it stalls")
    group.add_argument("--stall-seconds", type=float, default=0.0, help="how long an answer stalls")
    group.add_argument("--stall-share", type=float, default=1.0, help="share of answers that stall")
    group.add_argument("--fragmented", action="store_true",
                       help="gzip, chunked, several pieces with pauses (the tests' hostile wire)")
    tls = parser.add_argument_group("HTTPS")
    tls.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    tls.add_argument("--tls-key", help="and this private key (PEM)")
    tls.add_argument("--tls-self-signed", metavar="CA_FILE",
                     help="serve HTTPS with a throwaway test certificate (needs trustme); its authority's "
                          "certificate is written to CA_FILE for the client to trust (e.g. SSL_CERT_FILE)")


def wire_from_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[WireOptions, ssl.SSLContext | None]:
    """The wire options and the server's TLS context the flags ask for; a bad flag ends in ``parser.error``."""
    try:
        wire = HOSTILE_WIRE if args.fragmented else WireOptions(
            fragments=args.fragments, fragment_bytes=args.fragment_bytes, fragment_pause=args.fragment_pause,
            chunked=args.chunked, gzip=args.gzip, stall_after=args.stall_after, stall_seconds=args.stall_seconds,
            stall_share=args.stall_share)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        parser.error("--tls-self-signed or --tls-cert with --tls-key, not both")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        if args.tls_cert:
            return wire, server_tls(args.tls_cert, args.tls_key)
        if args.tls_self_signed:
            tls = LoopbackTLS.generate()
            with open(args.tls_self_signed, "wb") as ca_file:
                ca_file.write(tls.ca_pem)
            return wire, tls.server
    except (OSError, ssl.SSLError, RuntimeError) as exc:
        parser.error(f"cannot serve HTTPS: {exc}")
    return wire, None

# -- serving ---------------------------------------------------------------------------------


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
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, max_line_size=65536)
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
