"""The one call path, shared by jobs and backups: credentials, a place and a permit,
send, read, the throttle pause and the token refresh.

Invariants:

- credentials are fetched *before* the permit: a token fetch between the permit and the
  wire would make the call arrive later than the limiter counted it. An unreachable token
  endpoint is retried within the retry policy; refused credentials raise
  :class:`~unenroll.wire.auth.AuthError` for the caller to stop on;
- every send, the one re-send after a token refresh included, leaves through
  :meth:`Lane.board <unenroll.job.endpoint.Lane.board>` (a place on the wire, then a
  permit), and the permit is given back when its answer or failure is in;
- a call in flight finishes even if its task is cancelled (shielded; the transport's
  timeout bounds it), so its answer is read and accounted for; only a caller whose calls
  change nothing (a backup's reads) may let a stop cut them off (``finish_on_stop=False``);
- a throttle pauses the endpoint before any further call on it may leave: by the vendor's
  word, at most ``max_pause`` (``EndpointSpec.pause_for``);
- at most one token refresh per call: refused again right after it, the answer is
  returned as it is (``AUTH_EXPIRED``, an attempt the caller spends);
- an answer the reader cannot read (it raises) is ``RETRY`` "unreadable", never an
  exception; a 429 is ``THROTTLED`` whatever else in it could not be read.

The call path decides nothing about trying again: its caller does, by the one budget
(:class:`~unenroll.job.settings.JobSettings`, see ``settings.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import anyio

from unenroll.contract.declarations import Adapter
from unenroll.job.endpoint import Lane
from unenroll.job.settings import JobSettings
from unenroll.limits.headers import read_rate_limit
from unenroll.limits.window import Permit
from unenroll.model import CallResult, CallVerdict
from unenroll.observe.secrets import scrub
from unenroll.wire.auth import AuthError, headers_with_retry
from unenroll.wire.http import HttpRequest, HttpResponse, TransportError

R = TypeVar("R")
Credentials = tuple[int, Mapping[str, str]]  # the auth's generation and its headers


class Ticket(NamedTuple):
    """What a call needs to leave: credentials, then a place on the wire and a permit."""

    credentials: Credentials
    permit: Permit


@dataclass(slots=True)
class Answer(Generic[R]):
    """One call's answer, read: the reader's value, or a :class:`CallResult` for the rest."""

    result: R | CallResult
    lost: bool  # the transport failed: the call may have taken effect unseen
    refreshed: bool  # the token was refreshed during this call (at most once)
    holding: bool  # the place on the wire is still held: leave it (``Lane.leave``) after acting


def _nothing() -> None:
    return None


class CallPath:
    """The call path of one job or one backup (see the module docstring)."""

    def __init__(self, adapter: Adapter, settings: JobSettings, rng: random.Random, log: Any) -> None:
        self.adapter = adapter
        self.settings = settings
        self._rng = rng
        self._log = log

    async def credentials(self) -> Credentials:
        """Auth headers, fetching a token if needed; :class:`AuthError` when refused, or when
        the token endpoint stayed unreachable for the retry policy's attempts."""
        retry = self.settings.retry
        return await headers_with_retry(self.adapter.auth, retry.max_attempts, lambda n: retry.backoff(n, self._rng))

    async def board(self, lane: Lane) -> Ticket:
        """Credentials first, then a place on the wire and the limiter's permit."""
        credentials = await self.credentials()
        return Ticket(credentials, await lane.board())

    async def send(
        self,
        lane: Lane,
        ticket: Ticket,
        request: HttpRequest,
        read: Callable[[HttpResponse], R | CallResult],
        *,
        before_send: Callable[[], None] = _nothing,
        may_refresh: bool = True,
        keep_place: bool = False,
        finish_on_stop: bool = True,
        log: Any = None,
    ) -> Answer[R]:
        """Send ``request`` on a boarded ``ticket`` and read the answer with ``read``; after a
        refused token (401), refresh it once and send again (boarding anew).
        ``before_send`` runs before each send leaves (it may refuse by raising).
        ``keep_place``: hold the place on the wire until the caller has acted on the answer
        (``Answer.holding``), so a fatal answer stops the caller before another call goes."""
        log = log if log is not None else self._log
        generation, headers = ticket.credentials
        permit, on_wire, refreshed = ticket.permit, True, False
        try:
            while True:
                before_send()
                lane.stats.calls += 1
                lost = False
                with anyio.CancelScope(shield=finish_on_stop):  # a change in flight finishes even on stop
                    try:
                        response = await self.adapter.transport.send(request, headers)
                    except TransportError as exc:
                        result: R | CallResult = CallResult.whole(CallVerdict.RETRY, "transport", scrub(str(exc)))
                        lost = True
                    else:
                        result = _read_checked(read, response)
                    finally:
                        lane.answered(permit)  # the window counts from the answer
                verdict = result.verdict if isinstance(result, CallResult) else CallVerdict.ANSWERED
                if not lost:  # the vendor's word on its limit, whoever the vendor: the limiter hears it
                    throttled = isinstance(result, CallResult) and verdict is CallVerdict.THROTTLED
                    word = read_rate_limit(response.header)
                    lane.observed(permit, throttled, result.retry_after if isinstance(result, CallResult) else None,
                                  word)
                    if word.spent and not throttled:  # nothing remains: every call waits for the reset
                        lane.pause(min(word.reset or 0.0, self.settings.max_pause))
                if isinstance(result, CallResult) and verdict is CallVerdict.THROTTLED:  # before the next call leaves
                    pause = lane.spec.pause_for(result.retry_after, self.settings.max_pause)
                    lane.pause(pause)
                    lane.stats.throttled += 1
                    log.warning("endpoint.throttled", code=result.code, pause_s=round(pause, 3))
                if on_wire and not keep_place:
                    lane.leave()
                    on_wire = False
                log.debug("chunk.answered", verdict=verdict.value,
                          code=result.code if isinstance(result, CallResult) else None)
                if verdict is not CallVerdict.AUTH_EXPIRED or refreshed or not may_refresh:
                    return Answer(result, lost, refreshed, on_wire)
                refreshed = True
                try:
                    with anyio.CancelScope(shield=True):
                        did_refresh = await self.adapter.auth.refresh(generation)
                except AuthError as exc:
                    return Answer(CallResult.whole(CallVerdict.FATAL, "auth", scrub(str(exc))), lost, True, on_wire)
                except TransportError as exc:
                    return Answer(CallResult.whole(CallVerdict.RETRY, "auth", scrub(str(exc))), lost, True, on_wire)
                if did_refresh:
                    lane.stats.auth_refreshes += 1
                    log.info("auth.refreshed")
                if on_wire:
                    lane.leave()
                    on_wire = False
                (generation, headers), permit = await self.board(lane)  # the re-send is a call like any other
                on_wire = True
        except BaseException:
            if on_wire:
                lane.leave()
            raise


def _read_checked(read: Callable[[HttpResponse], R | CallResult], response: HttpResponse) -> R | CallResult:
    """The reader's reading; a reader that raises is a bad answer, retried (a 429 pauses:
    the vendor did nothing, so it spends no attempt)."""
    try:
        return read(response)
    except Exception as exc:  # an answer the reader could not read: retry, never crash
        message = scrub(f"{type(exc).__name__}: {exc}")
        if getattr(response, "status", None) == 429:
            return CallResult.whole(CallVerdict.THROTTLED, "429", f"too many requests (unreadable: {message})")
        return CallResult.whole(CallVerdict.RETRY, "unreadable", message)
