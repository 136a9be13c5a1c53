"""Credentials for vendor calls.

The engine asks an :class:`Auth` for headers before each call and, when an answer says
the credentials expired, asks it to refresh once (``refresh(generation)``): concurrent
calls that saw the same expired token cause one refresh, not one each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Protocol

import anyio

from unenroll.observe.secrets import Secret
from unenroll.wire.http import HttpRequest, Transport, TransportError


class AuthError(Exception):
    """Credentials were refused and cannot be refreshed: fatal for the job."""


class Auth(Protocol):
    async def headers(self) -> tuple[int, Mapping[str, str]]:
        """The current auth headers and their generation number."""
        ...

    async def refresh(self, generation: int) -> bool:
        """Get new credentials unless a refresh already happened after ``generation``;
        ``True`` if this call fetched them."""
        ...


async def headers_with_retry(
    auth: Auth, attempts: int, backoff: Callable[[int], float]
) -> tuple[int, Mapping[str, str]]:
    """``auth.headers()``, waiting ``backoff(n)`` after the n-th unreachable token endpoint;
    :class:`AuthError` when the credentials are refused or it failed ``attempts`` times."""
    failures = 0
    while True:
        try:
            return await auth.headers()
        except TransportError as exc:
            failures += 1
            if failures >= attempts:
                raise AuthError(f"the token endpoint kept failing: {exc}") from None
            await anyio.sleep(backoff(failures))


class NoAuth:
    """For vendors that authenticate inside the request body (their keys travel in the body) and for tests."""

    async def headers(self) -> tuple[int, Mapping[str, str]]:
        return 0, {}

    async def refresh(self, generation: int) -> bool:
        raise AuthError("this endpoint's credentials cannot be refreshed")


class StaticTokenAuth:
    """A token given by the caller; it cannot be refreshed."""

    __slots__ = ("_template", "_token")

    def __init__(self, token: Secret | str, template: str = "Bearer {token}") -> None:
        self._token = Secret(token) if isinstance(token, str) else token
        self._template = template

    def __repr__(self) -> str:
        return "StaticTokenAuth(token=***)"

    async def headers(self) -> tuple[int, Mapping[str, str]]:
        return 0, {"Authorization": self._template.format(token=self._token.reveal())}

    async def refresh(self, generation: int) -> bool:
        raise AuthError("the access token was refused and no refresh credentials were given")


class OAuthTokenAuth:
    """OAuth2 access tokens from a token endpoint (refresh-token, client-credentials or
    password grant: the caller gives the form fields). Fetches lazily, refreshes on demand.
    """

    __slots__ = ("_fields", "_generation", "_lock", "_path", "_template", "_token", "_transport")

    def __init__(
        self,
        transport: Transport,
        token_path: str,
        fields: Mapping[str, str | Secret],
        *,
        header_template: str = "Bearer {token}",
    ) -> None:
        self._transport = transport
        self._path = token_path
        self._fields = {k: Secret(v) if isinstance(v, str) else v for k, v in fields.items()}
        self._template = header_template
        self._token: Secret | None = None
        self._generation = 0
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"OAuthTokenAuth(token_path={self._path!r}, fields=[{', '.join(self._fields)}])"

    async def headers(self) -> tuple[int, Mapping[str, str]]:
        if self._token is None:
            await self.refresh(self._generation)
        assert self._token is not None
        return self._generation, {"Authorization": self._template.format(token=self._token.reveal())}

    async def refresh(self, generation: int) -> bool:
        async with self._lock:
            if generation != self._generation and self._token is not None:
                return False  # someone refreshed while we waited
            form = [(k, v.reveal()) for k, v in self._fields.items()]
            # a TransportError propagates: the call that needed the token is retried
            answer = await self._transport.send(HttpRequest("POST", self._path, form=form), {})
            if answer.status >= 500:
                raise TransportError(f"token endpoint answered HTTP {answer.status}")
            try:
                token = json.loads(answer.body)["access_token"]
            except (ValueError, KeyError, TypeError):
                token = None
            if answer.status != 200 or not isinstance(token, str) or not token:
                raise AuthError(f"token endpoint refused the credentials (HTTP {answer.status})")
            self._token = Secret(token)
            self._generation += 1
            return True
