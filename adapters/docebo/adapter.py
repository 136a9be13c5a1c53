"""Docebo: unenroll users from courses and learning plans in bulk.

Contract: ``shared/vendor-apis.md`` section 3. Documented: ``DELETE /learn/v1/enrollments``
with a JSON body, at most 1,000 users a call, 1,000 calls an hour per IP counted as a
leaky bucket (429 above it), batch endpoints never called concurrently, OAuth2 bearer
tokens, the three destructive flags (all false by default). Ours: the answer's layout
(``data.unenrolled`` / ``data.errors`` pairs), what a pair missing from it means, the
400 for a call over the cap, the 409 for a concurrent call.

Items: operation ``unenroll``, target ``("course", "<id>")`` or ``("learningplan", "<id>")``,
subject a user id (digits). The unit of work is one user-course or user-plan pair; the
engine groups pairs by target, so every call carries one course *or* one plan and up to
1,000 users.

The destructive flags are **job options**, given to the adapter's constructor and sent
with every call; the engine copies them into ``report.options``. The cascade flag applies
to learning plans only: with it on, :func:`validate` rejects every item that targets a
course (``rejected``, before anything is sent), because the caller asked for something
the vendor does not define, and guessing what they meant would be destructive.

Limits: one call in flight (``max_in_flight=1``: the engine keeps filling the next chunk
while the current call is out), calls evenly spaced at the bucket's leak rate
(``min_interval = window / calls``, 3.6 s) so the vendor's bucket never fills, and never
more than 1,000 starts in any hour.

Backups (``readers``): ``GET /learn/v1/enrollments`` filtered by up to 100 users and the
one course or plan of a target, 200 a page, on ``read_enrollments``: the same documented
limits and spacing (the hourly limit is per IP, so reads draw on the same budget; spaced
at the leak rate, they leave the vendor's bucket empty for the job that follows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

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
    json_body,
    retry_after_seconds,
    sharing_one_limiter,
    transport_for,
)

UNENROLL = "unenroll"
READ_ENROLLMENTS = "read_enrollments"
ENROLLMENTS_PATH = "/learn/v1/enrollments"
TOKEN_PATH = "/oauth2/token"

COURSE = "course"
LEARNING_PLAN = "learningplan"
TARGET_KINDS = (COURSE, LEARNING_PLAN)

RESET_TRACKS = "reset_tracks"
CASCADE = "cascade_unenroll_from_courses_in_selected_learning_plan"
DELETE_CERTIFICATES = "delete_issued_certificates"

MAX_ID_DIGITS = 18  # Docebo ids are integers; this keeps them inside a signed 64-bit int
DOCUMENTED_MAX_USERS = 1000  # [doc] users per call


@dataclass(frozen=True, slots=True)
class DoceboLimits:
    """Every number is a setting; the defaults are the documented ones where there are any."""

    calls_per_window: int = 1000  # [doc] per hour per IP
    window: float = 3600.0  # [doc] an hour
    # None: window / calls_per_window (3.6 s), the bucket's leak rate, so it never fills
    min_interval: float | None = None
    margin: float = 1.0  # on top of the answer-based window (limiter.py): 1 s in an hour
    lock_period: float = 60.0  # pause after a 429 that says no Retry-After
    max_in_flight: int = 1  # [doc] batch endpoints must not be called concurrently
    max_users_per_call: int = DOCUMENTED_MAX_USERS  # halved for the job if the vendor refuses it

    @property
    def spacing(self) -> float:
        """Seconds between call starts, before time scale."""
        return self.window / self.calls_per_window if self.min_interval is None else self.min_interval

    def endpoint(self, name: str, time_scale: float) -> EndpointSpec:
        return EndpointSpec(
            name,
            max_calls=self.calls_per_window,
            window=self.window,
            lock_period=self.lock_period,
            min_interval=self.spacing,
            margin=self.margin,
            max_in_flight=self.max_in_flight,
        ).scaled(time_scale)


@dataclass(frozen=True, slots=True)
class DoceboOptions:
    """The three destructive flags of the bulk unenroll call. All false unless set [doc]."""

    reset_tracks: bool = False
    cascade_unenroll_from_courses_in_selected_learning_plan: bool = False
    delete_issued_certificates: bool = False

    @property
    def cascade(self) -> bool:
        return self.cascade_unenroll_from_courses_in_selected_learning_plan

    def as_dict(self) -> dict[str, bool]:
        """Every flag, on or off, as the report records them."""
        return {
            RESET_TRACKS: self.reset_tracks,
            CASCADE: self.cascade,
            DELETE_CERTIFICATES: self.delete_issued_certificates,
        }


# -- validation --------------------------------------------------------------------------


def _id_problem(value: str) -> str | None:
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_ID_DIGITS:
        return "is not a Docebo id (digits only)"
    if len(value) > 1 and value.startswith("0"):
        return f"is not written as Docebo writes it (write {int(value)})"
    return None


def validate(options: DoceboOptions, item: Item) -> str | None:
    """Targets are ``(kind, id)``; ids are canonical digit strings (no leading zeros, so
    the answer's integer ids match the item they belong to); the cascade flag is refused
    for courses."""
    if len(item.target) != 2 or item.target[0] not in TARGET_KINDS:
        return 'the target must be ("course", "<id>") or ("learningplan", "<id>")'
    kind, target_id = item.target
    if (problem := _id_problem(target_id)) is not None:
        return f"{kind} id {target_id!r} {problem}"
    if (problem := _id_problem(item.subject)) is not None:
        return f"user id {item.subject!r} {problem}"
    if options.cascade and kind == COURSE:
        return (f"{CASCADE} applies to learning plans only, and this item targets a course: "
                "run courses in a job without that option")
    return None


# -- requests ----------------------------------------------------------------------------


def unenroll_body(options: DoceboOptions, target: tuple[str, ...], subjects: Sequence[str]) -> dict[str, Any]:
    """The documented JSON body for one target: every user from that one course or plan.

    The cascade flag is only ever sent with a learning plan (validation keeps course items
    out when it is on; this keeps the request honest even if called directly).
    """
    kind, target_id = target
    return {
        "user_ids": [int(s) for s in subjects],
        "course_ids": [int(target_id)] if kind == COURSE else [],
        "learningplan_ids": [int(target_id)] if kind == LEARNING_PLAN else [],
        RESET_TRACKS: options.reset_tracks,
        CASCADE: options.cascade and kind == LEARNING_PLAN,
        DELETE_CERTIFICATES: options.delete_issued_certificates,
    }


def build_unenroll(options: DoceboOptions, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    return HttpRequest("DELETE", ENROLLMENTS_PATH, json=unenroll_body(options, target, subjects))


# -- answers -----------------------------------------------------------------------------


def _error_text(body: Any) -> str | None:
    """The human message of an error body, whichever of the usual shapes it has."""
    if not isinstance(body, dict):
        return None
    for key in ("message", "error_description", "error", "name"):
        value = body.get(key)
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        if value:
            return str(value)
    return None


_CAP_WORDS = ("maximum", "too many", "exceed", "limit", "at most")
_THROTTLE_WORDS = ("too many requests", "rate limit")


def read_whole_call(subjects: Sequence[str], response: HttpResponse, body: Any) -> CallResult | None:
    """Whole-call verdicts; ``None`` for a 200 whose pairs are to be read.

    By status *and* body: 429 (or a body that says rate limit) is a throttle with
    ``Retry-After``; a 400 is TOO_LARGE when it names a cap or the call was over the
    documented one, else SPLIT (isolate the item it refuses).
    """
    status = response.status
    text = _error_text(body)
    lowered = (text or "").lower()
    if status == 429 or (status != 200 and any(w in lowered for w in _THROTTLE_WORDS)):
        return CallResult.whole(CallVerdict.THROTTLED, "429", text or "Too Many Requests",
                                retry_after_seconds(response))
    if status == 200:
        return None
    message = text or f"HTTP {status}"
    if status == 401:
        return CallResult.whole(CallVerdict.AUTH_EXPIRED, "401", message)
    if status == 403:
        return CallResult.whole(
            CallVerdict.FATAL, "403",
            f"not authorised ({message}): the API client's user must be allowed to manage enrollments",
        )
    if status == 404:
        return CallResult.whole(CallVerdict.FATAL, "404", f"no such API ({message}): check the base URL")
    if status in (400, 413, 422):
        over_cap = len(subjects) > DOCUMENTED_MAX_USERS or any(w in lowered for w in _CAP_WORDS)
        if status == 413 or over_cap:
            return CallResult.whole(CallVerdict.TOO_LARGE, str(status), message)
        return CallResult.whole(CallVerdict.SPLIT, str(status), message)
    # 409 (another batch call was in flight), 5xx, and anything unexpected: send again
    return CallResult.whole(CallVerdict.RETRY, str(status), message)


_TARGET_KEY = {COURSE: "course_id", LEARNING_PLAN: "learningplan_id"}


def _pair(record: Any) -> tuple[str, str, str] | None:
    """``(kind, target id, user id)`` of an answer's pair, ids as canonical digits, or
    ``None`` if it is not one: not an object, ids that are not exact
    (:func:`~unenroll.wire.echoed_ids.exact_id`), or a course and a plan both or neither.
    """
    if not isinstance(record, dict):
        return None
    user = exact_id(record.get("user_id"))
    course, plan = record.get("course_id"), record.get("learningplan_id")
    if user is None or (course is None) == (plan is None):
        return None
    kind, raw = (COURSE, course) if plan is None else (LEARNING_PLAN, plan)
    target_id = exact_id(raw)
    return None if target_id is None else (kind, target_id, user)


def pair_error_result(message: str) -> ItemResult:
    """One pair's error: "not enrolled" is the wanted state; "not found" and anything
    else the vendor refused for that pair are permanent failures with its message."""
    lowered = message.lower()
    if "not enrolled" in lowered or "not subscribed" in lowered:
        return ItemResult.final(Outcome.NOT_ENROLLED, "not_enrolled", message)
    if "not found" in lowered or "does not exist" in lowered:
        return ItemResult.final(Outcome.FAILED, "not_found", message)
    if "try again" in lowered or "temporar" in lowered:
        return ItemResult.retry("pair_error", message)
    return ItemResult.final(Outcome.FAILED, "pair_error", message)


def _pair_lists(body: Any) -> tuple[list[Any], list[Any]] | None:
    """``data.unenrolled`` and ``data.errors`` of an answer, or ``None`` if either is not a list."""
    data = body.get("data") if isinstance(body, dict) else None
    done = data.get("unenrolled") if isinstance(data, dict) else None
    errors = data.get("errors") if isinstance(data, dict) else None
    return (done, errors) if isinstance(done, list) and isinstance(errors, list) else None


def pairs_problem(
    target: tuple[str, ...], subjects: Sequence[str], done: Sequence[Any], errors: Sequence[Any], *, cascade: bool
) -> tuple[set[str], dict[str, str]] | str:
    """The users the answer says were unenrolled and those it refused (with the message),
    or why the answer cannot be the answer to this call.

    Well formed in full: every record a pair (:func:`_pair`) of this call's target and a
    user that was sent, no pair twice (in one list or across both), every message a string.
    The one exception: with ``cascade`` on a learning plan, ``unenrolled`` also lists the
    plan's courses for the users sent; those pairs are not this call's items and say nothing
    about them.
    """
    kind, target_id = target[0], str(int(target[1]))
    sent = set(subjects)
    unenrolled: set[str] = set()
    refused: dict[str, str] = {}
    cascaded: set[tuple[str, str]] = set()
    for name, records in (("unenrolled", done), ("errors", errors)):
        for position, record in enumerate(records, start=1):
            pair = _pair(record)
            if pair is None:
                return f"entry {position} of {name} is not a user and a course or plan"
            pair_kind, pair_target, user = pair
            if user not in sent:
                return f"{name} names user {user}, who was not sent"
            if (pair_kind, pair_target) != (kind, target_id):
                if cascade and name == "unenrolled" and kind == LEARNING_PLAN and pair_kind == COURSE:
                    if (pair_target, user) in cascaded:
                        return f"{name} names user {user} and course {pair_target} twice"
                    cascaded.add((pair_target, user))
                    continue
                return f"{name} names a {pair_kind} {pair_target}, which is not this call's"
            if user in unenrolled or user in refused:
                return f"user {user} is named twice"
            if name == "unenrolled":
                unenrolled.add(user)
                continue
            message = record.get("message")
            if message is not None and not isinstance(message, str):
                return f"the error for user {user} has a message that is not text"
            refused[user] = message or "refused without a message"
    return unenrolled, refused


def read_unenroll(
    target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse, *, cascade: bool = False
) -> CallResult:
    """Every user sent ends with its own pair's outcome, read only from an answer well
    formed in full (:func:`pairs_problem`); any other is unreadable and the call is retried.

    In ``data.unenrolled``: unenrolled. In ``data.errors``: by its message
    (:func:`pair_error_result`); "not enrolled" is concluded only from such a message. In
    neither: unknown, so it is sent again (a retry of an unenrolment that did happen
    answers "not enrolled").
    """
    body = json_body(response)
    if (whole := read_whole_call(subjects, response, body)) is not None:
        return whole
    lists = _pair_lists(body)
    if lists is None:
        return _unreadable("data.unenrolled and data.errors are not both lists")
    read = pairs_problem(target, subjects, *lists, cascade=cascade)
    if isinstance(read, str):
        return _unreadable(read)
    unenrolled, refused = read
    results = []
    for user in subjects:
        if user in unenrolled:
            results.append(ItemResult.final(Outcome.UNENROLLED, "unenrolled"))
        elif user in refused:
            results.append(pair_error_result(refused[user]))
        else:
            results.append(ItemResult.retry("missing", "the pair was missing from the answer"))
    return CallResult.answered(results)


def _unreadable(why: str) -> CallResult:
    return CallResult.whole(CallVerdict.RETRY, "unreadable", f"the answer was not the documented JSON: {why}")


# -- reading enrolments (backups) --------------------------------------------------------

READ_MAX_USERS = 100  # users filtered in one read: keeps the URL near 2 KB
READ_PAGE_SIZE = 200  # [doc] page_size at most 200


def build_read_page(target: tuple[str, ...], subjects: Sequence[str], page: int) -> HttpRequest:
    """Page ``page`` (from 0; Docebo counts from 1) of the target's enrolments of ``subjects``."""
    kind, target_id = target
    params = [("user_id[]", s) for s in subjects]
    params += [(f"{_TARGET_KEY[kind]}[]", target_id), ("page", str(page + 1)), ("page_size", str(READ_PAGE_SIZE))]
    return HttpRequest("GET", ENROLLMENTS_PATH, params=params)


def read_page(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> ReadPage | CallResult:
    """The target's enrolments of the users asked for, keyed by user id; ``has_more_data``
    says if a page follows.

    Well-formed rows of other targets or users are not ours and are left out; a row that is
    not an object, or names no exact user id or no exact id of the target's kind, and a
    user of this target listed twice, make the page unreadable (a user is never dropped as
    absent because their row could not be read).
    """
    body = json_body(response)
    if (whole := read_whole_call(subjects, response, body)) is not None:
        return whole
    data = body.get("data") if isinstance(body, dict) else None
    rows = data.get("items") if isinstance(data, dict) else None
    more = data.get("has_more_data", False) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not isinstance(more, bool):
        return _unreadable("data.items is not a list with has_more_data")
    kind, target_id = target[0], str(int(target[1]))
    wanted = set(subjects)
    records: dict[str, Any] = {}
    for position, row in enumerate(rows, start=1):
        user = exact_id(row.get("user_id")) if isinstance(row, dict) else None
        row_target = exact_id(row.get(_TARGET_KEY[kind])) if isinstance(row, dict) else None
        if user is None or row_target is None:
            return _unreadable(f"item {position} names no user and {_TARGET_KEY[kind]}")
        if row_target != target_id or user not in wanted:
            continue
        if user in records:
            return _unreadable(f"user {user} is listed twice")
        records[user] = row
    return ReadPage(records, more=more)


def build_count(target: tuple[str, ...]) -> HttpRequest:
    """One row of the target's enrolments: the answer's ``total_count`` counts them all."""
    kind, target_id = target
    return HttpRequest("GET", ENROLLMENTS_PATH,
                       params=[(f"{_TARGET_KEY[kind]}[]", target_id), ("page", "1"), ("page_size", "1")])


def read_count(target: tuple[str, ...], response: HttpResponse) -> int | CallResult:
    """``data.total_count`` [doc: Docebo's paged list answers carry it], an exact count of 0 or
    more; anything else is unreadable (sent again), never a guess."""
    body = json_body(response)
    if (whole := read_whole_call((), response, body)) is not None:
        return whole
    data = body.get("data") if isinstance(body, dict) else None
    total = data.get("total_count") if isinstance(data, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return _unreadable("data.total_count is not a count")
    return total


def plan_read(target: tuple[str, ...], n_items: int) -> int:
    """One call per 100 users: at most 100 rows match, so one page of 200 holds them."""
    return -(-n_items // READ_MAX_USERS)


def readers() -> dict[str, EnrolmentReader]:
    return {UNENROLL: EnrolmentReader(READ_ENROLLMENTS, build_read_page, read_page, plan_read,
                                      max_subjects=READ_MAX_USERS, build_count=build_count, read_count=read_count)}


# -- the adapter -------------------------------------------------------------------------


def operations(options: DoceboOptions, limits: DoceboLimits) -> dict[str, Operation]:
    return {
        UNENROLL: Operation(
            UNENROLL, UNENROLL, Outcome.UNENROLLED, limits.max_users_per_call,
            partial(build_unenroll, options), partial(read_unenroll, cascade=options.cascade),
            partial(validate, options),
            destructive_options=options.as_dict(),
        ),
    }


def _secret(value: str | Secret) -> Secret:
    return Secret(value) if isinstance(value, str) else value


def token_fields(
    client_id: str, client_secret: str | Secret, username: str | None, password: str | Secret | None,
) -> Mapping[str, str | Secret]:
    """The token request's form: the password grant if a user is given, else client credentials."""
    fields: dict[str, str | Secret] = {"client_id": client_id, "client_secret": _secret(client_secret),
                                       "scope": "api"}
    if username is not None or password is not None:
        if username is None or password is None:
            raise ValueError("the password grant needs both username and password")
        fields |= {"grant_type": "password", "username": username, "password": _secret(password)}
    else:
        fields["grant_type"] = "client_credentials"
    return fields


class Docebo(SessionClient):
    """A configured Docebo client for bulk unenrolment.

    Credentials: the OAuth2 client id and secret (client-credentials grant), plus a
    username and password for the password grant; tokens come from ``POST /oauth2/token``
    on the same host and are refreshed when a call answers 401. Or a bare
    ``access_token`` (no refresh). Secrets are held as :class:`~unenroll.observe.secrets.Secret`
    and never printed.

    The three destructive flags are job options, false unless set here. Without a
    ``session`` (or ``transport``) it owns one: use it as ``async with Docebo(...) as docebo:``.
    """

    vendor = "docebo"

    def __init__(
        self,
        *,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        auth: Auth | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        access_token: str | Secret | None = None,
        reset_tracks: bool = False,
        cascade_unenroll_from_courses_in_selected_learning_plan: bool = False,
        delete_issued_certificates: bool = False,
        limits: DoceboLimits | None = None,
        time_scale: float = 1.0,
        timeout: float = 120.0,
    ) -> None:
        self.limits = limits or DoceboLimits()
        self.time_scale = time_scale
        self.options = DoceboOptions(reset_tracks, cascade_unenroll_from_courses_in_selected_learning_plan,
                                     delete_issued_certificates)
        self.http = HttpSession(type(self).__name__, session)
        self.transport = transport_for(transport, self.http, base_url, timeout=timeout)
        if auth is None:
            if client_id is not None and client_secret is not None:
                # the token endpoint is on the API's own host
                fields = token_fields(client_id, client_secret, username, password)
                auth = OAuthTokenAuth(self.transport, TOKEN_PATH, fields)
            elif access_token is not None:
                auth = StaticTokenAuth(access_token, "Bearer {token}")
            else:
                raise ValueError("give client_id and client_secret (and username/password), or an access_token")
        self.auth = auth
        self.operations = operations(self.options, self.limits)
        # Docebo counts 1,000 calls an hour per IP, whatever the endpoint: one limiter for all
        self.endpoints = sharing_one_limiter(
            {name: self.limits.endpoint(name, time_scale) for name in (UNENROLL, READ_ENROLLMENTS)}
        )
        self.readers = readers()  # backups

    def __repr__(self) -> str:
        return (f"Docebo(transport={self.transport!r}, options={self.options!r}, limits={self.limits!r}, "
                f"time_scale={self.time_scale})")
