"""Zoho request building and answer reading, against the seeds' documented samples."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from unenroll import Item, Outcome
from unenroll.adapters.zoho import adapter as zoho
from unenroll.model import CallResult, CallVerdict, ItemVerdict
from unenroll.wire.http import HttpResponse

# seed 000: the documented answer of "Unenroll Learner From Batch"
SEED_UNENROLL_ANSWER = {
    "code": "200",
    "learners": [{"erecno": "219225000000185023", "learnerId": "219225000000653009",
                  "enrollmentStatus": "unenrolled", "batchId": "219225000000645203", "courseId": "219225000000645203"}],
    "message": "success",
}
# seed 001: "Remove Learner From Batch"
SEED_REMOVE_ANSWER = {"code": "200", "learnerId": "219225000000654043", "message": "success"}
# seed 004: "Share Course"
SEED_SHARE_ANSWER = {
    "sharedUsers": [{"erecno": "219225000000185023", "displayName": "Henry", "employeeId": "1001",
                     "emailId": "henry@zohotest.com", "displayPictureURL": "https://contacts.zoho.com/file?ID=1"}],
    "code": "200", "message": "success",
}
COURSE, BATCH = "478346000019479103", "478346000019479115"


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, raw, headers or {})


def test_unenroll_request_puts_a_json_array_of_erecnos_in_the_query() -> None:
    request = zoho.build_unenroll((COURSE, BATCH), ["478346000000248165", "478346000000248166"])
    assert request.method == "POST"
    assert request.path == f"/api/v1/courses/{COURSE}/batches/{BATCH}/unenroll"
    assert list(request.params) == [("erecnosList", "[478346000000248165,478346000000248166]")]
    assert request.form is None and request.json is None


def test_share_request_puts_the_list_in_a_form_body() -> None:
    request = zoho.build_share_course(("588882000000289003",), ["588882000000212025"])
    assert (request.method, request.path) == ("PUT", "/api/v1/courses/588882000000289003/share")
    assert list(request.form or []) == [("erecnosList", "[588882000000212025]")]


def test_remove_request_names_the_learner_in_the_path() -> None:
    request = zoho.build_remove_learner((COURSE, BATCH), ["478346000019558209"])
    assert (request.method, request.path) == (
        "DELETE", f"/api/v1/courses/{COURSE}/batches/{BATCH}/learners/478346000019558209")


def test_the_seed_answer_reads_as_unenrolled_and_absent_ids_as_not_enrolled() -> None:
    result = zoho.read_unenroll((COURSE, BATCH), ["219225000000185023", "219225000000185024"],
                                answer(200, SEED_UNENROLL_ANSWER))
    assert result.verdict is CallVerdict.ANSWERED
    assert [r.outcome for r in result.items] == [Outcome.UNENROLLED, Outcome.NOT_ENROLLED]


def test_remove_and_share_seed_answers() -> None:
    removed = zoho.read_remove_learner((COURSE, BATCH), ["219225000000654043"], answer(200, SEED_REMOVE_ANSWER))
    assert [r.outcome for r in removed.items] == [Outcome.UNENROLLED]
    gone = zoho.read_remove_learner((COURSE, BATCH), ["1"], answer(404, {"code": "404", "message": "Not found"}))
    assert [r.outcome for r in gone.items] == [Outcome.NOT_ENROLLED]
    shared = zoho.read_share_course(("1",), ["219225000000185023", "5"], answer(200, SEED_SHARE_ANSWER))
    assert [r.outcome for r in shared.items] == [Outcome.SHARED, Outcome.FAILED]
    assert shared.items[1].message is not None and "no such employee" in shared.items[1].message


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, {"code": "7209", "message": "API access blocked since threshold limit exceeded."}, CallVerdict.THROTTLED),
        (200, {"code": "7209", "message": "blocked"}, CallVerdict.THROTTLED),  # the code decides, whatever the status
        (429, b"", CallVerdict.THROTTLED),
        (401, {"code": "401", "message": "Invalid OAuth token"}, CallVerdict.AUTH_EXPIRED),
        (403, {"code": "403", "message": "Sorry! You are not authorized"}, CallVerdict.FATAL),
        (404, {"code": "404", "message": "Not found"}, CallVerdict.FAILED),
        (422, {"code": "422", "message": "Maximum limit exceeded"}, CallVerdict.TOO_LARGE),
        (414, b"<html>too long</html>", CallVerdict.TOO_LARGE),
        (400, {"code": "400", "message": "Invalid parameter value"}, CallVerdict.SPLIT),
        (500, {"code": "500", "message": "Sorry! Server error occured"}, CallVerdict.RETRY),
        (503, b"<html>unavailable</html>", CallVerdict.RETRY),
        (200, b'{"code": "200", "learn', CallVerdict.RETRY),  # truncated
        (200, b"<html><body>502 Bad Gateway</body></html>", CallVerdict.RETRY),
        (200, {"code": "200", "message": "success"}, CallVerdict.RETRY),  # no learners list
    ],
)
def test_whole_call_answers_are_classified_by_code_and_status(status: int, body: object, verdict: CallVerdict) -> None:
    result = zoho.read_unenroll((COURSE, BATCH), ["1", "2"], answer(status, body))
    assert result.verdict is verdict


def test_a_429_carries_its_retry_after() -> None:
    result = zoho.read_unenroll((COURSE, BATCH), ["1"], answer(429, b"", {"Retry-After": "7"}))
    assert result.retry_after == 7.0


def test_a_listed_erecno_with_an_unexpected_status_is_retried_not_guessed() -> None:
    body = {"code": "200", "learners": [{"erecno": "1", "enrollmentStatus": "enrolled"}]}
    result = zoho.read_unenroll((COURSE, BATCH), ["1"], answer(200, body))
    assert result.items[0].verdict is ItemVerdict.RETRY


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (Item("unenroll", (COURSE, BATCH), "12a"), "not a Zoho id"),
        (Item("unenroll", (COURSE, BATCH), "１２"), "not a Zoho id"),  # noqa: RUF001 (full-width digits on purpose)
        (Item("unenroll", (COURSE,), "12"), "course id and batch id"),
        (Item("unenroll", (COURSE, "x"), "12"), "target id 'x'"),
        (Item("share_course", (COURSE, BATCH), "12"), "the course id"),
    ],
)
def test_ids_that_are_not_zoho_ids_are_rejected_with_the_reason(item: Item, problem: str) -> None:
    reason = zoho.validate(item)
    assert reason is not None and problem in reason
    assert zoho.validate(Item("unenroll", (COURSE, BATCH), "478346000000248165")) is None


def test_the_url_size_estimate_is_never_below_the_real_url() -> None:
    base = "https://people.zoho.eu"
    subjects = [str(10**17 + i) for i in range(100)]
    request = zoho.build_unenroll((COURSE, BATCH), subjects)
    real = str(URL(base + request.path).with_query(list(request.params)))
    estimate = zoho.unenroll_url_base_bytes(base, (COURSE, BATCH)) + sum(map(zoho.unenroll_url_item_bytes, subjects))
    assert len(real) <= estimate
    assert dict(parse_qsl(urlsplit(real).query))["erecnosList"] == "[" + ",".join(subjects) + "]"


async def test_the_adapter_refreshes_its_token_and_sends_the_zoho_header() -> None:
    base, accounts = "https://people.zoho.com", "https://accounts.zoho.com"
    with aioresponses() as mocked:
        mocked.post(f"{accounts}/oauth/v2/token", payload={"access_token": "1000.tok", "expires_in": 3600})
        mocked.post(f"{base}/api/v1/courses/{COURSE}/batches/{BATCH}/unenroll?erecnosList=%5B1%5D",
                    payload=SEED_UNENROLL_ANSWER)
        async with aiohttp.ClientSession() as session:
            adapter = zoho.ZohoPeople(session=session, refresh_token="r3fresh-secret", client_id="cid",
                                      client_secret="s3cret-value")
            _, headers = await adapter.auth.headers()
            assert headers == {"Authorization": "Zoho-oauthtoken 1000.tok"}
            request = zoho.build_unenroll((COURSE, BATCH), ["1"])
            response = await adapter.transport.send(request, headers)
        assert response.status == 200
        token_call = next(v for k, v in mocked.requests.items() if str(k[1]).endswith("/oauth/v2/token"))
        form = token_call[0].kwargs["data"]
        assert form is not None
    assert "r3fresh-secret" not in repr(adapter) and "s3cret-value" not in repr(adapter.auth)


def test_the_adapter_needs_credentials_and_hides_them() -> None:
    with pytest.raises(ValueError, match="refresh_token"):
        zoho.ZohoPeople(transport=object())  # type: ignore[arg-type]
    adapter = zoho.ZohoPeople(transport=object(), access_token="1000.very-secret-token")  # type: ignore[arg-type]
    assert "very-secret" not in repr(adapter) and "very-secret" not in repr(adapter.auth)


def test_a_404_without_zohos_error_body_is_fatal_never_not_enrolled() -> None:
    """A wrong base URL must not make every learner read as "not enrolled" (exit 0)."""
    html = HttpResponse(404, b"<html>Not Found</html>", {})
    for read in (zoho.read_remove_learner, zoho.read_unenroll):
        result = read((COURSE, BATCH), ["1"], html)
        assert result.verdict is CallVerdict.FATAL and "base URL" in (result.message or "")
    zoho_404 = answer(404, {"code": "404", "message": "Learner not found"})
    assert zoho.read_remove_learner((COURSE, BATCH), ["1"], zoho_404).items[0].outcome is Outcome.NOT_ENROLLED


@pytest.mark.parametrize("bad", ["0070", "12345678901234567890"])
def test_ids_that_are_not_json_longs_are_rejected(bad: str) -> None:
    assert zoho.validate(Item("unenroll", (COURSE, BATCH), bad)) is not None


async def test_credentials_only_travel_over_https_or_to_this_machine() -> None:
    async with aiohttp.ClientSession() as session:
        creds = {"refresh_token": "r3fresh-secret", "client_id": "cid", "client_secret": "s3cret-value"}
        with pytest.raises(ValueError, match="https"):
            zoho.ZohoPeople(session=session, base_url="http://people.zoho.eu",
                            accounts_url="https://accounts.zoho.eu", **creds)
        with pytest.raises(ValueError, match="https"):
            zoho.ZohoPeople(session=session, base_url="https://people.zoho.eu",
                            accounts_url="http://accounts.zoho.eu", **creds)
        with pytest.raises(ValueError, match="real Zoho accounts server"):  # a rehearsal with production's token URL
            zoho.ZohoPeople(session=session, base_url="http://127.0.0.1:8080", **creds)
        zoho.ZohoPeople(session=session, base_url="http://127.0.0.1:8080", accounts_url="http://127.0.0.1:8080",
                        **creds)


def test_ids_above_a_java_long_are_rejected_before_sending_with_a_plain_reason() -> None:
    largest = "9223372036854775807"
    assert zoho.validate(Item("unenroll", (COURSE, BATCH), largest)) is None
    for item in (Item("unenroll", (COURSE, BATCH), "9223372036854775808"),
                 Item("remove_learner", (COURSE, BATCH), "9999999999999999999"),
                 Item("unenroll", (COURSE, "9223372036854775808"), "1")):
        reason = zoho.validate(item)
        assert reason is not None and f"larger than any Zoho id can be (at most {largest})" in reason
        assert "int" not in reason.split() and "long" not in reason  # no Python (or Java) words


@pytest.mark.parametrize("entry", [{"erecno": None}, {"learnerId": "5"}, "1", 1, None, {"erecno": "3"},
                                   {"erecno": 1.5}, {"erecno": True}])
def test_one_entry_that_cannot_be_matched_makes_a_list_answer_unreadable(entry: object) -> None:
    for read, name, target in ((zoho.read_unenroll, "learners", (COURSE, BATCH)),
                               (zoho.read_share_course, "sharedUsers", (COURSE,))):
        body = {"code": "200", name: [{"erecno": "2", "enrollmentStatus": "unenrolled"}, entry]}
        result = read(target, ["1", "2"], answer(200, body))
        assert (result.verdict, result.code, result.items) == (CallVerdict.RETRY, "unreadable", ())


def test_an_erecno_listed_twice_makes_the_answer_unreadable() -> None:
    entry = {"erecno": "1", "enrollmentStatus": "unenrolled"}
    result = zoho.read_unenroll((COURSE, BATCH), ["1", "2"], answer(200, {"code": "200", "learners": [entry, entry]}))
    assert (result.verdict, result.code) == (CallVerdict.RETRY, "unreadable")


@pytest.mark.parametrize("body", [{"code": "200", "message": "success"}, {"code": "200", "learnerId": "8"},
                                  {"code": "200", "learnerId": None}])
def test_a_removal_is_done_only_when_the_answer_names_the_learner_sent(body: object) -> None:
    result = zoho.read_remove_learner((COURSE, BATCH), ["7"], answer(200, body))
    assert (result.verdict, result.code) == (CallVerdict.RETRY, "unreadable")
    named = zoho.read_remove_learner((COURSE, BATCH), ["7"], answer(200, {"code": "200", "learnerId": 7}))
    assert [r.outcome for r in named.items] == [Outcome.UNENROLLED]


@pytest.mark.parametrize("junk", [{"erecno": None}, {"learnerId": "1"}, "7003", {"erecno": "7003"}])
def test_a_backup_page_with_a_record_that_cannot_be_matched_is_unreadable_not_a_missing_learner(junk: object) -> None:
    learners = [{"erecno": "7003", "learnerId": "1", "enrollmentStatus": "enrolled"}, junk]
    result = zoho.read_learners_page("erecno", (COURSE, BATCH), ["7003"], answer(200, {"code": "200",
                                                                                       "learners": learners}))
    assert isinstance(result, CallResult) and (result.verdict, result.code) == (CallVerdict.RETRY, "unreadable")
