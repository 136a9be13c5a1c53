"""SmarterU's pure functions: building the XML package, reading answers (the seed's own
examples, per-block errors, whole-call failures, hostile XML), validation, HTTPS only."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unenroll.adapters.smarteru.adapter import (
    ACCOUNT_TARGET,
    ApiKeys,
    SmarterU,
    SmarterULimits,
    build_unenroll,
    check_base_url,
    read_learner_report,
    read_unenroll,
    unenroll_item,
    validate,
)
from unenroll.adapters.smarteru.mock import BILLION_LAUGHS, EXTERNAL_ENTITY
from unenroll.limits.adaptive import AdaptiveRateLimiter
from unenroll.limits.learned import LearnedWindowLimiter
from unenroll.limits.window import RollingWindowLimiter
from unenroll.model import CallResult, CallVerdict, Item, ItemResult, Outcome
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

KEYS = ApiKeys.of("acct-KEY-<&>", "user-KEY-'\"")
T = ACCOUNT_TARGET


def answer(xml: str, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, xml.encode(), headers or {})


def read(subjects: list[str], xml: str, status: int = 200, headers: dict[str, str] | None = None) -> CallResult:
    return read_unenroll(T, subjects, answer(xml, status, headers))


def outcomes(result: CallResult) -> list[tuple[Outcome | None, str | None]]:
    assert result.verdict is CallVerdict.ANSWERED
    return [(r.outcome, r.code) for r in result.items]


async def _never_called(request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
    raise AssertionError("no call expected")


def package_of(subjects: list[str], keys: ApiKeys = KEYS) -> ET.Element:
    request = build_unenroll(keys, T, subjects)
    assert request.method == "POST" and request.path == "/apiv2/"
    assert request.form is not None
    (name, value), = request.form
    assert name == "Package"
    return ET.fromstring(value)


# -- building ----------------------------------------------------------------------------


def test_the_package_has_one_unenrollment_block_per_id_in_order() -> None:
    root = package_of(["11", "22", "33"])
    assert root.tag == "SmarterU"
    assert root.findtext("Method") == "unenrollLearningModules"
    blocks = root.findall("./Parameters/LearningModuleEnrollment/Unenrollment")
    assert [b.findtext("AccountUserLearningModuleRelID") for b in blocks] == ["11", "22", "33"]


def test_ids_and_keys_are_escaped_on_the_way_out() -> None:
    hostile = "<&>\"'"
    request = build_unenroll(KEYS, T, [hostile, "a]]>b", "<!ENTITY x 'y'>"])
    assert request.form is not None
    raw = request.form[0][1]
    assert "&lt;&amp;&gt;&quot;&apos;" in raw
    assert "<!ENTITY" not in raw and "<&>" not in raw
    root = ET.fromstring(raw)  # well-formed, and the values come back exactly
    ids = [e.text for e in root.iter("AccountUserLearningModuleRelID")]
    assert ids == [hostile, "a]]>b", "<!ENTITY x 'y'>"]
    assert root.findtext("AccountAPI") == "acct-KEY-<&>"
    assert root.findtext("UserAPI") == "user-KEY-'\""


def test_the_keys_go_only_into_the_body_never_into_a_repr() -> None:
    keys = ApiKeys.of("s3cret-account-key", "s3cret-user-key")
    request = build_unenroll(keys, T, ["1"])
    assert request.form is not None and "s3cret-account-key" in request.form[0][1]
    adapter = SmarterU(account_api_key="s3cret-account-key", user_api_key="s3cret-user-key",
                       transport=InProcessTransport(_never_called))
    for text in (repr(request), repr(keys), repr(adapter), repr(adapter.operations), str(adapter.endpoints)):
        assert "s3cret" not in text
    assert request.headers == {}  # auth is in the body: no header to add
    assert type(adapter.auth).__name__ == "NoAuth"


# -- reading -----------------------------------------------------------------------------

VENDOR_APIS_EXAMPLE = """<SmarterU>
  <Result>Success</Result>
  <Info><Unenrollments>
    <Unenrollment block="1"><AccountUserLearningModuleRelID>123</AccountUserLearningModuleRelID></Unenrollment>
    <Unenrollment block="3"><AccountUserLearningModuleRelID>789</AccountUserLearningModuleRelID></Unenrollment>
  </Unenrollments></Info>
  <Errors>
    <Error block="2"><ErrorID>ULM:02</ErrorID>
      <ErrorMessage>Unenrollment 2 - The AccountUserLearningModuleRelID provided is not valid.</ErrorMessage></Error>
  </Errors>
</SmarterU>"""

# seed 002's own example: Success, block 2 accepted, an error on block 1, written "Block"
SEED_EXAMPLE = """<SmarterU>
   <Result>Success</Result>
   <Info>
      <Unenrollments>
         <Unenrollment block="2">
            <AccountUserLearningModuleRelID>456</AccountUserLearningModuleRelID>
         </Unenrollment>
      </Unenrollments>
   </Info>
   <Errors>
      <Error Block="1">
         <ErrorID>ULM:02</ErrorID>
         <ErrorMessage>Unenrollment 1 - The AccountUserLearningModuleRelID provided is not valid.</ErrorMessage>
      </Error>
   </Errors>
</SmarterU>"""


def test_success_with_an_error_on_block_2_reads_blocks_1_and_3_as_queued() -> None:
    result = read(["123", "456", "789"], VENDOR_APIS_EXAMPLE)
    assert outcomes(result) == [(Outcome.QUEUED, "accepted"), (Outcome.FAILED, "ULM:02"), (Outcome.QUEUED, "accepted")]
    assert "not valid" in (result.items[1].message or "")


def test_the_seed_example_with_a_capitalised_block_attribute() -> None:
    assert outcomes(read(["123", "456"], SEED_EXAMPLE)) == [(Outcome.FAILED, "ULM:02"), (Outcome.QUEUED, "accepted")]


def test_blocks_are_positions_in_this_call_so_a_resent_id_maps_by_its_new_block() -> None:
    first = """<SmarterU><Result>Success</Result><Info><Unenrollments/></Info><Errors>
      <Error block="2"><ErrorID>ULM:02</ErrorID><ErrorMessage>Unenrollment 2 - not valid.</ErrorMessage></Error>
      <Error block="3"><ErrorID>ULM:02</ErrorID><ErrorMessage>Unenrollment 3 - not valid.</ErrorMessage></Error>
      </Errors></SmarterU>"""
    # the same answer read against another call's subjects means other items
    assert [r.code for r in read(["a", "b", "c"], first).items] == ["missing", "ULM:02", "ULM:02"]
    resent = """<SmarterU><Result>Success</Result><Info><Unenrollments>
      <Unenrollment block="1"><AccountUserLearningModuleRelID>a</AccountUserLearningModuleRelID></Unenrollment>
      </Unenrollments></Info><Errors/></SmarterU>"""
    assert outcomes(read(["a"], resent)) == [(Outcome.QUEUED, "accepted")]
    # an echo that names another id than this call's block is not the answer to this call: nothing is read from it
    mismatched = read(["z"], resent)
    assert (mismatched.verdict, mismatched.code, mismatched.items) == (CallVerdict.RETRY, "unreadable", ())


def test_already_in_the_queue_is_done_not_a_failure() -> None:
    xml = """<SmarterU><Result>Failed</Result><Info/><Errors><Error block="1"><ErrorID>ULM:03</ErrorID>
      <ErrorMessage>Unenrollment 1 - The AccountUserLearningModuleRelID provided is already in the unenrollment
      queue.</ErrorMessage></Error></Errors></SmarterU>"""
    result = read(["5"], xml)
    assert outcomes(result) == [(Outcome.QUEUED, "ULM:03")]
    assert "already in the unenrollment" in (result.items[0].message or "")


def test_a_duplicate_block_takes_the_outcome_of_the_block_it_duplicates() -> None:
    xml = """<SmarterU><Result>Success</Result><Info><Unenrollments>
      <Unenrollment block="1"><AccountUserLearningModuleRelID>7</AccountUserLearningModuleRelID></Unenrollment>
      </Unenrollments></Info><Errors>
      <Error block="3"><ErrorID>ULM:04</ErrorID><ErrorMessage>Unenrollment 3 - The AccountUserLearningModuleRelID
      provided is a duplicate of the AccountUserLearningModuleRelID from Unenrollment 1.</ErrorMessage></Error>
      <Error block="2"><ErrorID>ULM:02</ErrorID><ErrorMessage>Unenrollment 2 - not valid.</ErrorMessage></Error>
      <Error block="4"><ErrorID>ULM:04</ErrorID><ErrorMessage>Unenrollment 4 - a duplicate of the
      AccountUserLearningModuleRelID from Unenrollment 2.</ErrorMessage></Error>
      </Errors></SmarterU>"""
    result = read(["7", "8", "07", "08"], xml)
    assert outcomes(result) == [
        (Outcome.QUEUED, "accepted"),  # the other block's outcome stands
        (Outcome.FAILED, "ULM:02"),
        (Outcome.QUEUED, "ULM:04"),
        (Outcome.FAILED, "ULM:04"),
    ]


def test_a_block_the_answer_does_not_mention_is_retried_not_guessed() -> None:
    xml = """<SmarterU><Result>Success</Result><Info><Unenrollments>
      <Unenrollment block="2"><AccountUserLearningModuleRelID>b</AccountUserLearningModuleRelID></Unenrollment>
      </Unenrollments></Info><Errors/></SmarterU>"""
    result = read(["a", "b"], xml)
    assert result.items[0] == ItemResult.retry("missing", "the answer did not mention block 1")
    assert result.items[1].outcome is Outcome.QUEUED


def whole_call(code: str, message: str, result: str = "Failed") -> str:
    return (f"<SmarterU><Result>{result}</Result><Info/><Errors><Error><ErrorID>{code}</ErrorID>"
            f"<ErrorMessage>{message}</ErrorMessage></Error></Errors></SmarterU>")


@pytest.mark.parametrize(("code", "message", "verdict", "says"), [
    ("ULM:01", "The required permissions are not met to call the unenrollLearningModules method.",
     CallVerdict.FATAL, "administrators"),
    ("SU:02", "The API keys provided are not valid.", CallVerdict.FATAL, "AccountAPI or UserAPI key"),
    ("SU:01", "No POST data detected.", CallVerdict.FATAL, "https://"),
    ("ULM:05", "The unenrollLearningModules method supports up to 100 unenrollments per call.",
     CallVerdict.TOO_LARGE, "up to 100"),
    ("SU:99", "Something went wrong.", CallVerdict.RETRY, "Something went wrong."),
])
def test_whole_call_failures_are_classified_by_their_error_id(
    code: str, message: str, verdict: CallVerdict, says: str
) -> None:
    result = read(["1", "2"], whole_call(code, message))
    assert result.verdict is verdict
    assert result.code == code
    assert says in (result.message or "")


def test_a_fatal_error_is_fatal_even_when_result_says_success() -> None:
    assert read(["1"], whole_call("ULM:01", "no permission", "Success")).verdict is CallVerdict.FATAL


def test_a_429_is_a_throttle_with_its_retry_after_and_a_5xx_is_retried() -> None:
    throttled = read(["1"], "Too Many Requests", status=429, headers={"Retry-After": "2.5"})
    assert (throttled.verdict, throttled.retry_after) == (CallVerdict.THROTTLED, 2.5)
    assert read(["1"], "<html>oops</html>", status=502).verdict is CallVerdict.RETRY


HOSTILE_AND_MALFORMED = {
    "billion_laughs": BILLION_LAUGHS,
    "external_entity": EXTERNAL_ENTITY,
    "parameter_entity": '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><SmarterU/>',
    "truncated": VENDOR_APIS_EXAMPLE[: len(VENDOR_APIS_EXAMPLE) // 2],
    "html": "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "json": '{"Result": "Success"}',
    "empty": "",
    "no_result": "<SmarterU><Info/><Errors/></SmarterU>",
    "failed_without_reason": "<SmarterU><Result>Failed</Result><Info/><Errors/></SmarterU>",
    "block_out_of_range": VENDOR_APIS_EXAMPLE.replace('block="3"', 'block="9"'),
    "block_not_a_number": VENDOR_APIS_EXAMPLE.replace('block="3"', 'block="three"'),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_AND_MALFORMED))
def test_a_hostile_or_malformed_answer_fails_that_call_retryably_without_expanding(name: str) -> None:
    result = read(["123", "456", "789"], HOSTILE_AND_MALFORMED[name])
    assert result.verdict is CallVerdict.RETRY
    assert result.code == "unreadable"
    assert "lol" not in (result.message or "") and "root:" not in (result.message or "")


def test_a_billion_laughs_answer_is_named_as_hostile() -> None:
    result = read(["1"], BILLION_LAUGHS)
    assert "hostile" in (result.message or "")


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list("<>/=\"' &;!?[]SmarterUResultSuccessFailedErrorblock123")), max_size=300),
))
def test_reading_never_raises_whatever_the_body(body: bytes | str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    result = read_unenroll(T, ["1", "2"], HttpResponse(200, raw, {}))
    assert result.verdict is not CallVerdict.ANSWERED or len(result.items) == 2


def test_a_learner_report_reads_into_records() -> None:
    xml = """<SmarterU><Result>Success</Result><Info><LearnerReport>
      <Enrollment><ID>1</ID><Status>Enrolled</Status><CompletedDate>2025-01-02</CompletedDate></Enrollment>
      <Enrollment><ID>2</ID><Status>Unenrollment Queued</Status><CompletedDate/></Enrollment>
      </LearnerReport></Info><Errors/></SmarterU>"""
    records = read_learner_report(answer(xml))
    assert [(r.id, r.status, r.completed_date) for r in records] == [
        ("1", "Enrolled", "2025-01-02"), ("2", "Unenrollment Queued", "")]


# -- validation and configuration -----------------------------------------------------


@pytest.mark.parametrize(("item", "problem"), [
    (unenroll_item("x" * 101), "longer than 100"),
    (unenroll_item("12\n3"), "control character"),
    (unenroll_item("12\x003"), "control character"),
    (unenroll_item("\u200b1\x7f"), "control character"),
    (unenroll_item(" 123"), "spaces"),
    (Item("unenroll", ("course", "9"), "123"), "target"),
])
def test_ids_that_cannot_be_sent_are_rejected_with_the_reason(item: Item, problem: str) -> None:
    assert problem in (validate(item) or "")


@pytest.mark.parametrize("rel_id", ["123", "<&>\"'", "ID-42_x", "é日本"])
def test_printable_ids_are_accepted_and_escaped(rel_id: str) -> None:
    assert validate(unenroll_item(rel_id)) is None
    assert package_of([rel_id]).findtext(".//AccountUserLearningModuleRelID") == rel_id


@pytest.mark.parametrize(("url", "allow", "error"), [
    ("https://api.smarteru.com", False, None),
    ("http://api.smarteru.com", False, "HTTPS"),
    ("http://127.0.0.1:8081", False, "allow_insecure_http"),
    ("http://127.0.0.1:8081", True, None),
    ("http://localhost:8081", True, None),
    ("http://api.smarteru.com", True, "loopback"),
    ("ftp://api.smarteru.com", True, "https://"),
    ("api.smarteru.com", False, "https://"),
])
def test_only_https_unless_a_loopback_mock_is_allowed_explicitly(url: str, allow: bool, error: str | None) -> None:
    if error is None:
        check_base_url(url, allow_insecure_http=allow)
    else:
        with pytest.raises(ValueError, match=error):
            check_base_url(url, allow_insecure_http=allow)


async def test_the_adapter_refuses_a_plain_http_base_url() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="HTTPS"):
            SmarterU(session=session, base_url="http://api.smarteru.com", account_api_key="a", user_api_key="u")
    with pytest.raises(ValueError, match="HTTPS"):  # also for a client that owns its session
        SmarterU(base_url="http://api.smarteru.com", account_api_key="a", user_api_key="u")


def test_the_endpoint_learns_its_rate_unless_one_is_configured() -> None:
    learning = SmarterULimits().endpoint("apiv2", 0.01)
    assert isinstance(learning.make_limiter(), LearnedWindowLimiter)
    aimd = SmarterULimits(learn=0).endpoint("apiv2", 0.01)
    assert isinstance(aimd.make_limiter(), AdaptiveRateLimiter)
    fixed = SmarterULimits(calls_per_window=60, window=60.0).endpoint("apiv2", 0.01)
    assert isinstance(fixed.make_limiter(), RollingWindowLimiter)
    assert fixed.window == pytest.approx(0.6)


def test_a_vendor_message_is_kept_short() -> None:
    result = read(["1"], whole_call("SU:99", "x" * 100_000))
    assert result.verdict is CallVerdict.RETRY and len(result.message or "") <= 500


def _accepted(block: str, rel_id: str) -> str:
    return (f'<Unenrollment block="{block}"><AccountUserLearningModuleRelID>{rel_id}</AccountUserLearningModuleRelID>'
            "</Unenrollment>")


def _refused(block: str, code: str = "ULM:02") -> str:
    return (f'<Error block="{block}"><ErrorID>{code}</ErrorID>'
            f"<ErrorMessage>Unenrollment {block} - no</ErrorMessage></Error>")


@pytest.mark.parametrize(("accepted", "refused"), [
    ([("1", "a"), ("1", "a")], []),  # a block accepted twice
    ([("1", "a")], ["1"]),  # accepted and refused
    ([], ["2", "2"]),  # two errors for one block
    ([("1", "")], []),  # an acceptance that echoes no id
    ([(" 1 ", "a"), ("+2", "b")], []),  # not a plain number
    ([("\u0661", "a")], []),  # a digit Python reads, but not a block number
])
def test_blocks_that_contradict_or_cannot_be_matched_make_the_answer_unreadable(
    accepted: list[tuple[str, str]], refused: list[str]
) -> None:
    xml = (f"<SmarterU><Result>Success</Result><Info><Unenrollments>{''.join(_accepted(*a) for a in accepted)}"
           f"</Unenrollments></Info><Errors>{''.join(_refused(b) for b in refused)}</Errors></SmarterU>")
    result = read(["a", "b"], xml)
    assert (result.verdict, result.code, result.items) == (CallVerdict.RETRY, "unreadable", ())


def test_a_report_without_its_learner_report_or_with_an_unmatched_enrolment_is_unreadable() -> None:
    from unenroll.adapters.smarteru.adapter import read_report_page

    for info in ("<Info/>", "<Info><LearnerReport><Enrollment><Status>Enrolled</Status></Enrollment></LearnerReport>"
                 "</Info>", "<Info><LearnerReport><Enrollment><ID>1</ID><Status>Enrolled</Status></Enrollment>"
                 "<Enrollment><ID>1</ID><Status>Enrolled</Status></Enrollment></LearnerReport></Info>"):
        body = f"<SmarterU><Result>Success</Result>{info}<Errors/></SmarterU>".encode()
        result = read_report_page(T, ["1"], HttpResponse(200, body, {}))
        assert isinstance(result, CallResult) and (result.verdict, result.code) == (CallVerdict.RETRY, "unreadable")
