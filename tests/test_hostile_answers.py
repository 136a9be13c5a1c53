"""Every adapter's reader against hostile answers (issue 11: never conclude from what was not said).

Each property draws a ground truth (what the vendor did with each item sent), writes the
well-formed answer that says it, then applies one drawn mutation. A mutation knows what it
does to the answer: it keeps it well formed with the same meaning (the conclusions must
equal the ground truth), changes what it says about one item in a documented way (the
conclusions follow), or breaks it (the whole call must be retried as unreadable, so no item
is concluded done or not enrolled from it). Explicit examples of the cases the issue
reproduced follow the properties.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unenroll.adapters.docebo import adapter as docebo
from unenroll.adapters.smarteru import adapter as smarteru
from unenroll.adapters.zoho import adapter as zoho
from unenroll.contract.declarations import ReadPage
from unenroll.model import CallResult, CallVerdict, ItemVerdict, Outcome
from unenroll.wire.echoed_ids import EXACT_FLOAT_LIMIT, exact_id
from unenroll.wire.http import HttpResponse

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Expected = list[tuple[ItemVerdict, Outcome | None]] | None  # None: the answer must be unreadable
RETRY = (ItemVerdict.RETRY, None)
UNREADABLE = None


def final(outcome: Outcome) -> tuple[ItemVerdict, Outcome | None]:
    return (ItemVerdict.FINAL, outcome)


def check(result: CallResult | ReadPage, expected: Expected) -> None:
    """The answer is unreadable (whole-call retry, nothing concluded), or reads exactly as expected."""
    if expected is UNREADABLE:
        assert isinstance(result, CallResult)
        assert (result.verdict, result.code, tuple(result.items)) == (CallVerdict.RETRY, "unreadable", ())
        return
    assert isinstance(result, CallResult) and result.verdict is CallVerdict.ANSWERED, result
    assert [(r.verdict, r.outcome) for r in result.items] == expected


def response(body: Any) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(200, raw, {})


# -- values that denote no id, and junk ----------------------------------------------------

NOT_AN_ID = st.one_of(
    st.none(),
    st.booleans(),
    st.floats().filter(lambda f: exact_id(f) is None),  # fractions, NaN, infinities, negatives, >= 2**53
    st.integers(max_value=-1),
    st.text(max_size=6).filter(lambda t: exact_id(t) is None),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def junk_without(key: str) -> st.SearchStrategy[Any]:
    """A JSON value that is no record naming ``key``."""
    return JSON_VALUE.filter(lambda v: not (isinstance(v, dict) and key in v))


def number_echo(value: str) -> tuple[Any, bool]:
    """``value`` echoed as a JSON float, and whether that float denotes it exactly."""
    return float(int(value)), int(value) < EXACT_FLOAT_LIMIT


def truncated(body: Any, cut: float) -> bytes:
    raw = json.dumps(body).encode()
    return raw[: int(cut * len(raw))]  # a strict prefix of a JSON object is never JSON


# -- Zoho: learners / sharedUsers ------------------------------------------------------------------

ZOHO_IDS = st.one_of(
    st.integers(0, 2**63 - 1),
    st.integers(EXACT_FLOAT_LIMIT - 3, EXACT_FLOAT_LIMIT + 3),  # the edge of exact floats
    st.integers(7 * 10**12, 7 * 10**12 + 200),  # the mock's erecnos
).map(str)
COURSE, BATCH = "5000000000001", "5000000000002"


@dataclass(frozen=True)
class ZohoList:
    """One of Zoho's list answers: its name, and what a listed or an absent erecno means."""

    name: str
    read: Callable[[tuple[str, ...], list[str], HttpResponse], CallResult]
    target: tuple[str, ...]
    listed: tuple[ItemVerdict, Outcome | None]
    absent: tuple[ItemVerdict, Outcome | None]
    states: tuple[str, ...]  # "listed", "absent", and "other" (listed with another enrollmentStatus)


UNENROLL_LIST = ZohoList("learners", zoho.read_unenroll, (COURSE, BATCH), final(Outcome.UNENROLLED),
                         final(Outcome.NOT_ENROLLED), ("listed", "absent", "other"))
SHARE_LIST = ZohoList("sharedUsers", zoho.read_share_course, (COURSE,), final(Outcome.SHARED),
                      final(Outcome.FAILED), ("listed", "absent"))

ZOHO_MUTATIONS = ["none", "shuffle", "int_echo", "float_echo", "not_an_id", "no_key", "junk", "unsent", "duplicate",
                  "list_not_list", "no_code", "truncated", "whole_body", "drop_entry", "status", "extra_fields"]


def zoho_entry(kind: ZohoList, erecno: str, state: str) -> dict[str, Any]:
    if kind is SHARE_LIST:
        return {"erecno": erecno, "displayName": "E", "employeeId": erecno[-4:], "emailId": "e@example.com",
                "displayPictureURL": ""}
    return {"erecno": erecno, "learnerId": str(int(erecno) // 2), "batchId": BATCH, "courseId": COURSE,
            "enrollmentStatus": "unenrolled" if state == "listed" else "enrolled"}


@st.composite
def zoho_cases(draw: st.DrawFn, kind: ZohoList) -> tuple[list[str], Any, Expected]:
    subjects = draw(st.lists(ZOHO_IDS, min_size=1, max_size=8, unique=True))
    states = draw(st.lists(st.sampled_from(kind.states), min_size=len(subjects), max_size=len(subjects)))
    if all(s == "absent" for s in states):
        states[0] = "listed"
    meaning = {"listed": kind.listed, "absent": kind.absent, "other": RETRY}
    expected: Expected = [meaning[s] for s in states]
    entries = [zoho_entry(kind, e, s) for e, s in zip(subjects, states, strict=True) if s != "absent"]
    body: Any = {"code": "200", "message": "success", kind.name: entries}
    at = draw(st.integers(0, len(entries) - 1))
    entry = entries[at]
    item = subjects.index(entry["erecno"])
    mutation = draw(st.sampled_from(ZOHO_MUTATIONS))
    if mutation == "shuffle":
        draw(st.randoms(use_true_random=False)).shuffle(entries)
    elif mutation == "int_echo":
        entry["erecno"] = int(entry["erecno"])
    elif mutation == "float_echo":
        entry["erecno"], exact = number_echo(entry["erecno"])
        expected = expected if exact else UNREADABLE
    elif mutation == "not_an_id":
        entry["erecno"] = draw(NOT_AN_ID)
        expected = UNREADABLE
    elif mutation == "no_key":
        del entry["erecno"]
        expected = UNREADABLE
    elif mutation == "junk":
        entries.insert(draw(st.integers(0, len(entries))), draw(junk_without("erecno")))
        expected = UNREADABLE
    elif mutation == "unsent":
        unsent = draw(ZOHO_IDS.filter(lambda e: e not in subjects))
        entries.append(zoho_entry(kind, unsent, "listed") | {"erecno": draw(st.sampled_from([unsent, int(unsent)]))})
        expected = UNREADABLE
    elif mutation == "duplicate":
        entries.append(dict(entry))
        expected = UNREADABLE
    elif mutation == "list_not_list":
        body[kind.name] = draw(st.one_of(st.none(), st.text(max_size=3), st.integers(), st.just({})))
        expected = UNREADABLE
    elif mutation == "no_code":
        body["code"] = draw(st.sampled_from([None, "500", "", 0, "ok"]))
        expected = UNREADABLE
    elif mutation == "truncated":
        body = truncated(body, draw(st.floats(0, 0.999)))
        expected = UNREADABLE
    elif mutation == "whole_body":
        body = draw(st.sampled_from([None, [], "success", 200, entries]))
        expected = UNREADABLE
    elif mutation == "drop_entry":  # documented: an erecno absent from a well-formed list
        entries.remove(entry)
        assert expected is not None
        expected[item] = kind.absent
    elif mutation == "status" and kind is UNENROLL_LIST:  # listed without saying "unenrolled": not done
        if draw(st.booleans()):
            del entry["enrollmentStatus"]
        else:
            entry["enrollmentStatus"] = draw(st.one_of(st.none(), st.integers(), st.sampled_from(["enrolled", ""])))
        assert expected is not None
        expected[item] = RETRY
    elif mutation == "extra_fields":
        entry.update(draw(st.dictionaries(st.sampled_from(["note", "x", "completionStatus"]), JSON_VALUE)))
    return subjects, body, expected


@PROPERTY
@given(case=zoho_cases(UNENROLL_LIST))
def test_zoho_unenroll_concludes_only_what_a_well_formed_answer_says(case: tuple[list[str], Any, Expected]) -> None:
    subjects, body, expected = case
    check(zoho.read_unenroll((COURSE, BATCH), subjects, response(body)), expected)


@PROPERTY
@given(case=zoho_cases(SHARE_LIST))
def test_zoho_share_concludes_only_what_a_well_formed_answer_says(case: tuple[list[str], Any, Expected]) -> None:
    subjects, body, expected = case
    check(zoho.read_share_course((COURSE,), subjects, response(body)), expected)


@PROPERTY
@given(learner=ZOHO_IDS, echo=st.one_of(NOT_AN_ID, ZOHO_IDS, ZOHO_IDS.map(int)), drop=st.booleans())
def test_zoho_remove_learner_is_done_only_when_the_answer_names_that_learner(learner: str, echo: Any,
                                                                          drop: bool) -> None:
    body: dict[str, Any] = {"code": "200", "message": "success"}
    if not drop:
        body["learnerId"] = echo
    result = zoho.read_remove_learner((COURSE, BATCH), [learner], response(body))
    check(result, [final(Outcome.UNENROLLED)] if not drop and exact_id(echo) == learner else UNREADABLE)


@PROPERTY
@given(data=st.data(), key=st.sampled_from(["erecno", "learnerId"]))
def test_zoho_read_page_drops_no_targeted_learner_silently(data: st.DataObject, key: str) -> None:
    batch = data.draw(st.lists(ZOHO_IDS, min_size=1, max_size=10, unique=True))
    subjects = data.draw(st.lists(st.sampled_from(batch) | ZOHO_IDS, min_size=1, max_size=5, unique=True))
    other = "learnerId" if key == "erecno" else "erecno"
    learners: list[Any] = [{key: i, other: "1", "enrollmentStatus": "enrolled"} for i in batch]
    wanted = {i for i in batch if i in subjects}
    mutation = data.draw(st.sampled_from(["none", "int_echo", "not_an_id", "no_key", "junk", "duplicate"]))
    readable = True
    if mutation == "int_echo":
        learners[0][key] = int(learners[0][key])
    elif mutation == "not_an_id":
        learners[0][key], readable = data.draw(NOT_AN_ID), False
    elif mutation == "no_key":
        del learners[0][key]
        readable = False
    elif mutation == "junk":
        learners.append(data.draw(junk_without(key)))
        readable = False
    elif mutation == "duplicate":
        learners.append(dict(learners[0]))
        readable = False
    page = zoho.read_learners_page(key, (COURSE, BATCH), subjects, response({"code": "200", "learners": learners}))
    if readable:
        assert isinstance(page, ReadPage) and set(page.records) == wanted
    else:
        check(page, UNREADABLE)


# -- SmarterU: blocks ----------------------------------------------------------------------------------

REL_IDS = st.text(alphabet="abcXYZ0123456789-_", min_size=1, max_size=8)
SMARTERU_STATES = ("accepted", "invalid", "queued", "absent")
SMARTERU_MEANING = {"accepted": final(Outcome.QUEUED), "invalid": final(Outcome.FAILED),
                    "queued": final(Outcome.QUEUED), "absent": RETRY}
ERROR_OF = {"invalid": ("ULM:02", "The AccountUserLearningModuleRelID provided is not valid."),
            "queued": ("ULM:03", "The AccountUserLearningModuleRelID provided is already in the unenrollment queue.")}
SMARTERU_MUTATIONS = ["none", "shuffle", "capital_block", "drop_accepted", "drop_error", "out_of_range",
                      "not_a_number", "no_block", "accepted_twice", "accepted_and_refused", "two_errors",
                      "other_echo", "empty_echo", "result", "truncated", "extra_element"]


def accepted_xml(block: Any, echo: str, attribute: str = "block") -> str:
    return (f'<Unenrollment {attribute}="{block}"><AccountUserLearningModuleRelID>{echo}'
            "</AccountUserLearningModuleRelID></Unenrollment>")


def error_xml(block: Any, code: str, message: str) -> str:
    return f'<Error block="{block}"><ErrorID>{code}</ErrorID><ErrorMessage>Unenrollment {block} - {message}' \
           "</ErrorMessage></Error>"


@st.composite
def smarteru_cases(draw: st.DrawFn) -> tuple[list[str], bytes, Expected]:
    subjects = draw(st.lists(REL_IDS, min_size=1, max_size=8, unique=True))
    n = len(subjects)
    states = draw(st.lists(st.sampled_from(SMARTERU_STATES), min_size=n, max_size=n))
    expected: Expected = [SMARTERU_MEANING[s] for s in states]
    accepted = {k: accepted_xml(k, subjects[k - 1]) for k in range(1, n + 1) if states[k - 1] == "accepted"}
    errors = {k: error_xml(k, *ERROR_OF[states[k - 1]]) for k in range(1, n + 1) if states[k - 1] in ERROR_OF}
    result = "Failed" if not accepted and errors else "Success"
    extra = ""
    mutation = draw(st.sampled_from(SMARTERU_MUTATIONS))
    some_accepted = draw(st.sampled_from(sorted(accepted))) if accepted else None
    some_error = draw(st.sampled_from(sorted(errors))) if errors else None
    any_block = draw(st.integers(1, n))
    if mutation == "capital_block" and some_accepted is not None:
        accepted[some_accepted] = accepted_xml(some_accepted, subjects[some_accepted - 1], "Block")
    elif mutation == "drop_accepted" and some_accepted is not None:
        del accepted[some_accepted]  # the answer no longer mentions the block: evidence of nothing
        assert expected is not None
        expected[some_accepted - 1] = RETRY
    elif mutation == "drop_error" and some_error is not None:
        del errors[some_error]
        assert expected is not None
        expected[some_error - 1] = RETRY
    elif mutation == "out_of_range":
        outside = draw(st.sampled_from([0, n + 1, n + 7, 10**6]))
        if draw(st.booleans()):
            accepted[-1] = accepted_xml(outside, subjects[0])
        else:
            errors[-1] = error_xml(outside, *ERROR_OF["invalid"])
        expected = UNREADABLE
    elif mutation == "not_a_number":
        not_a_number = draw(st.sampled_from(["three", "-1", "1.0", "", "+1", "\u0661", "0x1", "1 2"]))
        accepted[-1] = accepted_xml(not_a_number, subjects[0])
        expected = UNREADABLE
    elif mutation == "no_block":
        extra_accepted = accepted_xml(1, subjects[0]).replace(' block="1"', "")
        accepted[-1] = extra_accepted
        expected = UNREADABLE
    elif mutation == "accepted_twice" and some_accepted is not None:
        accepted[-1] = accepted[some_accepted]
        expected = UNREADABLE
    elif mutation == "accepted_and_refused":
        accepted[-1] = accepted_xml(any_block, subjects[any_block - 1])
        errors[-1] = error_xml(any_block, *ERROR_OF[draw(st.sampled_from(sorted(ERROR_OF)))])
        expected = UNREADABLE
    elif mutation == "two_errors":
        errors[-1] = error_xml(any_block, *ERROR_OF["invalid"])
        errors[-2] = error_xml(any_block, *ERROR_OF["queued"])
        expected = UNREADABLE
    elif mutation == "other_echo" and some_accepted is not None:
        echo = draw(REL_IDS.filter(lambda i: i != subjects[some_accepted - 1]))
        accepted[some_accepted] = accepted_xml(some_accepted, echo)
        expected = UNREADABLE
    elif mutation == "empty_echo" and some_accepted is not None:
        accepted[some_accepted] = accepted_xml(some_accepted, "")
        expected = UNREADABLE
    elif mutation == "result":
        result = draw(st.sampled_from(["", "success", "Partial", "OK", "Success Failed"]))
        expected = UNREADABLE
    elif mutation == "extra_element":
        extra = "<Note>maintenance tonight</Note>"
    blocks, refusals = list(accepted.values()), list(errors.values())
    if mutation == "shuffle":
        draw(st.randoms(use_true_random=False)).shuffle(blocks)
        draw(st.randoms(use_true_random=False)).shuffle(refusals)
    xml = (f"<SmarterU><Result>{result}</Result>{extra}<Info><Unenrollments>{''.join(blocks)}</Unenrollments></Info>"
           f"<Errors>{''.join(refusals)}</Errors></SmarterU>").encode()
    if mutation == "truncated":
        xml = xml[: int(draw(st.floats(0, 0.999)) * len(xml))]
        expected = UNREADABLE
    if expected is not UNREADABLE and result == "Failed" and not accepted and not errors:
        expected = UNREADABLE  # "Failed" and no reason: nothing to read
    return subjects, xml, expected


@PROPERTY
@given(case=smarteru_cases())
def test_smarteru_concludes_only_what_well_formed_blocks_say(case: tuple[list[str], bytes, Expected]) -> None:
    subjects, xml, expected = case
    check(smarteru.read_unenroll(smarteru.ACCOUNT_TARGET, subjects, HttpResponse(200, xml, {})), expected)


@PROPERTY
@given(data=st.data())
def test_smarteru_report_drops_no_asked_enrolment_silently(data: st.DataObject) -> None:
    listed = data.draw(st.lists(REL_IDS, min_size=1, max_size=8, unique=True))
    subjects = data.draw(st.lists(st.sampled_from(listed) | REL_IDS, min_size=1, max_size=5, unique=True))
    rows = [f"<Enrollment><ID>{i}</ID><Status>Enrolled</Status><CompletedDate/></Enrollment>" for i in listed]
    mutation = data.draw(st.sampled_from(["none", "other_id", "no_id", "empty_id", "no_status", "duplicate",
                                          "no_report", "two_ids"]))
    report = True
    if mutation == "other_id":
        rows.append("<Enrollment><ID>not-asked</ID><Status>Enrolled</Status></Enrollment>")
    elif mutation == "no_id":
        rows[0] = rows[0].replace(f"<ID>{listed[0]}</ID>", "")
    elif mutation == "empty_id":
        rows[0] = rows[0].replace(f"<ID>{listed[0]}</ID>", "<ID> </ID>")
    elif mutation == "no_status":
        rows[0] = rows[0].replace("<Status>Enrolled</Status>", "")
    elif mutation == "duplicate":
        rows.append(rows[0])
    elif mutation == "two_ids":
        rows[0] = rows[0].replace("</ID>", "</ID><ID>x</ID>", 1)
    elif mutation == "no_report":
        report = False
    inner = f"<LearnerReport>{''.join(rows)}</LearnerReport>" if report else ""
    xml = f"<SmarterU><Result>Success</Result><Info>{inner}</Info><Errors/></SmarterU>".encode()
    page = smarteru.read_report_page(smarteru.ACCOUNT_TARGET, subjects, HttpResponse(200, xml, {}))
    if mutation in ("none", "other_id"):
        assert isinstance(page, ReadPage) and set(page.records) == set(listed) & set(subjects)
    else:
        check(page, UNREADABLE)


# -- Docebo: pairs -------------------------------------------------------------------------------------

DOCEBO_IDS = st.one_of(st.integers(0, 10**18 - 1), st.integers(EXACT_FLOAT_LIMIT - 3, EXACT_FLOAT_LIMIT + 3)).map(str)
DOCEBO_STATES = ("unenrolled", "not_enrolled", "not_found", "absent")
DOCEBO_MEANING = {"unenrolled": final(Outcome.UNENROLLED), "not_enrolled": final(Outcome.NOT_ENROLLED),
                  "not_found": final(Outcome.FAILED), "absent": RETRY}
DOCEBO_MESSAGES = {"not_enrolled": "User is not enrolled in the course", "not_found": "The course was not found"}
DOCEBO_MUTATIONS = ["none", "shuffle", "string_ids", "float_echo", "not_an_id", "no_user", "unsent", "other_target",
                    "both_kinds", "no_kind", "junk", "duplicate", "in_both", "not_lists", "truncated", "drop_pair",
                    "message_not_text", "extra_fields"]


@st.composite
def docebo_cases(draw: st.DrawFn) -> tuple[tuple[str, str], list[str], Any, Expected]:
    kind = draw(st.sampled_from(docebo.TARGET_KINDS))
    target = (kind, draw(DOCEBO_IDS))
    key = "course_id" if kind == docebo.COURSE else "learningplan_id"
    subjects = draw(st.lists(DOCEBO_IDS, min_size=1, max_size=8, unique=True))
    states = draw(st.lists(st.sampled_from(DOCEBO_STATES), min_size=len(subjects), max_size=len(subjects)))
    if all(s == "absent" for s in states):
        states[0] = "unenrolled"
    expected: Expected = [DOCEBO_MEANING[s] for s in states]
    done: list[Any] = []
    errors: list[Any] = []
    for user, state in zip(subjects, states, strict=True):
        pair = {"user_id": int(user), key: int(target[1])}
        if state == "unenrolled":
            done.append(pair)
        elif state in DOCEBO_MESSAGES:
            errors.append(pair | {"message": DOCEBO_MESSAGES[state]})
    body: Any = {"data": {"unenrolled": done, "errors": errors}, "version": "1.0.0", "_links": []}
    records = [*done, *errors]
    record = draw(st.sampled_from(records))
    item = subjects.index(str(record["user_id"]))
    mutation = draw(st.sampled_from(DOCEBO_MUTATIONS))
    if mutation == "shuffle":
        draw(st.randoms(use_true_random=False)).shuffle(done)
        draw(st.randoms(use_true_random=False)).shuffle(errors)
    elif mutation == "string_ids":
        record["user_id"], record[key] = str(record["user_id"]), str(record[key])
    elif mutation == "float_echo":
        record["user_id"], exact = number_echo(str(record["user_id"]))
        expected = expected if exact else UNREADABLE
    elif mutation == "not_an_id":
        record[draw(st.sampled_from(["user_id", key]))] = draw(NOT_AN_ID.filter(lambda v: v is not None))
        expected = UNREADABLE
    elif mutation == "no_user":
        del record["user_id"]
        expected = UNREADABLE
    elif mutation == "unsent":
        unsent = draw(DOCEBO_IDS.filter(lambda u: u not in subjects))
        draw(st.sampled_from([done, errors])).append({"user_id": int(unsent), key: int(target[1]), "message": "x"})
        expected = UNREADABLE
    elif mutation == "other_target":
        record[key] = draw(DOCEBO_IDS.filter(lambda t: t != target[1]).map(int))
        expected = UNREADABLE
    elif mutation == "both_kinds":
        record["learningplan_id" if key == "course_id" else "course_id"] = record[key]
        expected = UNREADABLE
    elif mutation == "no_kind":
        del record[key]
        expected = UNREADABLE
    elif mutation == "junk":
        draw(st.sampled_from([done, errors])).append(draw(junk_without("user_id")))
        expected = UNREADABLE
    elif mutation == "duplicate":
        (done if record in done else errors).append(dict(record))
        expected = UNREADABLE
    elif mutation == "in_both":
        (errors if record in done else done).append(record | {"message": "User is not enrolled in the course"})
        expected = UNREADABLE
    elif mutation == "not_lists":
        body["data"][draw(st.sampled_from(["unenrolled", "errors"]))] = draw(st.sampled_from([None, {}, "x", 1]))
        expected = UNREADABLE
    elif mutation == "truncated":
        body = truncated(body, draw(st.floats(0, 0.999)))
        expected = UNREADABLE
    elif mutation == "drop_pair":  # a pair the answer leaves out is evidence of nothing
        (done if record in done else errors).remove(record)
        assert expected is not None
        expected[item] = RETRY
    elif mutation == "message_not_text" and record in errors:
        record["message"] = draw(st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=1)))
        expected = UNREADABLE
    elif mutation == "extra_fields":
        record.update(draw(st.dictionaries(st.sampled_from(["status", "x", "username"]), JSON_VALUE)))
    return target, subjects, body, expected


@PROPERTY
@given(case=docebo_cases())
def test_docebo_concludes_only_what_well_formed_pairs_say(
    case: tuple[tuple[str, str], list[str], Any, Expected],
) -> None:
    target, subjects, body, expected = case
    check(docebo.read_unenroll(target, subjects, response(body)), expected)


@PROPERTY
@given(data=st.data())
def test_docebo_read_page_drops_no_asked_user_silently(data: st.DataObject) -> None:
    listed = data.draw(st.lists(DOCEBO_IDS, min_size=1, max_size=8, unique=True))
    subjects = data.draw(st.lists(st.sampled_from(listed) | DOCEBO_IDS, min_size=1, max_size=5, unique=True))
    rows: list[Any] = [{"user_id": int(u), "course_id": 100, "status": "enrolled"} for u in listed]
    mutation = data.draw(st.sampled_from(["none", "strings", "other_course", "not_an_id", "no_course", "junk",
                                          "duplicate"]))
    readable = True
    expected_records = set(listed) & set(subjects)
    if mutation == "strings":
        rows[0]["user_id"] = str(rows[0]["user_id"])
    elif mutation == "other_course":
        rows.append({"user_id": int(listed[0]), "course_id": 101, "status": "enrolled"})
    elif mutation == "not_an_id":
        rows[0]["user_id"], readable = data.draw(NOT_AN_ID), False
    elif mutation == "no_course":
        del rows[0]["course_id"]
        readable = False
    elif mutation == "junk":
        rows.append(data.draw(junk_without("user_id")))
        readable = False
    elif mutation == "duplicate":
        rows.append(dict(rows[0]))
        readable = listed[0] not in subjects  # a twice-listed user that was not asked for is not ours
    body = {"data": {"items": rows, "has_more_data": False, "current_page": 1}}
    page = docebo.read_page(("course", "100"), subjects, response(body))
    if readable:
        assert isinstance(page, ReadPage) and set(page.records) == expected_records
    else:
        check(page, UNREADABLE)


# -- the cases issue 11 reproduced ---------------------------------------------------------------------

SENT_150 = [str(7_000_000_000_001 + n) for n in range(150)]


@pytest.mark.parametrize("entry", [
    {"erecno": None, "enrollmentStatus": "unenrolled"},
    {"learnerId": "1", "enrollmentStatus": "unenrolled"},
    "7000000000001",
    {"erecno": "7000000000999", "enrollmentStatus": "unenrolled"},  # not sent
], ids=["null erecno", "no erecno", "a string entry", "an unsent erecno"])
def test_zoho_150_sent_and_an_entry_that_cannot_be_matched_concludes_none(entry: Any) -> None:
    body = {"code": "200", "message": "success", "learners": [entry]}
    check(zoho.read_unenroll((COURSE, BATCH), SENT_150, response(body)), UNREADABLE)


def test_zoho_an_erecno_echoed_as_a_float_matches_by_value_when_exact() -> None:
    raw = b'{"code": "200", "message": "success", "learners": [{"erecno": 7.0e12, "enrollmentStatus": "unenrolled"}]}'
    result = zoho.read_unenroll((COURSE, BATCH), ["7000000000000", "7000000000001"], HttpResponse(200, raw, {}))
    check(result, [final(Outcome.UNENROLLED), final(Outcome.NOT_ENROLLED)])
    inexact = raw.replace(b"7.0e12", b"9007199254740993.0")  # 2**53 + 1 is no float: it would read as 2**53
    check(zoho.read_unenroll((COURSE, BATCH), ["9007199254740992"], HttpResponse(200, inexact, {})), UNREADABLE)


def test_zoho_all_150_echoed_as_floats_are_unenrolled_not_absent() -> None:
    learners = ",".join(f'{{"erecno": {int(e)}.0, "enrollmentStatus": "unenrolled"}}' for e in SENT_150)
    raw = f'{{"code": "200", "message": "success", "learners": [{learners}]}}'.encode()
    result = zoho.read_unenroll((COURSE, BATCH), SENT_150, HttpResponse(200, raw, {}))
    check(result, [final(Outcome.UNENROLLED)] * 150)


@pytest.mark.parametrize("value", [7.5, float("nan"), float("inf"), -1, True, 2.0**60, "7e12", " 7", "", [7]])
def test_values_that_are_not_exactly_an_id_match_nothing(value: Any) -> None:
    assert exact_id(value) is None


def test_exact_ids_are_canonical_digits() -> None:
    assert [exact_id(v) for v in (7, "7", "0007", 7.0, 2.0**53 - 1, 0)] == ["7", "7", "7", "7", str(2**53 - 1), "0"]

