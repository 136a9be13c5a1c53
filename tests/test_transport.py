"""The transport against a raw aiohttp server on 127.0.0.1 that writes each answer in pieces,
as a real network delivers it: the adapter sees every byte of the body, or a TransportError.

Also the Retry-After contract the pipeline relies on.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import math
import random
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest
import trustme
from aiohttp import web

from unenroll.wire.http import AiohttpTransport, HttpRequest, HttpResponse, TransportError, retry_after_seconds

SECRET_TOKEN = "Zoho-oauthtoken 1000.s3cr3t-t0ken-value"


@dataclass(frozen=True)
class Answer:
    """What the server writes: ``pieces`` with a pause after each, then how the body ends."""

    pieces: tuple[bytes, ...]
    pause: float = 0.005
    chunked: bool = False
    gzip: bool = False
    content_length: int | None = None  # without chunked encoding: the sum of the pieces unless set
    ending: str = "complete"  # or "stall" (write nothing more) or "close" (drop the connection)


class FragmentingServer:
    """Serves the :class:`Answer` registered under the request's path, piece by piece."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answer = self.answers[request.path]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if answer.gzip:
            response.headers["Content-Encoding"] = "gzip"
        if answer.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = (
                answer.content_length if answer.content_length is not None else sum(map(len, answer.pieces))
            )
        await response.prepare(request)
        for piece in answer.pieces:
            await response.write(piece)
            await asyncio.sleep(answer.pause)
        if answer.ending == "stall":
            await asyncio.sleep(10)  # the client gives up first; the handler is cancelled when it does
        if answer.ending == "close":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def serving(server: FragmentingServer, ca: trustme.CA | None) -> AsyncIterator[aiohttp.ClientSession]:
    """The server on 127.0.0.1 (HTTPS with a certificate from ``ca`` if given) and a client session for it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | bool = True
    if ca is not None:
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
            yield session
    finally:
        await runner.cleanup()


def fragments(body: bytes, rng: random.Random) -> tuple[bytes, ...]:
    """``body`` cut at 1 to 7 random places (every piece non-empty)."""
    cuts = sorted(rng.sample(range(1, len(body)), rng.randint(1, min(7, len(body) - 1))))
    edges = [0, *cuts, len(body)]
    return tuple(body[start:end] for start, end in itertools.pairwise(edges))


def answer_body(rng: random.Random) -> bytes:
    """A vendor-like JSON answer of a few kilobytes (compressible, as real ones are)."""
    rows = [{"erecno": str(rng.randrange(10**12, 10**13)), "status": "success"} for _ in range(rng.randint(50, 300))]
    return json.dumps({"response": {"result": rows}}).encode()


async def fetch(
    server: FragmentingServer,
    session: aiohttp.ClientSession,
    path: str,
    *,
    give_up_after: float = 5.0,
    max_body_bytes: int = 16 * 1024 * 1024,
) -> HttpResponse:
    transport = AiohttpTransport(session, server.url, timeout=give_up_after, max_body_bytes=max_body_bytes)
    return await transport.send(HttpRequest("GET", path), {"Authorization": SECRET_TOKEN})


def wire_kinds() -> Iterator[tuple[bool, bool, bool]]:
    for https in (False, True):
        for chunked in (False, True):
            for gzipped in (False, True):
                yield https, chunked, gzipped


@pytest.mark.parametrize(("https", "chunked", "gzipped"), list(wire_kinds()))
async def test_a_body_written_in_random_fragments_arrives_whole(
    ca: trustme.CA, https: bool, chunked: bool, gzipped: bool
) -> None:
    rng = random.Random(f"{https}-{chunked}-{gzipped}")
    server = FragmentingServer()
    bodies: dict[str, bytes] = {}
    for n in range(4):  # 8 wire kinds x 4 fragmentations
        body = answer_body(rng)
        wire = gzip.compress(body) if gzipped else body
        bodies[f"/answer/{n}"] = body
        server.answers[f"/answer/{n}"] = Answer(fragments(wire, rng), pause=rng.uniform(0.002, 0.008),
                                                chunked=chunked, gzip=gzipped)
    async with serving(server, ca if https else None) as session:
        for path, body in bodies.items():
            response = await fetch(server, session, path)
            assert response.status == 200
            assert response.body == body


@pytest.mark.parametrize("https", [False, True])
async def test_a_130_kb_answer_in_one_write_arrives_whole(ca: trustme.CA, https: bool) -> None:
    body = random.Random(7).randbytes(130 * 1024)
    server = FragmentingServer()
    server.answers["/large"] = Answer((body,), pause=0)
    async with serving(server, ca if https else None) as session:
        response = await fetch(server, session, "/large")
    assert response.body == body


@pytest.mark.parametrize(("https", "chunked", "gzipped"), list(wire_kinds()))
async def test_a_connection_that_stalls_mid_body_ends_in_a_transport_error(
    ca: trustme.CA, https: bool, chunked: bool, gzipped: bool
) -> None:
    wire = gzip.compress(answer_body(random.Random(1))) if gzipped else answer_body(random.Random(1))
    server = FragmentingServer()
    server.answers["/stall"] = Answer((wire[: len(wire) // 2],), chunked=chunked, gzip=gzipped,
                                      content_length=None if chunked else len(wire), ending="stall")
    async with serving(server, ca if https else None) as session:
        with pytest.raises(TransportError, match="timed out"):
            await fetch(server, session, "/stall", give_up_after=0.3)


@pytest.mark.parametrize(("https", "chunked", "gzipped"), list(wire_kinds()))
async def test_a_connection_closed_mid_body_ends_in_a_transport_error_without_the_request_headers(
    ca: trustme.CA, https: bool, chunked: bool, gzipped: bool
) -> None:
    wire = gzip.compress(answer_body(random.Random(2))) if gzipped else answer_body(random.Random(2))
    server = FragmentingServer()
    server.answers["/cut"] = Answer(fragments(wire[: len(wire) // 2], random.Random(3)), chunked=chunked,
                                    gzip=gzipped, content_length=None if chunked else len(wire), ending="close")
    async with serving(server, ca if https else None) as session:
        with pytest.raises(TransportError) as raised:
            await fetch(server, session, "/cut")
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("https", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_size_cap_ends_in_a_transport_error(ca: trustme.CA, https: bool, chunked: bool) -> None:
    body = random.Random(4).randbytes(5000)
    server = FragmentingServer()
    server.answers["/big"] = Answer(fragments(body, random.Random(5)), chunked=chunked)
    async with serving(server, ca if https else None) as session:
        with pytest.raises(TransportError, match="larger than 1000 bytes"):
            await fetch(server, session, "/big", max_body_bytes=1000)


async def test_a_gzip_body_that_decodes_over_the_size_cap_ends_in_a_transport_error(ca: trustme.CA) -> None:
    wire = gzip.compress(b"0" * 50_000)  # about 100 bytes on the wire
    server = FragmentingServer()
    server.answers["/bomb"] = Answer(fragments(wire, random.Random(6)), chunked=True, gzip=True)
    async with serving(server, None) as session:
        with pytest.raises(TransportError, match="larger than 1000 bytes"):
            await fetch(server, session, "/bomb", max_body_bytes=1000)


async def test_a_body_exactly_at_the_size_cap_arrives_whole() -> None:
    body = random.Random(8).randbytes(1000)
    server = FragmentingServer()
    server.answers["/edge"] = Answer(fragments(body, random.Random(9)), chunked=True)
    async with serving(server, None) as session:
        response = await fetch(server, session, "/edge", max_body_bytes=1000)
    assert response.body == body


# Retry-After: a finite non-negative float, math.inf, or None ("use the endpoint's own pause")


def retry_after(value: str) -> float | None:
    return retry_after_seconds(HttpResponse(429, b"", {"Retry-After": value}))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1000000000", 1e9),
        ("inf", math.inf),
        ("1e400", math.inf),
        ("-5", None),
        ("nan", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_in_seconds(value: str, seconds: float | None) -> None:
    assert retry_after(value) == seconds


def test_retry_after_without_the_header_is_none() -> None:
    assert retry_after_seconds(HttpResponse(429, b"", {})) is None


@pytest.mark.parametrize(
    "http_date",
    [
        lambda when: format_datetime(when.replace(tzinfo=None)),  # "... -0000": UTC of unknown origin
        lambda when: format_datetime(when.astimezone(timezone(timedelta(hours=2)))),  # "... +0200"
        lambda when: format_datetime(when, usegmt=True),  # "... GMT"
    ],
    ids=["-0000", "+0200", "GMT"],
)
def test_retry_after_as_an_http_date_in_any_zone(http_date: Callable[[datetime], str]) -> None:
    in_an_hour = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    seconds = retry_after(http_date(in_an_hour))
    assert seconds is not None
    assert 3500 <= seconds <= 3600  # the hour, less the moments the test itself took


def test_retry_after_as_a_past_http_date_is_no_pause() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0
