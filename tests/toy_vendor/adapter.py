"""The toy vendor's declarations and client: one operation, a pure build and a pure read.

Its API: ``POST /courses/{course}/unenroll`` with the JSON body ``{"users": [ids]}``
answers 200 ``{"unenrolled": [ids], "not_enrolled": [ids]}``, every id sent in exactly one
of the two lists; 429 (with ``Retry-After``) past ``max_calls`` in a rolling ``window``;
401 for a wrong token; 404 for an unknown course. Like a real vendor folder it imports
from the engine only ``unenroll.contract``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from unenroll.contract import (
    AiohttpTransport,
    CallResult,
    CallVerdict,
    EndpointSpec,
    HttpRequest,
    HttpResponse,
    Item,
    ItemResult,
    Operation,
    Outcome,
    Secret,
    StaticTokenAuth,
    json_body,
    retry_after_seconds,
)

UNENROLL = "unenroll"


@dataclass(frozen=True, slots=True)
class ToyLimits:
    max_calls: int = 5  # per window, as the toy's documentation says
    window: float = 60.0
    users_per_call: int = 3


def build_unenroll(target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    (course,) = target
    return HttpRequest("POST", f"/courses/{quote(course, safe='')}/unenroll", json={"users": list(subjects)})


def _unreadable(why: str) -> CallResult:
    return CallResult.whole(CallVerdict.RETRY, "unreadable", f"the answer was not the documented JSON: {why}")


def read_unenroll(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    """Every id sent is in exactly one of ``unenrolled`` and ``not_enrolled``; any other
    answer to a 200 is unreadable (retried)."""
    if response.status == 429:
        return CallResult.whole(CallVerdict.THROTTLED, "429", "too many calls", retry_after_seconds(response))
    if response.status == 401:
        return CallResult.whole(CallVerdict.AUTH_EXPIRED, "401", "token refused")
    if response.status == 404:
        return CallResult.whole(CallVerdict.FAILED, "404", "no such course")
    if response.status != 200:
        return CallResult.whole(CallVerdict.RETRY, str(response.status), f"HTTP {response.status}")
    body = json_body(response)
    lists = [body.get(name) if isinstance(body, dict) else None for name in ("unenrolled", "not_enrolled")]
    done, absent = lists
    if not isinstance(done, list) or not isinstance(absent, list):
        return _unreadable("unenrolled and not_enrolled are not both lists")
    if sorted([*done, *absent]) != sorted(subjects):
        return _unreadable("the lists do not name every id sent exactly once")
    return CallResult.answered([ItemResult.final(Outcome.UNENROLLED, "200") if user in done
                                else ItemResult.final(Outcome.NOT_ENROLLED, "absent", "not enrolled in the course")
                                for user in subjects])


def validate(item: Item) -> str | None:
    return None if item.subject.isascii() and item.subject.isdigit() else "a user id is digits"


class ToyAdapter:
    vendor = "toy"

    def __init__(self, *, session: aiohttp.ClientSession, base_url: str, token: Secret, limits: ToyLimits,
                 time_scale: float, timeout: float) -> None:
        self.transport = AiohttpTransport(session, base_url, timeout=timeout)
        self.auth = StaticTokenAuth(token, "Bearer {token}")
        self.operations = {UNENROLL: Operation(UNENROLL, UNENROLL, Outcome.UNENROLLED, limits.users_per_call,
                                               build_unenroll, read_unenroll, validate)}
        self.endpoints = {UNENROLL: EndpointSpec(UNENROLL, limits.max_calls, limits.window,
                                                 lock_period=limits.window).scaled(time_scale)}
