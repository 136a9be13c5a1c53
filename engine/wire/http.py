"""Bytes on the wire, kept apart from policy.

An adapter builds an :class:`HttpRequest` (a plain value) and reads an
:class:`HttpResponse`; a :class:`Transport` moves one to the other. The engine injects the
transport, so the same job runs against a real API, a mock server on loopback, or an
in-process fake.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
import anyio


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as an adapter builds it: no auth, no host (the transport adds both)."""

    method: str
    path: str
    params: Sequence[tuple[str, str]] = ()
    form: Sequence[tuple[str, str]] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # bodies may carry credentials (keys sent in a form)
        body = "form" if self.form is not None else "json" if self.json is not None else "none"
        return f"HttpRequest({self.method} {self.path}, params={len(self.params)}, body={body})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def require_private_channel(name: str, url: str, *, allow_insecure_http: bool = True, why: str = "") -> str:
    """``url`` if credentials sent to it cannot travel in clear over a network: ``https://``,
    or ``http://`` to this machine only (a local mock), and only when ``allow_insecure_http``.
    The one URL check: adapters and the command line all call it. Raises ``ValueError``
    naming ``name`` (``why`` adds the vendor's reason for refusing plain HTTP)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if not allow_insecure_http:
            raise ValueError(f"{name} {url!r} is plain HTTP{why}: use https://, or set allow_insecure_http "
                             "(UNENROLL_ALLOW_INSECURE_HTTP=1) for a mock on this machine")
        if parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"{name} {url!r} is plain HTTP: use https:// (allow_insecure_http is for a mock on "
                             f"this machine only, on loopback, not {parts.hostname!r})")
        return url
    raise ValueError(f"{name} must look like https://host, not {url!r}")


class TransportError(Exception):
    """The call got no readable answer: timeout, dropped connection, refused connection.

    Always retryable. Its message never carries request headers (they hold tokens).
    """


class Transport(Protocol):
    async def send(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        """Send ``request`` with the extra ``headers`` (auth); raise TransportError on no answer."""
        ...


MAX_BODY_BYTES = 16 * 1024 * 1024


class AiohttpTransport:
    """Sends requests through an injected :class:`aiohttp.ClientSession` to ``base_url``."""

    __slots__ = ("_base_url", "_max_body", "_session", "_timeout")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float = 60.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        # aiohttp re-sends an idempotent request (DELETE, PUT, GET) once on its own when a
        # kept-alive connection drops; that call would reach the vendor behind the limiter's back
        if getattr(session, "_retry_connection", False):
            session._retry_connection = False
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body_bytes

    def __repr__(self) -> str:
        return f"AiohttpTransport(base_url={self._base_url!r})"

    async def send(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        """The whole answer, or TransportError: never a body cut short.

        The body is read to its end (after aiohttp's gzip/deflate decoding), within ``timeout``
        for the whole exchange, and refused once more than ``max_body_bytes`` arrive.
        """
        all_headers = {**request.headers, **headers}
        data: Any = None
        if request.form is not None:
            data = aiohttp.FormData(list(request.form))
        try:
            # aiohttp's total timeout covers the request and every read of the body
            async with self._session.request(
                request.method,
                self._base_url + request.path,
                params=list(request.params) or None,
                data=data,
                json=request.json,
                headers=all_headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read_body(response)
                return HttpResponse(response.status, body, dict(response.headers))
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout.total}s") from None
        except aiohttp.ClientPayloadError:
            # short of its Content-Length or last chunk, or broken gzip: only retrying can tell
            raise TransportError("the answer broke off before its end or could not be decoded") from None
        except aiohttp.ClientError as exc:
            # aiohttp's messages name host and reason; request header values are blanked all the same
            message = _without_values(f"{type(exc).__name__}: {exc}", all_headers.values())
            raise TransportError(message) from None

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """Every byte to the end of the body, or TransportError past the size cap.

        A body that ends before its Content-Length or its last chunk raises aiohttp's
        ClientPayloadError (a ClientError), never returns short.
        """
        too_large = f"answer larger than {self._max_body} bytes"
        # Content-Length counts encoded bytes; a decoded body is checked as it arrives
        declared = response.content_length
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() != "identity"
        if declared is not None and declared > self._max_body and not encoded:
            raise TransportError(too_large)
        pieces: list[bytes] = []
        received = 0
        async for piece in response.content.iter_any():
            received += len(piece)
            if received > self._max_body:
                raise TransportError(too_large)
            pieces.append(piece)
        return b"".join(pieces)


def _without_values(message: str, values: Iterable[str]) -> str:
    """``message`` with every header value (and the credential after an auth scheme) blanked."""
    for value in values:
        for secret in {value, value.rpartition(" ")[2]}:
            if len(secret) >= 4:
                message = message.replace(secret, "[redacted]")
    return message


class HttpSession:
    """The aiohttp session a vendor client's transports send through: the caller's, or the
    client's own.

    A caller's session is used as it is and never closed here. Without one, the client owns
    its session: opened at the first call made inside ``async with client:`` and closed when
    the outermost ``async with`` is left. Invariant: a session opened here is closed when the
    client is left; a call made outside ``async with`` by a client that owns its session
    raises :class:`RuntimeError` saying how to give it one, before anything is sent.
    """

    __slots__ = ("_client", "_entered", "_given", "_own")

    def __init__(self, client: str, session: aiohttp.ClientSession | None = None) -> None:
        self._client = client
        self._given = session
        self._own: aiohttp.ClientSession | None = None
        self._entered = 0  # ``async with`` depth

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session to send on now (the client's own is opened here, inside ``async with``)."""
        if self._given is not None:
            return self._given
        if not self._entered:
            raise RuntimeError(f"{self._client} has no HTTP session: use it inside `async with "
                               f"{self._client}(...) as client:`, or pass it an aiohttp session (session=...)")
        if self._own is None:
            self._own = aiohttp.ClientSession()
        return self._own

    def transport(self, base_url: str, *, timeout: float) -> Transport:
        """A transport to ``base_url`` on this session (the URL is the caller's to check)."""
        if self._given is not None:
            return AiohttpTransport(self._given, base_url, timeout=timeout)
        return _OnSessionTransport(self, base_url, timeout)

    async def __aenter__(self) -> Self:
        self._entered += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._entered -= 1
        if not self._entered and self._own is not None:
            own, self._own = self._own, None
            await own.close()


class _OnSessionTransport:
    """An :class:`AiohttpTransport` on an :class:`HttpSession`'s session of the moment."""

    __slots__ = ("_base_url", "_bound", "_http", "_timeout")

    def __init__(self, http: HttpSession, base_url: str, timeout: float) -> None:
        self._http = http
        self._base_url = base_url
        self._timeout = timeout
        self._bound: tuple[aiohttp.ClientSession, AiohttpTransport] | None = None

    def __repr__(self) -> str:
        return f"AiohttpTransport(base_url={self._base_url.rstrip('/')!r}, session=own)"

    async def send(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        session = self._http.session
        if self._bound is None or self._bound[0] is not session:  # opened anew by a later ``async with``
            self._bound = (session, AiohttpTransport(session, self._base_url, timeout=self._timeout))
        return await self._bound[1].send(request, headers)


class SessionClient:
    """A vendor client that may own its HTTP session (see :class:`HttpSession`):
    ``async with Client(...) as client:``. Set ``http`` in ``__init__``."""

    http: HttpSession

    async def __aenter__(self) -> Self:
        await self.http.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.__aexit__(exc_type, exc, tb)


def transport_for(
    transport: Transport | None,
    session: aiohttp.ClientSession | HttpSession | None,
    base_url: str,
    *,
    timeout: float,
    allow_insecure_http: bool = True,
    why: str = "",
) -> Transport:
    """The transport a vendor client uses: the one given (tests, benchmarks), else an
    :class:`AiohttpTransport` on ``session`` (an aiohttp session, or a client's
    :class:`HttpSession`) to ``base_url`` once the URL passes the one URL check
    (:func:`require_private_channel`). Raises ``ValueError`` with neither."""
    if transport is not None:
        return transport
    if session is None:
        raise ValueError("give an aiohttp session (or a transport)")
    require_private_channel("base_url", base_url, allow_insecure_http=allow_insecure_http, why=why)
    if isinstance(session, HttpSession):
        return session.transport(base_url, timeout=timeout)
    return AiohttpTransport(session, base_url, timeout=timeout)


Handler = Callable[[HttpRequest, Mapping[str, str]], Awaitable[HttpResponse]]


class InProcessTransport:
    """Calls a Python function instead of the network: for benchmarks and unit tests."""

    __slots__ = ("_handler",)

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def send(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        await anyio.lowlevel.checkpoint()
        return await self._handler(request, headers)


def retry_after_seconds(response: HttpResponse) -> float | None:
    """The ``Retry-After`` header in seconds: delta-seconds, or an HTTP date in any zone.

    Returns a finite non-negative float, ``math.inf`` for a value too large for a float
    (``inf``, ``1e400``; an enormous finite value such as ``1000000000`` stays as it is), 0.0
    for a date in the past, and None when there is no header or it is negative, NaN or
    unparsable (None means "use the endpoint's own pause"; bounding a pause is the caller's
    job). Never raises.
    """
    value = (response.header("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until_http_date(value)
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds + 0.0  # -0.0 becomes 0.0


def _seconds_until_http_date(value: str) -> float | None:
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" (and a date without zone) means UTC of unknown origin
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def json_body(response: HttpResponse) -> Any:
    """The body as JSON whatever the content type says, or ``None`` if it is not JSON."""
    import json

    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
