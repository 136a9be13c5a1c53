"""SmarterU: ``unenrollLearningModules``, an XML package posted as form field ``Package``.

Contract: ``shared/vendor-apis.md`` section 2 (seed 002). Documented: HTTPS only (a plain
HTTP post gets ``SU:01``), at most 100 ``Unenrollment`` blocks a call, the answer always
carries ``Result``, ``Info`` and ``Errors``, ``Result`` may be ``Success`` while ``Errors``
holds per-block errors, blocks are 1-based positions in *that* request, unenrolment goes
to a queue processed later. Ours: the error ids, HTTP 429 with ``Retry-After``.

Items: operation ``unenroll``, target :data:`ACCOUNT_TARGET`, subject an enrolment's
``AccountUserLearningModuleRelID``. SmarterU does not group unenrolments by course or
user (one call may mix any enrolments of the account the API keys belong to), so every
item has the same one-element target ``("account",)``: the engine then fills every call
to the cap. Build items with :func:`unenroll_item`.

Outcomes: accepted into the unenrolment queue, or already in it (``ULM:03``), ends
``queued`` (SmarterU does the work later); an invalid id (``ULM:02``) ends ``failed`` with
the vendor's code and message; no permission (``ULM:01``), refused API keys (``SU:02``) and
a plain-HTTP post (``SU:01``) stop the job (no retry can fix them).

Answers are untrusted XML: parsed by :mod:`defusedxml` with DTDs forbidden (so no entity
expansion, no external entities); a malformed or hostile answer is a retryable failure
of that call. Ids and keys are escaped on the way out.

Backups (``readers``): ``getLearnerReport`` filtered to up to 100 enrolment ids a call, on
the same endpoint (every method is a POST to one URL, so they share one rate).

Rate: none is documented. Unless ``SmarterULimits.calls_per_window`` is given (then a
rolling-window limiter keeps to it), the endpoint learns the rate from 429s with an
:class:`~unenroll.limits.adaptive.AdaptiveRateLimiter`.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from unenroll.contract import (
    AdaptiveRate,
    CallLimiter,
    CallResult,
    CallVerdict,
    EndpointSpec,
    EnrolmentReader,
    HttpRequest,
    HttpResponse,
    HttpSession,
    Item,
    ItemResult,
    LearnedWindowLimiter,
    NoAuth,
    Operation,
    Outcome,
    ReadPage,
    Secret,
    SessionClient,
    Transport,
    require_private_channel,
    retry_after_seconds,
    scrub,
    transport_for,
)

UNENROLL = "unenroll"
ENDPOINT = "apiv2"  # every method is a POST to the one URL, so they share one rate
ACCOUNT_TARGET: tuple[str, ...] = ("account",)
API_PATH = "/apiv2/"
BASE_URL = "https://api.smarteru.com"
MAX_ID_LENGTH = 100
MAX_MESSAGE_LENGTH = 500

# error ids: the messages are documented, the ids are ours (vendor-apis.md section 2)
NO_PERMISSION = "ULM:01"
INVALID_ID = "ULM:02"
ALREADY_QUEUED = "ULM:03"
DUPLICATE_BLOCK = "ULM:04"
NO_POST_DATA = "SU:01"
BAD_API_KEYS = "SU:02"
REPORT_NO_PERMISSION = "GLR:01"

_OTHER_BLOCK = re.compile(r"from Unenrollment\s+(\d+)", re.IGNORECASE)
_OVER_CAP = re.compile(r"up to \d+|maximum|exceed", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SmarterULimits:
    """Every number is a setting. None of SmarterU's rate limits is documented.

    ``calls_per_window`` given: a rolling-window limiter keeps to it. Not given: the limit is
    learned as a window from the first 429s (``learn``, the default; see
    ``unenroll.limits.learned``), or the rate backs off and creeps up (``adaptive``, AIMD,
    with ``learn = 0``). ``lock_period`` is the pause for a 429 that carries no ``Retry-After``.
    """

    calls_per_window: int | None = None
    window: float = 60.0
    min_interval: float = 0.0
    margin: float = 0.0
    lock_period: float = 60.0
    max_in_flight: int = 2  # not documented; modest, so one 429 finds few calls in flight
    max_ids_per_call: int = 100  # [doc] "up to 100 unenrollments per call"
    adaptive: AdaptiveRate = field(default_factory=AdaptiveRate)
    learn: int = 1  # 1: learn the window from the 429s; 0: AIMD (``adaptive``)
    learn_max_rate: float = 20.0  # calls per second the learner starts at (the first 429 tells it the limit)

    def endpoint(self, name: str, time_scale: float) -> EndpointSpec:
        factory = None
        if self.calls_per_window is None and self.learn:
            factory = partial(_learned_limiter, self.learn_max_rate / time_scale, self.lock_period * time_scale,
                              time_scale)
        elif self.calls_per_window is None:
            factory = partial(_adaptive_limiter, self.adaptive.scaled(time_scale))
        return EndpointSpec(
            name,
            max_calls=self.calls_per_window,
            window=self.window,
            lock_period=self.lock_period,
            min_interval=self.min_interval,
            margin=self.margin,
            max_in_flight=self.max_in_flight,
            limiter_factory=factory,
        ).scaled(time_scale)


def _adaptive_limiter(rate: AdaptiveRate, spec: EndpointSpec) -> CallLimiter:
    return rate.limiter()


def _learned_limiter(max_rate: float, fallback_wait: float, time_scale: float, spec: EndpointSpec) -> CallLimiter:
    return LearnedWindowLimiter(max_rate=max_rate, fallback_wait=fallback_wait, time_scale=time_scale)


@dataclass(frozen=True, slots=True, repr=False)
class ApiKeys:
    """SmarterU's credentials, sent in the request body: the account's and the user's key."""

    account_api: Secret
    user_api: Secret

    @staticmethod
    def of(account_api: str | Secret, user_api: str | Secret) -> ApiKeys:
        return ApiKeys(Secret(account_api) if isinstance(account_api, str) else account_api,
                       Secret(user_api) if isinstance(user_api, str) else user_api)

    def __repr__(self) -> str:
        return "ApiKeys(account_api=***, user_api=***)"


# -- validation --------------------------------------------------------------------------


def _is_xml_safe_char(char: str) -> bool:
    """A character XML 1.0 can carry and that is not a control character."""
    if unicodedata.category(char) in ("Cc", "Cs"):  # controls (tab and newlines too), surrogates
        return False
    return char not in ("\ufffe", "\uffff")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an ``AccountUserLearningModuleRelID``, or ``None``.

    Anything printable goes (it is escaped on the way out); SmarterU answers an id that
    does not exist with ``ULM:02``.
    """
    if not value:
        return "the id is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"the id is longer than {MAX_ID_LENGTH} characters"
    if value != value.strip():
        return "the id has leading or trailing spaces"
    if not all(_is_xml_safe_char(c) for c in value):
        return "the id holds a control character"
    return None


def validate(item: Item) -> str | None:
    if item.target != ACCOUNT_TARGET:
        return f"the target must be {ACCOUNT_TARGET!r} (SmarterU does not group unenrolments)"
    problem = id_problem(item.subject)
    return None if problem is None else f"{problem}: {item.subject[:MAX_ID_LENGTH]!r}"


def unenroll_item(rel_id: str, meta: dict[str, Any] | None = None) -> Item:
    """The item that unenrols the enrolment ``rel_id`` (an AccountUserLearningModuleRelID)."""
    return Item(UNENROLL, ACCOUNT_TARGET, rel_id, meta)


# -- requests ----------------------------------------------------------------------------


def xml_text(value: str) -> str:
    """``value`` escaped for an XML element's text (quotes too, so it is safe anywhere)."""
    if not all(_is_xml_safe_char(c) for c in value):
        raise ValueError("a control character cannot be sent in XML")  # validate() keeps them out
    return escape(value, {'"': "&quot;", "'": "&apos;"})


def package(keys: ApiKeys, method: str, parameters: str) -> str:
    """The XML package of one API call; ``parameters`` is already-escaped XML."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<SmarterU>"
        f"<AccountAPI>{xml_text(keys.account_api.reveal())}</AccountAPI>"
        f"<UserAPI>{xml_text(keys.user_api.reveal())}</UserAPI>"
        f"<Method>{xml_text(method)}</Method>"
        f"<Parameters>{parameters}</Parameters>"
        "</SmarterU>"
    )


def unenroll_package(keys: ApiKeys, subjects: Sequence[str]) -> str:
    blocks = "".join(
        "<Unenrollment><AccountUserLearningModuleRelID>"
        f"{xml_text(s)}"
        "</AccountUserLearningModuleRelID></Unenrollment>"
        for s in subjects
    )
    return package(keys, "unenrollLearningModules", f"<LearningModuleEnrollment>{blocks}</LearningModuleEnrollment>")


def build_unenroll(keys: ApiKeys, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    """Block ``k`` of the package is ``subjects[k - 1]``."""
    return HttpRequest("POST", API_PATH, form=[("Package", unenroll_package(keys, subjects))])


# -- answers -----------------------------------------------------------------------------


class UnreadableAnswer(ValueError):
    """The answer is not a SmarterU XML package we can trust (malformed or hostile)."""


def parse_answer(body: bytes) -> ET.Element:
    """The answer's root element, parsed with DTDs (so entities) forbidden.

    Raises :class:`UnreadableAnswer` for a malformed body, a DTD (billion laughs, external
    entities) or a root that is not ``SmarterU``; never expands anything first.
    """
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise UnreadableAnswer(f"refused a hostile XML answer ({type(exc).__name__})") from None
    except (ET.ParseError, ValueError, UnicodeError) as exc:
        raise UnreadableAnswer(f"the answer is not well-formed XML ({type(exc).__name__})") from None
    if root.tag != "SmarterU":
        raise UnreadableAnswer(f"the answer's root is <{root.tag[:40]}>, not <SmarterU>")
    return root


@dataclass(frozen=True, slots=True)
class VendorError:
    code: str
    message: str
    block: int | None  # 1-based position in the request, or None for the whole call


def _text(element: ET.Element | None) -> str:
    return "" if element is None or element.text is None else element.text.strip()


def _block_of(element: ET.Element) -> int | None:
    """The ``block`` attribute (the seed shows both ``block`` and ``Block``), or None.

    Raises :class:`UnreadableAnswer` when it is not a plain number, or is given twice."""
    values = [value for name, value in element.attrib.items() if name.lower() == "block"]
    if not values:
        return None
    if len(values) > 1:
        raise UnreadableAnswer("an element gives its block twice")
    value = values[0].strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise UnreadableAnswer(f"block {value[:20]!r} is not a number")
    return int(value)


def read_errors(root: ET.Element) -> list[VendorError]:
    errors = root.find("Errors")
    if errors is None:
        return []
    # the vendor's words end up in outcomes and logs: keep them short
    return [VendorError(_text(e.find("ErrorID"))[:40], scrub(_text(e.find("ErrorMessage")))[:MAX_MESSAGE_LENGTH],
                        _block_of(e))
            for e in errors.findall("Error")]


def read_accepted(root: ET.Element) -> dict[int, str]:
    """Block number -> the id the answer echoes, from ``Info/Unenrollments``.

    Raises :class:`UnreadableAnswer` for an accepted ``Unenrollment`` without a block
    number, or a block accepted twice."""
    accepted: dict[int, str] = {}
    for element in root.findall("./Info/Unenrollments/Unenrollment"):
        block = _block_of(element)
        if block is None:
            raise UnreadableAnswer("an accepted Unenrollment has no block number")
        if block in accepted:
            raise UnreadableAnswer(f"block {block} is accepted twice")
        accepted[block] = _text(element.find("AccountUserLearningModuleRelID"))
    return accepted


def blocks_problem(subjects: Sequence[str], accepted: Mapping[int, str], errors: Sequence[VendorError]) -> str | None:
    """Why the answer's blocks cannot be the answer to the call that sent ``subjects``, or
    ``None``.

    Well formed in full: every block named is within ``1..len(subjects)``; no block has
    two errors, or is both accepted and refused; every accepted block echoes exactly the id
    sent in that block. Only such an answer is read item by item.
    """
    count = len(subjects)
    refused = [e.block for e in errors if e.block is not None]
    if any(not 1 <= b <= count for b in [*accepted, *refused]):
        return f"the answer names a block outside 1..{count}: it is not the answer to this call"
    if len(refused) != len(set(refused)):
        return "a block has two errors"
    if both := sorted(set(accepted).intersection(refused)):
        return f"block {both[0]} is both accepted and refused"
    for block, echoed in sorted(accepted.items()):
        if echoed != subjects[block - 1]:
            return f"accepted block {block} does not echo the id sent in it"
    return None


def _unreadable(message: str) -> CallResult:
    return CallResult.whole(CallVerdict.RETRY, "unreadable", message)


def read_status(response: HttpResponse) -> CallResult | None:
    """Verdicts from the HTTP status alone; ``None`` for a 200 to read further.

    SmarterU answers 200 whatever happened [ours]; a 429 is a throttle (honour its
    ``Retry-After``); anything else is a proxy or an outage: retry.
    """
    status = response.status
    if status == 200:
        return None
    if status == 429:
        return CallResult.whole(CallVerdict.THROTTLED, "429", "too many requests", retry_after_seconds(response))
    if status in (413, 414):
        return CallResult.whole(CallVerdict.TOO_LARGE, str(status), f"HTTP {status}: the package is too large")
    return CallResult.whole(CallVerdict.RETRY, str(status), f"HTTP {status}")


def read_whole_call_error(result: str, errors: Sequence[VendorError]) -> CallResult | None:
    """The verdict of errors that name no block, or ``None`` if they do not decide the call.

    Permission, API keys and plain HTTP are fatal whatever ``Result`` says. Any other
    block-less error with ``Result`` ``Failed`` is the cap (halve the chunk) if it says so,
    else retried (bounded by the retry policy) with the vendor's code and message.
    """
    whole = [e for e in errors if e.block is None]
    for e in whole:
        if e.code == NO_PERMISSION:
            return CallResult.whole(
                CallVerdict.FATAL, e.code,
                "the UserAPI key's user may not call unenrollLearningModules (only administrators and owners "
                f"may): {e.message}",
            )
        if e.code == BAD_API_KEYS:
            return CallResult.whole(CallVerdict.FATAL, e.code,
                                    f"SmarterU refused the AccountAPI or UserAPI key: {e.message}")
        if e.code == NO_POST_DATA:
            return CallResult.whole(
                CallVerdict.FATAL, e.code,
                f"SmarterU saw no POST data ({e.message}): it refuses plain HTTP, use an https:// base URL",
            )
    if not whole or result != "Failed":
        return None
    first = whole[0]
    if any(_OVER_CAP.search(e.message) for e in whole):
        return CallResult.whole(CallVerdict.TOO_LARGE, first.code, first.message)
    return CallResult.whole(CallVerdict.RETRY, first.code or "Failed", first.message or "the call failed")


def _block_result(error: VendorError) -> ItemResult:
    code, message = error.code, error.message
    lowered = message.lower()
    if code == ALREADY_QUEUED or "already in the unenrollment queue" in lowered:
        return ItemResult.final(Outcome.QUEUED, code or ALREADY_QUEUED, message)
    return ItemResult.final(Outcome.FAILED, code or "error", message)  # ULM:02 and unknown block errors


def _is_duplicate(error: VendorError) -> bool:
    return error.code == DUPLICATE_BLOCK or "is a duplicate" in error.message.lower()


def _open_answer(response: HttpResponse) -> tuple[ET.Element, str, list[VendorError]] | CallResult:
    """The parsed answer, its ``Result`` and its ``Errors``; or the whole-call verdict when
    the status or the body (malformed, hostile) says the answer cannot be read."""
    if (by_status := read_status(response)) is not None:
        return by_status
    try:
        root = parse_answer(response.body)
        return root, _text(root.find("Result")), read_errors(root)
    except UnreadableAnswer as exc:
        return _unreadable(str(exc))


def read_unenroll(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    """Per-item results for the blocks of *this* call: block ``k`` is ``subjects[k - 1]``.

    ``Result`` and ``Errors`` are both read every time. Only an answer well formed in full
    (:func:`blocks_problem`, ``Result`` ``Success`` or ``Failed``) is read block by block;
    any other is unreadable and the whole call is retried. A block the answer lists as
    accepted ends ``queued``; a block error ends as its code says; a duplicate block
    (``ULM:04``) takes the outcome of the block it duplicates; a block the answer does not
    mention is evidence of nothing: it is retried.
    """
    opened = _open_answer(response)
    if isinstance(opened, CallResult):
        return opened
    root, result, errors = opened
    try:
        accepted = read_accepted(root)
    except UnreadableAnswer as exc:
        return _unreadable(str(exc))
    if result not in ("Success", "Failed"):
        return _unreadable(f"the answer's Result is {result[:40]!r}")
    if (whole := read_whole_call_error(result, errors)) is not None:
        return whole
    count = len(subjects)
    block_errors = [e for e in errors if e.block is not None]
    if (problem := blocks_problem(subjects, accepted, block_errors)) is not None:
        return _unreadable(problem)
    if result == "Failed" and not block_errors and not accepted:
        return _unreadable("Result Failed without a reason")

    results: dict[int, ItemResult] = {
        block: ItemResult.final(Outcome.QUEUED, "accepted", "accepted into the unenrollment queue")
        for block in accepted
    }
    duplicates: dict[int, VendorError] = {}
    for error in block_errors:
        assert error.block is not None
        if _is_duplicate(error):
            duplicates[error.block] = error
        else:
            results[error.block] = _block_result(error)
    for block, error in duplicates.items():
        match = _OTHER_BLOCK.search(error.message)
        other = int(match.group(1)) if match else None
        if other is None:  # find the twin ourselves
            other = next((k for k in range(1, count + 1) if k != block and subjects[k - 1] == subjects[block - 1]),
                         None)
        twin = results.get(other) if other is not None and other != block else None
        if twin is not None and twin.outcome is not None:
            results[block] = ItemResult.final(twin.outcome, error.code or DUPLICATE_BLOCK,
                                              f"{error.message} (the same enrolment as block {other})")
        else:
            results[block] = ItemResult.retry(error.code or DUPLICATE_BLOCK, error.message)
    return CallResult.answered([
        results.get(k) or ItemResult.retry("missing", f"the answer did not mention block {k}")
        for k in range(1, count + 1)
    ])


# -- reading enrolments (backups, dry runs, checks) ---------------------------------------


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    id: str
    status: str
    completed_date: str


def learner_report_package(keys: ApiKeys, ids: Sequence[str]) -> str:
    """``getLearnerReport`` filtered to the enrolments ``ids`` (layout: vendor-apis.md, ours)."""
    filters = "".join(f"<ID>{xml_text(i)}</ID>" for i in ids)
    report = f"<Report><Filters><Enrollments>{filters}</Enrollments></Filters></Report>"
    return package(keys, "getLearnerReport", report)


def build_learner_report(keys: ApiKeys, ids: Sequence[str]) -> HttpRequest:
    return HttpRequest("POST", API_PATH, form=[("Package", learner_report_package(keys, ids))])


def read_learner_report(response: HttpResponse) -> list[EnrollmentRecord]:
    """The enrolment records of a ``getLearnerReport`` answer.

    Raises :class:`UnreadableAnswer` for an answer that is not a readable success.
    """
    if response.status != 200:
        raise UnreadableAnswer(f"HTTP {response.status}")
    root = parse_answer(response.body)
    errors = read_errors(root)
    if _text(root.find("Result")) != "Success":
        first = errors[0] if errors else VendorError("", "no reason given", None)
        raise UnreadableAnswer(f"getLearnerReport failed: {first.code} {first.message}")
    return [
        EnrollmentRecord(_text(e.find("ID")), _text(e.find("Status")), _text(e.find("CompletedDate")))
        for e in root.findall("./Info/LearnerReport/Enrollment")
    ]


REPORT_MAX_IDS = 100  # ids in one report's Filters: the unenrolment cap, so a backup costs what the job does


def _record(enrollment: ET.Element) -> dict[str, str]:
    """An ``Enrollment`` element as the vendor's fields (``ID``, ``Status``, ``CompletedDate``...)."""
    return {child.tag: _text(child) for child in enrollment}


def build_report_page(keys: ApiKeys, target: tuple[str, ...], subjects: Sequence[str], page: int) -> HttpRequest:
    """The whole read of up to :data:`REPORT_MAX_IDS` enrolments is one ``getLearnerReport``."""
    return build_learner_report(keys, subjects)


def read_report_page(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> ReadPage | CallResult:
    """The targeted enrolments the report lists (an id it leaves out does not exist).

    An id is read as left out only from a report well formed in full: a ``LearnerReport``
    whose every ``Enrollment`` has one ``ID`` and a ``Status``, no ``ID`` twice; records of
    ids not asked for are not ours and are left out. Refused keys, plain HTTP and a user
    without permission stop the backup; any other failure, and an unreadable or hostile
    answer, is retried (bounded).
    """
    opened = _open_answer(response)
    if isinstance(opened, CallResult):
        return opened
    root, result, errors = opened
    if result != "Success":
        first = errors[0] if errors else VendorError("Failed", "no reason given", None)
        if first.code in (NO_POST_DATA, BAD_API_KEYS, REPORT_NO_PERMISSION):
            return CallResult.whole(CallVerdict.FATAL, first.code, f"getLearnerReport was refused: {first.message}")
        return CallResult.whole(CallVerdict.RETRY, first.code or "Failed", first.message)
    report = root.findall("./Info/LearnerReport")
    if len(report) != 1:
        return _unreadable("the answer has no LearnerReport" if not report else "the answer has two LearnerReports")
    listed: dict[str, dict[str, str]] = {}
    for position, enrollment in enumerate(report[0].findall("Enrollment"), start=1):
        if len(enrollment.findall("ID")) != 1 or len(enrollment.findall("Status")) != 1:
            return _unreadable(f"Enrollment {position} of the report has no single ID and Status")
        record = _record(enrollment)
        if not record["ID"]:
            return _unreadable(f"Enrollment {position} of the report has an empty ID")
        if record["ID"] in listed:
            return _unreadable("the report lists an enrolment twice")
        listed[record["ID"]] = record
    return ReadPage({subject: listed[subject] for subject in subjects if subject in listed}, more=False)


def plan_report(target: tuple[str, ...], n_items: int) -> int:
    return -(-n_items // REPORT_MAX_IDS)


def settled_by_report(record: Mapping[str, Any] | None) -> ItemResult | None:
    """What the learner report alone settles: listed ``Unenrolled`` -> not enrolled, listed
    ``Unenrollment Queued`` -> queued; anything else (enrolled, or not listed) needs the call's answer."""
    status = str(record.get("Status", "")).strip().casefold() if record is not None else ""
    if status == "unenrolled":
        return ItemResult.final(Outcome.NOT_ENROLLED, "report", "the learner report shows it Unenrolled")
    if status == "unenrollment queued":
        return ItemResult.final(Outcome.QUEUED, ALREADY_QUEUED, "the learner report shows it in the unenrollment queue")
    return None


def readers(keys: ApiKeys) -> dict[str, EnrolmentReader]:
    """Every method shares the one URL, so the report is read on the same endpoint (and rate)."""
    return {UNENROLL: EnrolmentReader(ENDPOINT, partial(build_report_page, keys), read_report_page, plan_report,
                                      max_subjects=REPORT_MAX_IDS, settled=settled_by_report)}


# -- the adapter -------------------------------------------------------------------------


def check_base_url(base_url: str, *, allow_insecure_http: bool) -> None:
    """HTTPS only: SmarterU refuses plain HTTP, and the API keys travel in the body.

    ``allow_insecure_http=True`` lets ``http://`` through to a loopback host only (a
    local mock); it never sends the keys in clear over a network.
    """
    require_private_channel("base URL", base_url, allow_insecure_http=allow_insecure_http,
                            why=" (SmarterU accepts HTTPS only, SU:01, and the API keys travel in the body)")


def operations(keys: ApiKeys, limits: SmarterULimits) -> dict[str, Operation]:
    return {
        UNENROLL: Operation(
            UNENROLL, ENDPOINT, Outcome.QUEUED, limits.max_ids_per_call,
            partial(build_unenroll, keys), read_unenroll, validate,
        ),
    }


class SmarterU(SessionClient):
    """A configured SmarterU client.

    The API keys are held as :class:`~unenroll.observe.secrets.Secret`: only the request builder
    reveals them, into the XML body. Auth is in the body, so :attr:`auth` is ``NoAuth``.
    Without a ``session`` (or ``transport``) it owns one: use it as ``async with SmarterU(...) as smarteru:``.
    """

    vendor = "smarteru"

    def __init__(
        self,
        *,
        account_api_key: str | Secret,
        user_api_key: str | Secret,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        base_url: str = BASE_URL,
        allow_insecure_http: bool = False,
        limits: SmarterULimits | None = None,
        time_scale: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self.limits = limits or SmarterULimits()
        self.time_scale = time_scale
        if transport is None:
            check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.http = HttpSession(type(self).__name__, session)
        self.transport = transport_for(transport, self.http, base_url, timeout=timeout)
        self.auth = NoAuth()
        self._keys = ApiKeys.of(account_api_key, user_api_key)
        self.operations = operations(self._keys, self.limits)
        self.endpoints = {ENDPOINT: self.limits.endpoint(ENDPOINT, time_scale)}
        self.readers = readers(self._keys)  # backups

    def __repr__(self) -> str:
        return f"SmarterU(transport={self.transport!r}, limits={self.limits!r}, time_scale={self.time_scale})"

    def learner_report_request(self, ids: Sequence[str]) -> HttpRequest:
        """A ``getLearnerReport`` request for ``ids``; read the answer with :func:`read_learner_report`."""
        return build_learner_report(self._keys, ids)
