"""A faithful mock of the SmarterU API the adapter speaks (vendor-apis.md sections 2 and 4).

``POST /apiv2/`` with form field ``Package`` holding the XML; two methods:

- ``unenrollLearningModules``: up to ``max_blocks`` (100) ``Unenrollment`` blocks, more is
  ``Result`` ``Failed``; per-block errors from the seeded state (``ULM:02`` an id that is not
  a live enrolment, ``ULM:03`` one already in the unenrollment queue, ``ULM:04`` a duplicate
  block), ``Success`` with errors when at least one block was accepted, ``Failed`` when
  none was; accepted enrolments join the queue and become unenrolled ``queue_delay``
  seconds later;
- ``getLearnerReport``: the enrolments whose ids are in ``<Filters>`` (all without one),
  as ``<LearnerReport><Enrollment><ID/><Status/><CompletedDate/></Enrollment>…``.

Whole-call failures: refused keys (``SU:02``), a known non-administrator UserAPI key
(``ULM:01``), no ``Package``, or with ``require_https`` a post that came over plain HTTP
(``SU:01``, as SmarterU answers one; off by default, as the mock serves plain HTTP unless
given an ``ssl_context``).
Optional rate limit answering HTTP 429 with ``Retry-After``; seeded latency and faults
(the kit's ``Faults``, plus ``hostile_xml``: a billion-laughs or external-entity body, a
fault kind of this mock only); answers on the wire as ``wire`` says (pieces, pauses,
chunked, gzip, stalls); every duration multiplied by ``time_scale``.

``GET /__mock__/stats``: calls per method, the most calls in any window, 429 answers and
calls that arrived while a ``Retry-After`` was in force, answers by result and error id,
faults injected, and (unless ``?state=0``) the enrolment state.

Error ids and the 429 are ours; the messages are SmarterU's documented ones.

What is SmarterU's (here): the one route and its XML answers, the methods, keys and
permissions, the block cap, the unenrollment queue, the optional 429 rate limit, the
``hostile_xml`` fault and the XML shape of a truncated answer, the state and the stats'
fields. What the kit gives (``unenroll.contract.mock``, :class:`MockBase`): the scaled
clock (or the one a test passes), the seeded draws, the fault gate (latency and faults
drawn before any state changes), the stats route (faults, state), serving over HTTP or
HTTPS, the wire, and the command line (:func:`run_main`).

Run it as a process: ``python -m unenroll.adapters.smarteru.mock --port 8081`` (``--help``
lists the wire and HTTPS flags).
"""

from __future__ import annotations

import argparse
import random
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import defusedxml.ElementTree as SafeET
from aiohttp import web
from defusedxml import DefusedXmlException

from unenroll.contract.mock import (
    Faults,
    Latency,
    MainArguments,
    MockBase,
    ThresholdCounter,
    WireOptions,
    parse_hidden_limit,
    run_main,
)

ENROLLED, QUEUED, UNENROLLED = "enrolled", "queued", "unenrolled"
REPORT_STATUS = {ENROLLED: "Enrolled", QUEUED: "Unenrollment Queued", UNENROLLED: "Unenrolled"}

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE SmarterU [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n' for n in range(1, 10)
    )
    + "]>\n<SmarterU><Result>&lol9;</Result><Info/><Errors/></SmarterU>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE SmarterU [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
    "<SmarterU><Result>Success</Result><Info>&xxe;</Info><Errors/></SmarterU>"
)


@dataclass
class SmarterUMockConfig:
    account_api_key: str = "mock-account-api"
    user_api_key: str = "mock-user-api"  # an administrator's key
    non_admin_user_api_key: str = "mock-learner-user-api"  # a valid key whose user lacks permission
    max_blocks: int = 100
    require_https: bool = False  # True: a POST over plain HTTP answers SU:01, as SmarterU does
    queue_delay: float = 60.0  # seconds from acceptance until the enrolment is unenrolled
    rate_limit: int | None = None  # calls per rate_window; more answers 429
    rate_window: float = 60.0  # also the window "max calls in any window" is measured over
    retry_after: float | None = None  # the 429's Retry-After; None: the rest of rate_window
    # an undocumented limit the client is not told (unenroll.mockkit.hidden): "rolling:5/1s", "bucket:5/s,burst=5"...
    hidden_limit: str | None = None
    time_scale: float = 1.0
    latency: Latency = field(default_factory=Latency)
    faults: Faults = field(default_factory=Faults)
    hostile_xml: float = 0.0  # share of calls answered with a billion-laughs or XXE body
    wire: WireOptions = field(default_factory=WireOptions)
    seed: int = 0


@dataclass
class SmarterUMockState:
    """Enrolments by ``AccountUserLearningModuleRelID``: ``enrolled``, ``queued``, ``unenrolled``.

    An id absent from ``enrollments`` does not exist (``ULM:02``). Enrolments seeded as
    ``queued`` are processed ``queue_delay`` after the mock's first call.
    """

    enrollments: dict[str, str] = field(default_factory=dict)
    completed: dict[str, str] = field(default_factory=dict)  # id -> CompletedDate

    @classmethod
    def generate(cls, enrolled: int, already_queued: int = 0, *, completed_share: float = 0.3,
                 seed: int = 0, first_id: int = 1_000_001) -> SmarterUMockState:
        """``enrolled + already_queued`` enrolments with consecutive ids from ``first_id``;
        which ones are queued, and which completed, is drawn from ``seed``."""
        rng = random.Random(seed)
        ids = [str(first_id + n) for n in range(enrolled + already_queued)]
        queued = set(rng.sample(ids, already_queued))
        state = cls({i: QUEUED if i in queued else ENROLLED for i in ids})
        for i in ids:
            if rng.random() < completed_share:
                state.completed[i] = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return state

    def ids_with(self, status: str) -> list[str]:
        return [i for i, s in self.enrollments.items() if s == status]

    def snapshot(self) -> dict[str, Any]:
        by_status: dict[str, list[str]] = {ENROLLED: [], QUEUED: [], UNENROLLED: []}
        for rel_id, status in self.enrollments.items():
            by_status[status].append(rel_id)
        return {status: sorted(ids) for status, ids in by_status.items()}


Error = tuple[str, str, int | None]  # (ErrorID, ErrorMessage, block or None)


def answer_xml(result: str, info: ET.Element | None = None, errors: Sequence[Error] = ()) -> bytes:
    """A SmarterU answer: always ``Result``, ``Info`` and ``Errors``."""
    root = ET.Element("SmarterU")
    ET.SubElement(root, "Result").text = result
    root.append(info if info is not None else ET.Element("Info"))
    errors_element = ET.SubElement(root, "Errors")
    for code, message, block in errors:
        error = ET.SubElement(errors_element, "Error", {} if block is None else {"block": str(block)})
        ET.SubElement(error, "ErrorID").text = code
        ET.SubElement(error, "ErrorMessage").text = message
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


class SmarterUMock(MockBase):
    """The mock's app and its state. ``clock`` defaults to the event loop's time."""

    def __init__(self, config: SmarterUMockConfig | None = None, state: SmarterUMockState | None = None,
                 *, clock: Callable[[], float] | None = None) -> None:
        self.config = c = config or SmarterUMockConfig()
        self.state = state or SmarterUMockState()
        super().__init__(time_scale=c.time_scale, seed=c.seed, latency=c.latency, faults=c.faults, wire=c.wire,
                         clock=clock)
        seconds = self.clock.seconds
        if c.rate_limit is not None:
            retry_after = c.rate_window if c.retry_after is None else c.retry_after
            self.counter = ThresholdCounter(c.rate_limit, seconds(c.rate_window), seconds(retry_after))
        else:  # no limit: the counter only measures
            self.counter = ThresholdCounter(2**62, seconds(c.rate_window), 0.0)
        self.hidden = parse_hidden_limit(c.hidden_limit, c.time_scale) if c.hidden_limit else None
        self.hidden_refused = 0
        self.calls: Counter[str] = Counter()  # by method ("?" before the method is known)
        self.answers: Counter[str] = Counter()  # by Result, error id, or HTTP status
        self.blocks_accepted = 0
        self.largest_call = 0  # most Unenrollment blocks seen in one call
        self._queue: deque[tuple[float, str]] = deque()  # (due, id), due never decreasing
        self._started = False
        self.app[MOCK_KEY] = self
        self.app.router.add_post("/apiv2/", self.api)
        self.app.router.add_post("/apiv2", self.api)

    # -- plumbing ------------------------------------------------------------------------

    def advance_queue(self, now: float) -> None:
        """Process the unenrollment queue up to ``now`` (lazily: on each request)."""
        delay = self.clock.seconds(self.config.queue_delay)
        if not self._started:
            self._started = True
            self._queue.extend((now + delay, i) for i in self.state.ids_with(QUEUED))
        while self._queue and self._queue[0][0] <= now:
            _, rel_id = self._queue.popleft()
            if self.state.enrollments.get(rel_id) == QUEUED:
                self.state.enrollments[rel_id] = UNENROLLED

    def _xml(self, result: str, info: ET.Element | None = None, errors: Sequence[Error] = ()) -> web.Response:
        self.answers[result] += 1
        for code, _, _ in errors:
            self.answers[code] += 1
        return web.Response(body=answer_xml(result, info, errors), content_type="text/xml", charset="utf-8")

    def _whole_call_error(self, code: str, message: str) -> web.Response:
        return self._xml("Failed", None, [(code, message, None)])

    def _throttled(self, now: float) -> web.Response:
        self.answers["429"] += 1
        retry_after = max(0.0, self.counter.locked_until - now)
        return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": f"{retry_after:.3f}"})

    async def answer_fault(self, kind: str, request: web.Request, sample: dict[str, Any]) -> web.StreamResponse:
        """SmarterU's own faults (a hostile body; half an XML answer), else the kit's."""
        if kind == "hostile_xml":
            body = BILLION_LAUGHS if self.rng.random() < 0.5 else EXTERNAL_ENTITY
            return web.Response(text=body, content_type="text/xml")
        if kind == "truncated":
            text = answer_xml("Success").decode()
            return web.Response(text=text[: len(text) // 2], content_type="text/xml")
        return await super().answer_fault(kind, request, sample)

    def draw_fault(self) -> str | None:
        fault = super().draw_fault()
        if fault is None and self.config.hostile_xml and self.rng.random() < self.config.hostile_xml:
            fault = "hostile_xml"
        return fault

    # -- the API -------------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.StreamResponse:
        now = self.now()
        self.advance_queue(now)
        c = self.config
        if c.require_https and not request.secure:
            self.calls["?"] += 1
            return self._whole_call_error("SU:01", "No POST data detected.")
        if not self.counter.hit(now):
            self.calls["?"] += 1
            return self._throttled(now)
        if self.hidden is not None and (wait := self.hidden.admit(now)) is not None:
            self.calls["?"] += 1
            self.hidden_refused += 1
            self.answers["429"] += 1
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": f"{wait:.3f}"})
        form = await request.post()
        raw = form.get("Package")
        try:
            package = SafeET.fromstring(raw, forbid_dtd=True) if isinstance(raw, str) and raw else None
        except (DefusedXmlException, ET.ParseError, ValueError):
            package = ET.Element("Invalid")
        method = _text(package.find("Method")) if package is not None else "?"
        self.calls[method or "?"] += 1
        blocks = package.findall("./Parameters/LearningModuleEnrollment/Unenrollment") if package is not None else []
        if (fault := await self.fault_gate(request, len(blocks), {"Result": "Failed"})) is not None:
            return fault
        if package is None:
            return self._whole_call_error("SU:01", "No POST data detected.")
        if package.tag != "SmarterU":
            return self._whole_call_error("SU:03", "The XML package is not valid.")
        if _text(package.find("AccountAPI")) != c.account_api_key or _text(package.find("UserAPI")) not in (
            c.user_api_key, c.non_admin_user_api_key
        ):
            return self._whole_call_error("SU:02", "The API keys provided are not valid.")
        admin = _text(package.find("UserAPI")) == c.user_api_key
        self.advance_queue(self.now())  # the latency passed
        if method == "unenrollLearningModules":
            if not admin:
                return self._whole_call_error(
                    "ULM:01", "The required permissions are not met to call the unenrollLearningModules method.")
            return self._unenroll(blocks)
        if method == "getLearnerReport":
            if not admin:
                return self._whole_call_error(
                    "GLR:01", "The required permissions are not met to call the getLearnerReport method.")
            return self._learner_report([_text(e) for e in package.iterfind(".//Filters//ID")])
        return self._whole_call_error("SU:04", f"The method {method[:60]!r} is not supported.")

    def _unenroll(self, blocks: list[ET.Element]) -> web.Response:
        c = self.config
        self.largest_call = max(self.largest_call, len(blocks))
        if not blocks:
            return self._whole_call_error("ULM:06", "No Unenrollment was provided.")
        if len(blocks) > c.max_blocks:
            return self._whole_call_error(
                "ULM:05", f"The unenrollLearningModules method supports up to {c.max_blocks} unenrollments per call.")
        now = self.now()
        due = now + self.clock.seconds(c.queue_delay)
        info = ET.Element("Info")
        unenrollments = ET.SubElement(info, "Unenrollments")
        errors: list[Error] = []
        first_block: dict[str, int] = {}
        for block, element in enumerate(blocks, start=1):
            rel_id = _text(element.find("AccountUserLearningModuleRelID"))
            status = self.state.enrollments.get(rel_id)
            if rel_id in first_block:
                errors.append(("ULM:04", f"Unenrollment {block} - The AccountUserLearningModuleRelID provided is a "
                               f"duplicate of the AccountUserLearningModuleRelID from Unenrollment "
                               f"{first_block[rel_id]}.", block))
                continue
            first_block[rel_id] = block
            if status is None or status == UNENROLLED:
                errors.append(("ULM:02", f"Unenrollment {block} - The AccountUserLearningModuleRelID provided is "
                               "not valid.", block))
            elif status == QUEUED:
                errors.append(("ULM:03", f"Unenrollment {block} - The AccountUserLearningModuleRelID provided is "
                               "already in the unenrollment queue.", block))
            else:
                self.state.enrollments[rel_id] = QUEUED
                self._queue.append((due, rel_id))
                self.blocks_accepted += 1
                accepted = ET.SubElement(unenrollments, "Unenrollment", {"block": str(block)})
                ET.SubElement(accepted, "AccountUserLearningModuleRelID").text = rel_id
        return self._xml("Success" if len(unenrollments) else "Failed", info, errors)

    def _learner_report(self, ids: list[str]) -> web.Response:
        wanted = ids or list(self.state.enrollments)
        info = ET.Element("Info")
        report = ET.SubElement(info, "LearnerReport")
        for rel_id in dict.fromkeys(wanted):
            status = self.state.enrollments.get(rel_id)
            if status is None:
                continue
            record = ET.SubElement(report, "Enrollment")
            ET.SubElement(record, "ID").text = rel_id
            ET.SubElement(record, "Status").text = REPORT_STATUS[status]
            ET.SubElement(record, "CompletedDate").text = self.state.completed.get(rel_id, "")
        return self._xml("Success", info)

    def stats_fields(self) -> dict[str, Any]:
        self.advance_queue(self.now())
        counter = self.counter
        return {
            "calls": sum(self.calls.values()),
            "calls_by_method": dict(self.calls),
            "window_s": counter.window,
            "max_calls_in_window": counter.max_in_rolling_window,  # arrivals, refused ones too
            "max_accepted_in_window": counter.max_in_window,
            "throttled_429": counter.refused,
            "throttle_events": counter.lock_events,
            "hidden_limit": self.hidden.describe() if self.hidden is not None else None,
            "hidden_refused": self.hidden_refused,
            # calls that came while an earlier 429's Retry-After was still in force
            "calls_past_429": counter.refused - counter.lock_events,
            "answers": dict(self.answers),
            "blocks_accepted": self.blocks_accepted,
            "largest_call": self.largest_call,
            "queue_pending": sum(1 for _, i in self._queue if self.state.enrollments.get(i) == QUEUED),
        }

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


MOCK_KEY = web.AppKey("smarteru_mock", SmarterUMock)


def _text(element: ET.Element | None) -> str:
    return "" if element is None or element.text is None else element.text.strip()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--enrolled", type=int, default=1000, help="enrolments to seed")
    parser.add_argument("--queued", type=int, default=0, help="enrolments seeded as already queued")
    parser.add_argument("--queue-delay", type=float, default=60.0)
    parser.add_argument("--rate-limit", type=int, default=None, help="calls per --rate-window, then 429")
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--hidden-limit", default=None,
                        help="an undocumented limit: rolling:N/Ws, fixed:N/Ws, bucket:R/s,burst=B, changing:...")
    parser.add_argument("--require-https", action="store_true", help="answer a plain-HTTP POST with SU:01")


def _build(args: MainArguments) -> SmarterUMock:
    o = args.options
    config = SmarterUMockConfig(time_scale=args.time_scale, queue_delay=o.queue_delay, rate_limit=o.rate_limit,
                                rate_window=o.rate_window, require_https=o.require_https, wire=args.wire,
                                hidden_limit=o.hidden_limit,
                                seed=args.seed)
    return SmarterUMock(config, SmarterUMockState.generate(o.enrolled, o.queued, seed=args.seed))


def main(argv: list[str] | None = None) -> None:
    run_main(argv, description="Serve the SmarterU API mock on loopback.", default_port=8081,
             add_options=_options, build=_build)


if __name__ == "__main__":
    main()
