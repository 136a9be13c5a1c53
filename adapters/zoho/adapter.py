"""Zoho People LMS: unenroll from a batch, remove one learner, share a course.

Contract: ``shared/vendor-apis.md`` section 1. Documented: 30 calls a minute per API and
a 5 minute lock for the call that exceeds it; status codes 400/403/404/422/500. Ours:
the cap on ids per call (100, halved on 422), the URL length cap, what an absent id
means.

Items:

- ``unenroll``: target ``(course_id, batch_id)``, subject an erecno;
- ``remove_learner``: target ``(course_id, batch_id)``, subject a learnerId;
- ``share_course``: target ``(course_id,)``, subject an erecno.

Backups (``readers``): ``unenroll`` and ``remove_learner`` items are read by paging the
batch's learners (``read_learners``, 25 a call, its own 30-a-minute threshold);
``share_course`` has no read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp

from unenroll.contract import (
    Auth,
    CallResult,
    CallVerdict,
    EndpointSpec,
    EnrolmentReader,
    HttpRequest,
    HttpResponse,
    HttpSession,
    Item,
    ItemResult,
    OAuthTokenAuth,
    Operation,
    Outcome,
    ReadPage,
    Secret,
    SessionClient,
    StaticTokenAuth,
    Transport,
    exact_id,
    is_loopback,
    json_body,
    require_private_channel,
    retry_after_seconds,
    transport_for,
)

UNENROLL = "unenroll"
REMOVE_LEARNER = "remove_learner"
SHARE_COURSE = "share_course"
READ_LEARNERS = "read_learners"

BASE_URL = "https://people.zoho.com"
ACCOUNTS_URL = "https://accounts.zoho.com"
LOCK_CODE = "7209"


@dataclass(frozen=True, slots=True)
class ZohoLimits:
    """Every number is a setting; the defaults are the documented ones where there are any."""

    calls_per_window: int = 30  # [doc] per API
    window: float = 60.0  # [doc] "within a minute"
    lock_period: float = 300.0  # [doc] 5 minutes
    margin: float = 0.1  # on top of the answer-based window (limiter.py), which is already safe alone
    max_in_flight: int = 4
    max_ids_per_call: int = 100  # not documented; halved for the job on a 422
    max_url_bytes: int = 8000  # not documented; the mock refuses URLs over 8,192 bytes

    def endpoint(self, name: str, time_scale: float) -> EndpointSpec:
        return EndpointSpec(
            name,
            max_calls=self.calls_per_window,
            window=self.window,
            lock_period=self.lock_period,
            margin=self.margin,
            max_in_flight=self.max_in_flight,
        ).scaled(time_scale)


# -- validation --------------------------------------------------------------------------


JAVA_LONG_MAX = 2**63 - 1  # Zoho's ids are Java longs: a larger id cannot exist, and would overflow there


def _zoho_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Zoho id, or ``None``. Zoho's ids are digits a Java long holds,
    without leading zeros: ``erecnosList`` is a JSON array of numbers, and ``[0070]`` is not
    JSON (a lenient parser would echo 70)."""
    if not (value.isascii() and value.isdigit()) or (value[0] == "0" and value != "0"):
        return "is not a Zoho id (digits only, no leading zeros)"
    if len(value) > 19 or int(value) > JAVA_LONG_MAX:
        return f"is larger than any Zoho id can be (at most {JAVA_LONG_MAX})"
    return None


def validate(item: Item) -> str | None:
    """Zoho ids (erecno, learnerId, course and batch ids) are digit strings a Java long holds."""
    expected = 1 if item.operation == SHARE_COURSE else 2
    if len(item.target) != expected:
        names = "course id" if expected == 1 else "course id and batch id"
        return f"the target must be the {names}"
    for value in item.target:
        if (problem := _zoho_id_problem(value)) is not None:
            return f"target id {value[:40]!r} {problem}"
    if (problem := _zoho_id_problem(item.subject)) is not None:
        return f"{item.subject[:40]!r} {problem}"
    return None


# -- requests ----------------------------------------------------------------------------


def erecnos_list(subjects: Sequence[str]) -> str:
    """The documented ``erecnosList`` value: a JSON array of erecnos."""
    return "[" + ",".join(subjects) + "]"


def unenroll_path(target: tuple[str, ...]) -> str:
    course, batch = target
    return f"/api/v1/courses/{quote(course)}/batches/{quote(batch)}/unenroll"


def build_unenroll(target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    return HttpRequest("POST", unenroll_path(target), params=[("erecnosList", erecnos_list(subjects))])


def build_remove_learner(target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    course, batch = target
    (learner,) = subjects
    return HttpRequest("DELETE", f"/api/v1/courses/{quote(course)}/batches/{quote(batch)}/learners/{quote(learner)}")


def build_share_course(target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    (course,) = target
    return HttpRequest("PUT", f"/api/v1/courses/{quote(course)}/share", form=[("erecnosList", erecnos_list(subjects))])


def unenroll_url_base_bytes(base_url: str, target: tuple[str, ...]) -> int:
    """URL length without ids: base, path, ``?erecnosList=`` and the encoded brackets."""
    return len(base_url) + len(unenroll_path(target)) + len("?erecnosList=") + len("%5B%5D")


def unenroll_url_item_bytes(subject: str) -> int:
    """An id's share of the URL, counted as if fully percent-encoded, plus its ``%2C``."""
    if subject.isascii() and subject.isdigit():  # every valid Zoho id: digits stay as they are
        return len(subject) + 3
    return len(quote(subject, safe="")) + len("%2C")


# -- answers -----------------------------------------------------------------------------


def _code_and_message(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict):
        code, message = body.get("code"), body.get("message")
        return (None if code is None else str(code)), (None if message is None else str(message))
    return None, None


def read_common(response: HttpResponse, body: Any) -> CallResult | None:
    """Whole-call verdicts shared by every Zoho LMS API; ``None`` for a 200 to read further.

    Classified by the body's code *and* the status: the lock is code 7209 whatever the
    status; 429 is a throttle with ``Retry-After``.
    """
    status = response.status
    code, message = _code_and_message(body)
    if code == LOCK_CODE:
        return CallResult.whole(CallVerdict.THROTTLED, LOCK_CODE, message)  # pause: the lock period
    if status == 429:
        return CallResult.whole(CallVerdict.THROTTLED, "429", message, retry_after_seconds(response))
    if status == 200:
        return None
    where = f"HTTP {status}"
    message = message or where
    if status == 401:
        return CallResult.whole(CallVerdict.AUTH_EXPIRED, code or "401", message)
    if status == 403:
        return CallResult.whole(
            CallVerdict.FATAL, code or "403",
            f"not authorised ({message}): the token needs scope ZOHOPEOPLE.training.ALL",
        )
    if status == 404:
        if code is None and message == where:  # no Zoho error body: see _not_zoho_404
            return _not_zoho_404(response, body)
        return CallResult.whole(CallVerdict.FAILED, code or "404", f"not found: {message}")
    if status in (414, 422):
        return CallResult.whole(CallVerdict.TOO_LARGE, code or str(status), message)
    if status == 400:
        return CallResult.whole(CallVerdict.SPLIT, code or "400", message)
    return CallResult.whole(CallVerdict.RETRY, code or str(status), message)  # 5xx and the unexpected


def _not_zoho_404(response: HttpResponse, body: Any) -> CallResult | None:
    """A 404 without Zoho's JSON error body did not come from the LMS API (a wrong base URL
    or a proxy): no item may be read as "not enrolled" from it. Fatal, with what to check."""
    if response.status == 404 and _code_and_message(body) == (None, None):
        return CallResult.whole(CallVerdict.FATAL, "404",
                                "HTTP 404 without Zoho's error body: check the base URL (data centre)")
    return None


def _unreadable(why: str | None = None) -> CallResult:
    detail = f": {why}" if why else ""
    return CallResult.whole(CallVerdict.RETRY, "unreadable", f"the answer was not the documented JSON{detail}")


def _success_list(body: Any, name: str) -> list[Any] | str:
    """The list ``name`` of a ``code`` 200 answer, or why the answer has none."""
    if not isinstance(body, dict) or str(body.get("code")) != "200":
        return "no success code"
    entries = body.get(name)
    return entries if isinstance(entries, list) else f"{name} is not a list"


def entries_by_id(
    entries: Sequence[Any], key: str, name: str, sent: Collection[str] | None
) -> dict[str, Mapping[str, Any]] | str:
    """The entries of an answer's list by the id each names in ``key``, or why the list
    cannot be read.

    Well formed in full: every entry an object naming exactly one id in ``key`` (matched by
    :func:`~unenroll.wire.echoed_ids.exact_id`), no id twice, and, when ``sent`` is
    given, only ids that were sent. Only from such a list may an id it leaves out be read as
    absent; one entry that cannot be matched makes the whole list unreadable.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            return f"entry {position} of {name} is not an object"
        echoed = exact_id(entry.get(key))
        if echoed is None:
            return f"entry {position} of {name} names no {key}"
        if sent is not None and echoed not in sent:
            return f"{name} names {key} {echoed}, which was not sent"
        if echoed in by_id:
            return f"{name} names {key} {echoed} twice"
        by_id[echoed] = entry
    return by_id


def read_unenroll(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    """Each erecno sent is in ``learners`` (unenrolled) or absent (it was not enrolled).

    Absence is read as "not enrolled" only from a list well formed in full
    (:func:`entries_by_id`); otherwise the whole call is unreadable and retried. A listed
    erecno whose ``enrollmentStatus`` is not ``unenrolled`` (or is missing) is retried:
    the answer names it without saying it was unenrolled. ``batchId`` and ``courseId`` are
    not checked: the documented sample itself gives the batch's id as the course's.
    """
    body = json_body(response)
    if (common := read_common(response, body)) is not None:
        return common
    learners = _success_list(body, "learners")
    if isinstance(learners, str):
        return _unreadable(learners)
    listed = entries_by_id(learners, "erecno", "learners", set(subjects))
    if isinstance(listed, str):
        return _unreadable(listed)
    results = []
    for erecno in subjects:
        entry = listed.get(erecno)
        if entry is None:
            results.append(ItemResult.final(Outcome.NOT_ENROLLED, "absent", "not enrolled in this batch"))
        elif (status := entry.get("enrollmentStatus")) == "unenrolled":
            results.append(ItemResult.final(Outcome.UNENROLLED, "200"))
        else:
            results.append(ItemResult.retry("unexpected_status", f"enrollmentStatus {str(status)[:40]!r}"))
    return CallResult.answered(results)


def read_remove_learner(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    """200 naming the learner sent: removed. 404 for one learner: not in that batch (already
    removed, or wrong ids). A 200 that names no learner, or another one, is unreadable."""
    body = json_body(response)
    if (not_zoho := _not_zoho_404(response, body)) is not None:
        return not_zoho
    if response.status == 404 and _code_and_message(body)[0] != LOCK_CODE:
        _, message = _code_and_message(body)
        return CallResult.answered([ItemResult.final(Outcome.NOT_ENROLLED, "404", message or "learner not found")])
    if (common := read_common(response, body)) is not None:
        return common
    if not isinstance(body, dict) or str(body.get("code")) != "200":
        return _unreadable("no success code")
    (learner,) = subjects
    if exact_id(body.get("learnerId")) != learner:
        return _unreadable("the answer does not name the learner that was sent")
    return CallResult.answered([ItemResult.final(Outcome.UNENROLLED, "200")])


def read_share_course(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    """Each erecno sent is in ``sharedUsers``, or absent: an unknown employee (failed).
    Absence is read only from a list well formed in full (:func:`entries_by_id`)."""
    body = json_body(response)
    if (common := read_common(response, body)) is not None:
        return common
    shared = _success_list(body, "sharedUsers")
    if isinstance(shared, str):
        return _unreadable(shared)
    listed = entries_by_id(shared, "erecno", "sharedUsers", set(subjects))
    if isinstance(listed, str):
        return _unreadable(listed)
    return CallResult.answered([
        ItemResult.final(Outcome.SHARED, "200") if e in listed
        else ItemResult.final(Outcome.FAILED, "absent", "not shared: no such employee")
        for e in subjects
    ])


# -- reading a batch's learners (backups) -------------------------------------------------

READ_PAGE_SIZE = 25  # [doc] the LMS list APIs page by startIndex, 25 a call


def build_read_learners(target: tuple[str, ...], subjects: Sequence[str], page: int) -> HttpRequest:
    """Page ``page`` (from 0) of the batch's learners; the read lists the whole batch."""
    course, batch = target
    return HttpRequest("GET", f"/api/v1/courses/{quote(course)}/batches/{quote(batch)}/learners",
                       params=[("startIndex", str(page * READ_PAGE_SIZE))])


def read_learners_page(
    key: str, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse
) -> ReadPage | CallResult:
    """The records of the targeted learners on this page, matched on ``key`` (``erecno``
    or ``learnerId``); a full page means another may follow. An unknown course or batch
    (404) enrols nobody: an empty last page. The page lists the whole batch, so records of
    other learners are expected; a record that names no id in ``key``, or an id twice,
    makes the page unreadable (a targeted learner is never dropped as absent)."""
    body = json_body(response)
    if (not_zoho := _not_zoho_404(response, body)) is not None:
        return not_zoho
    if response.status == 404 and _code_and_message(body)[0] != LOCK_CODE:
        return ReadPage({}, more=False, listed=0)
    if (common := read_common(response, body)) is not None:
        return common
    learners = _success_list(body, "learners")
    if isinstance(learners, str):
        return _unreadable(learners)
    listed = entries_by_id(learners, key, "learners", None)  # the whole batch: others' records are expected
    if isinstance(listed, str):
        return _unreadable(listed)
    records = {subject: listed[subject] for subject in subjects if subject in listed}
    return ReadPage(records, more=len(learners) >= READ_PAGE_SIZE, listed=len(learners))


def plan_read_learners(target: tuple[str, ...], n_items: int) -> int:
    """At least one page per 25 targeted learners (and one per batch): the batch's size,
    which sets the real cost, is only known by reading it."""
    return max(1, -(-n_items // READ_PAGE_SIZE))


def readers() -> dict[str, EnrolmentReader]:
    note = ("zoho reads whole batches, 25 learners a call: batches holding learners you did not target "
            "cost more, and their sizes are only known by reading them")
    return {
        op: EnrolmentReader(READ_LEARNERS, build_read_learners, partial(read_learners_page, key),
                            plan_read_learners, max_subjects=None, plan_is_exact=False, plan_note=note)
        for op, key in ((UNENROLL, "erecno"), (REMOVE_LEARNER, "learnerId"))
    }


# -- the adapter -------------------------------------------------------------------------


def operations(base_url: str, limits: ZohoLimits) -> dict[str, Operation]:
    cap = limits.max_ids_per_call
    return {
        UNENROLL: Operation(
            UNENROLL, UNENROLL, Outcome.UNENROLLED, cap, build_unenroll, read_unenroll, validate,
            max_request_bytes=limits.max_url_bytes,
            base_bytes=partial(unenroll_url_base_bytes, base_url),
            item_bytes=unenroll_url_item_bytes,
        ),
        REMOVE_LEARNER: Operation(
            REMOVE_LEARNER, REMOVE_LEARNER, Outcome.UNENROLLED, 1, build_remove_learner, read_remove_learner, validate
        ),
        SHARE_COURSE: Operation(
            SHARE_COURSE, SHARE_COURSE, Outcome.SHARED, cap, build_share_course, read_share_course, validate
        ),
    }


class ZohoPeople(SessionClient):
    """A configured Zoho People LMS client.

    Credentials: either a refresh token with the OAuth client id and secret (tokens are
    fetched and refreshed from ``accounts_url``), or a bare ``access_token`` (no refresh).
    They are held as :class:`~unenroll.observe.secrets.Secret` and never printed.
    Without a ``session`` (or ``transport``) it owns one: use it as ``async with ZohoPeople(...) as zoho:``.
    """

    vendor = "zoho"

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        auth: Auth | None = None,
        base_url: str = BASE_URL,
        accounts_url: str = ACCOUNTS_URL,
        refresh_token: str | Secret | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        access_token: str | Secret | None = None,
        limits: ZohoLimits | None = None,
        time_scale: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.limits = limits or ZohoLimits()
        self.time_scale = time_scale
        self.http = HttpSession(type(self).__name__, session)
        self.transport = transport_for(transport, self.http, base_url, timeout=timeout)
        if auth is None:
            if refresh_token is not None and client_id is not None and client_secret is not None:
                if session is None and transport is not None:  # the token must not leave by another way
                    raise ValueError("refreshing tokens through a given transport needs an aiohttp session")
                require_private_channel("accounts_url", accounts_url)
                if is_loopback(base_url) and not is_loopback(accounts_url):
                    raise ValueError(
                        "base_url is a mock on this machine but accounts_url is not: the refresh token would go "
                        "to a real Zoho accounts server; point accounts_url at the mock too"
                    )
                auth = OAuthTokenAuth(
                    self.http.transport(accounts_url, timeout=timeout),
                    "/oauth/v2/token",
                    {
                        "refresh_token": Secret(refresh_token) if isinstance(refresh_token, str) else refresh_token,
                        "client_id": client_id,
                        "client_secret": Secret(client_secret) if isinstance(client_secret, str) else client_secret,
                        "grant_type": "refresh_token",
                    },
                    header_template="Zoho-oauthtoken {token}",
                )
            elif access_token is not None:
                auth = StaticTokenAuth(access_token, "Zoho-oauthtoken {token}")
            else:
                raise ValueError("give refresh_token, client_id and client_secret, or an access_token")
        self.auth = auth
        self.operations = operations(base_url, self.limits)
        self.endpoints = {
            name: self.limits.endpoint(name, time_scale)
            for name in (UNENROLL, REMOVE_LEARNER, SHARE_COURSE, READ_LEARNERS)
        }
        self.readers = readers()  # backups: share_course has no read

    def __repr__(self) -> str:
        return f"ZohoPeople(transport={self.transport!r}, limits={self.limits!r}, time_scale={self.time_scale})"

