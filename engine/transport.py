"""Bytes on the wire, kept apart from policy.

An adapter builds an :class:`HttpRequest` (a plain value) and reads an
:class:`HttpResponse`; a :class:`Transport` moves one to the other. The engine injects the
transport, so the same job runs against a real API, a mock server on loopback, or an
in-process fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

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

    def __repr__(self) -> str:  # bodies may carry credentials (SmarterU's API keys)
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


def require_private_channel(name: str, url: str) -> None:
    """Refuse a URL that would carry credentials in clear over a network: ``https://``,
    or ``http://`` to this machine only (a local mock)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ValueError(f"{name} must be https:// (plain http only to a mock on this machine), not {url!r}")


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
        all_headers = {**request.headers, **headers}
        data: Any = None
        if request.form is not None:
            data = aiohttp.FormData(list(request.form))
        try:
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
                body = await response.content.read(self._max_body + 1)
                if len(body) > self._max_body:
                    raise TransportError(f"answer larger than {self._max_body} bytes")
                return HttpResponse(response.status, body, dict(response.headers))
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout.total}s") from None
        except aiohttp.ClientError as exc:
            # str() of aiohttp errors names host and reason, never request headers
            raise TransportError(f"{type(exc).__name__}: {exc}") from None


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
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.header("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_body(response: HttpResponse) -> Any:
    """The body as JSON whatever the content type says, or ``None`` if it is not JSON."""
    import json

    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
