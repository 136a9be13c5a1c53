"""Docebo request building and answer reading, without a network.

Samples follow ``shared/vendor-apis.md`` section 3 (the body of seed 003, the answer
layout we chose for the mock).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from unenroll import Item, Outcome
from unenroll.adapters.docebo import adapter as docebo
from unenroll.adapters.docebo.adapter import Docebo, DoceboLimits, DoceboOptions
from unenroll.model import CallVerdict, ItemVerdict
from unenroll.observe.secrets import Secret
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

COURSE = ("course", "10")
PLAN = ("learningplan", "5")
NO_FLAGS = DoceboOptions()
CASCADE = DoceboOptions(cascade_unenroll_from_courses_in_selected_learning_plan=True)

# vendor-apis.md 3: the documented answer layout, one user done, one not enrolled
SAMPLE_ANSWER = {
    "data": {"unenrolled": [{"user_id": 1, "course_id": 10}],
             "errors": [{"user_id": 2, "course_id": 10, "message": "User is not enrolled in the course"}]},
    "version": "1.0.0", "_links": [],
}


def answer(status: int, body: object, headers: Mapping[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, raw, dict(headers or {}))


def pairs_answer(done: list[Any], errors: list[Any] | None = None) -> HttpResponse:
    return answer(200, {"data": {"unenrolled": done, "errors": errors or []}, "version": "1.0.0", "_links": []})


def outcomes(result: Any) -> list[tuple[ItemVerdict, Outcome | None]]:
    return [(r.verdict, r.outcome) for r in result.items]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [COURSE, PLAN, ("course", "0"), ("learningplan", "123456789012")])
def test_course_and_plan_targets_with_digit_ids_are_valid(target: tuple[str, ...]) -> None:
    assert docebo.validate(NO_FLAGS, Item("unenroll", target, "12001")) is None


@pytest.mark.parametrize(("target", "subject", "words"), [
    (("course",), "1", "the target must be"),
    (("lp", "5"), "1", "the target must be"),
    (("course", "10", "x"), "1", "the target must be"),
    (("course", "ten"), "1", "course id 'ten'"),
    (("course", "10"), "u1", "user id 'u1'"),
    (("course", "10"), "١٢", "user id"),  # Arabic-Indic digits are digits to str.isdigit, not to Docebo
    (("course", "10"), "1" * 19, "user id"),
    (("course", "10"), "007", "write 7"),
])
def test_malformed_items_are_rejected_with_a_reason(target: tuple[str, ...], subject: str, words: str) -> None:
    problem = docebo.validate(NO_FLAGS, Item("unenroll", target, subject))
    assert problem is not None and words in problem


def test_cascade_on_rejects_course_items_and_accepts_plan_items() -> None:
    problem = docebo.validate(CASCADE, Item("unenroll", COURSE, "1"))
    assert problem is not None
    assert "learning plans only" in problem and docebo.CASCADE in problem
    assert docebo.validate(CASCADE, Item("unenroll", PLAN, "1")) is None


# -- requests -----------------------------------------------------------------------------


def test_course_request_is_a_delete_with_the_documented_body_and_flags_off() -> None:
    request = docebo.build_unenroll(NO_FLAGS, COURSE, ["1", "2"])
    assert (request.method, request.path) == ("DELETE", "/learn/v1/enrollments")
    assert request.json == {
        "user_ids": [1, 2], "course_ids": [10], "learningplan_ids": [],
        "reset_tracks": False,
        "cascade_unenroll_from_courses_in_selected_learning_plan": False,
        "delete_issued_certificates": False,
    }
    assert request.params == () and request.form is None


def test_plan_request_names_the_plan_and_carries_the_flags_that_are_on() -> None:
    options = DoceboOptions(True, True, True)
    body = docebo.build_unenroll(options, PLAN, ["7"]).json
    assert body["course_ids"] == [] and body["learningplan_ids"] == [5] and body["user_ids"] == [7]
    assert body["reset_tracks"] is body["delete_issued_certificates"] is True
    assert body["cascade_unenroll_from_courses_in_selected_learning_plan"] is True


def test_cascade_is_never_sent_with_a_course_even_if_built_directly() -> None:
    body = docebo.build_unenroll(CASCADE, COURSE, ["7"]).json
    assert body["cascade_unenroll_from_courses_in_selected_learning_plan"] is False


def test_building_is_pure() -> None:
    users = [str(u) for u in range(12_001, 13_001)]
    assert docebo.build_unenroll(NO_FLAGS, COURSE, users) == docebo.build_unenroll(NO_FLAGS, COURSE, users)


# -- reading pairs ------------------------------------------------------------------------


def test_the_documented_sample_reads_as_unenrolled_and_not_enrolled() -> None:
    result = docebo.read_unenroll(COURSE, ["1", "2"], answer(200, SAMPLE_ANSWER))
    assert result.verdict is CallVerdict.ANSWERED
    assert outcomes(result) == [(ItemVerdict.FINAL, Outcome.UNENROLLED), (ItemVerdict.FINAL, Outcome.NOT_ENROLLED)]
    assert result.items[1].message == "User is not enrolled in the course"


def test_pairs_with_learningplan_id_are_read_for_a_plan() -> None:
    response = pairs_answer(
        [{"user_id": 3, "learningplan_id": 5}],
        [{"user_id": 4, "learningplan_id": 5, "message": "User is not enrolled in the Learning Plan"}],
    )
    result = docebo.read_unenroll(PLAN, ["3", "4"], response)
    assert outcomes(result) == [(ItemVerdict.FINAL, Outcome.UNENROLLED), (ItemVerdict.FINAL, Outcome.NOT_ENROLLED)]


def test_a_pair_missing_from_the_answer_is_retried_not_done() -> None:
    result = docebo.read_unenroll(COURSE, ["1", "2", "3"], pairs_answer([{"user_id": 1, "course_id": 10}]))
    assert outcomes(result) == [
        (ItemVerdict.FINAL, Outcome.UNENROLLED), (ItemVerdict.RETRY, None), (ItemVerdict.RETRY, None)]
    assert result.items[1].code == "missing"


def test_not_found_fails_the_pair_with_the_vendors_message() -> None:
    response = pairs_answer([], [{"user_id": 1, "course_id": 10, "message": "The course was not found"},
                                 {"user_id": 2, "course_id": 10, "message": "User not found"}])
    result = docebo.read_unenroll(COURSE, ["1", "2"], response)
    assert outcomes(result) == [(ItemVerdict.FINAL, Outcome.FAILED)] * 2
    assert [r.code for r in result.items] == ["not_found", "not_found"]
    assert result.items[0].message == "The course was not found"


def test_other_pair_errors_fail_and_temporary_ones_retry() -> None:
    response = pairs_answer([], [{"user_id": 1, "course_id": 10, "message": "Enrollment is locked by an admin"},
                                 {"user_id": 2, "course_id": 10, "message": "Temporary error, try again"},
                                 {"user_id": 3, "course_id": 10}])
    result = docebo.read_unenroll(COURSE, ["1", "2", "3"], response)
    assert outcomes(result) == [
        (ItemVerdict.FINAL, Outcome.FAILED), (ItemVerdict.RETRY, None), (ItemVerdict.FINAL, Outcome.FAILED)]


def unreadable(result: Any) -> bool:
    return bool(result.verdict is CallVerdict.RETRY and result.code == "unreadable" and not result.items)


@pytest.mark.parametrize("pair", [
    {"user_id": 1, "course_id": 5},  # a course whose id equals the plan's
    {"user_id": 2, "learningplan_id": 6},  # another plan
    {"user_id": 3, "learningplan_id": 5, "course_id": 77},  # a course and a plan
    {"user_id": 9, "learningplan_id": 5},  # a user that was not sent
])
def test_a_pair_that_is_not_of_this_call_makes_the_answer_unreadable(pair: dict[str, int]) -> None:
    # issue 11: such pairs used to be skipped and the rest of the answer read; an answer naming what
    # was not sent is not the answer to this call, so nothing in it is concluded
    response = pairs_answer([pair, {"user_id": 4, "learningplan_id": 5}])
    assert unreadable(docebo.read_unenroll(PLAN, ["1", "2", "3", "4"], response))


def test_under_cascade_the_plans_courses_of_users_sent_are_side_effects_not_items() -> None:
    response = pairs_answer([{"user_id": 4, "learningplan_id": 5}, {"user_id": 4, "course_id": 77},
                             {"user_id": 4, "course_id": 5}])
    read = docebo.operations(CASCADE, DoceboLimits())["unenroll"].read_response
    assert outcomes(read(PLAN, ["4", "1"], response)) == [(ItemVerdict.FINAL, Outcome.UNENROLLED),
                                                          (ItemVerdict.RETRY, None)]
    assert unreadable(docebo.read_unenroll(PLAN, ["4", "1"], response))  # without cascade they are not ours
    unsent = pairs_answer([{"user_id": 4, "learningplan_id": 5}, {"user_id": 8, "course_id": 77}])
    assert unreadable(read(PLAN, ["4"], unsent))


def test_ids_given_as_strings_in_the_answer_still_match() -> None:
    result = docebo.read_unenroll(COURSE, ["1"], pairs_answer([{"user_id": "1", "course_id": "10"}]))
    assert outcomes(result) == [(ItemVerdict.FINAL, Outcome.UNENROLLED)]


def test_a_pair_in_both_lists_contradicts_itself_so_the_answer_is_unreadable() -> None:
    # issue 11: it used to count as unenrolled; an answer that says both is not well formed
    response = pairs_answer([{"user_id": 1, "course_id": 10}],
                            [{"user_id": 1, "course_id": 10, "message": "User is not enrolled in the course"}])
    assert unreadable(docebo.read_unenroll(COURSE, ["1"], response))


@pytest.mark.parametrize("junk", ["x", None, {"user_id": True, "course_id": 10}, {"course_id": 10},
                                  {"user_id": 2.5, "course_id": 10}, {"user_id": 1, "course_id": None}])
def test_a_junk_record_makes_the_whole_answer_unreadable(junk: object) -> None:
    # issue 11: junk used to be skipped and the other pairs read; one record that cannot be matched
    # makes the answer unreadable, so the well-formed pair beside it is not concluded either
    response = pairs_answer([{"user_id": 2, "course_id": 10}, junk])
    assert unreadable(docebo.read_unenroll(COURSE, ["1", "2"], response))


# -- reading whole calls ------------------------------------------------------------------


def whole(status: int, body: object, subjects: int = 2, headers: Mapping[str, str] | None = None) -> Any:
    return docebo.read_unenroll(COURSE, [str(i + 1) for i in range(subjects)], answer(status, body, headers))


def test_401_asks_for_a_token_refresh() -> None:
    result = whole(401, {"error": "invalid_token", "error_description": "The access token provided has expired"})
    assert result.verdict is CallVerdict.AUTH_EXPIRED
    assert result.message == "The access token provided has expired"


def test_403_stops_the_job() -> None:
    result = whole(403, {"name": "Forbidden", "message": "You are not allowed to perform this action"})
    assert result.verdict is CallVerdict.FATAL and "not authorised" in (result.message or "")


def test_429_is_a_throttle_with_the_vendors_retry_after() -> None:
    result = whole(429, {"message": "Too Many Requests"}, headers={"Retry-After": "17"})
    assert (result.verdict, result.retry_after) == (CallVerdict.THROTTLED, 17.0)
    assert whole(429, b"").retry_after is None  # the endpoint's lock period then applies


def test_a_rate_limit_body_is_a_throttle_whatever_the_status() -> None:
    result = whole(503, {"message": "Rate limit exceeded"}, headers={"Retry-After": "2.5"})
    assert (result.verdict, result.retry_after) == (CallVerdict.THROTTLED, 2.5)


def test_400_naming_the_cap_halves_the_chunk() -> None:
    result = whole(400, {"name": "Bad Request", "message": "Maximum 1000 users allowed per call"})
    assert result.verdict is CallVerdict.TOO_LARGE


def test_400_over_the_documented_cap_halves_the_chunk_whatever_the_message() -> None:
    assert whole(400, {"message": "Invalid request"}, subjects=1001).verdict is CallVerdict.TOO_LARGE


def test_other_400s_split_the_call_to_isolate_the_bad_item() -> None:
    assert whole(400, {"message": "Invalid user id"}).verdict is CallVerdict.SPLIT
    assert whole(400, b"<html>Bad Request</html>").verdict is CallVerdict.SPLIT


def test_409_a_concurrent_batch_call_is_sent_again() -> None:
    result = whole(409, {"name": "Conflict", "message": "Another bulk operation is in progress"})
    assert result.verdict is CallVerdict.RETRY and result.code == "409"


def test_a_whole_call_404_means_a_wrong_base_url_and_stops() -> None:
    assert whole(404, b"<html>Not Found</html>").verdict is CallVerdict.FATAL


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(status: int) -> None:
    assert whole(status, {"message": "Internal Server Error"}).verdict is CallVerdict.RETRY


@pytest.mark.parametrize("body", [
    b'{"data": {"unenrolled": [{"user_id": 1, "cou',
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"Service temporarily unavailable",
    {"data": {"errors": []}},
    {"data": []},
    {"unenrolled": []},
    [],
])
def test_a_malformed_200_is_retried(body: object) -> None:
    assert whole(200, body).verdict is CallVerdict.RETRY


# -- the adapter --------------------------------------------------------------------------


async def _no_network(request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
    raise AssertionError("no call expected")


def test_limits_space_calls_at_the_leak_rate_one_in_flight() -> None:
    spec = DoceboLimits().endpoint("unenroll", 0.001)
    assert spec.max_in_flight == 1 and spec.max_calls == 1000
    assert spec.min_interval == pytest.approx(3.6 * 0.001)
    assert spec.window == pytest.approx(3.6)
    assert DoceboLimits(min_interval=5.0).endpoint("u", 1.0).min_interval == 5.0


def test_the_flags_are_off_unless_set_and_recorded_as_destructive_options() -> None:
    transport = InProcessTransport(_no_network)
    plain = Docebo(base_url="http://x", transport=transport, access_token="t0ken-value")
    assert plain.operations["unenroll"].destructive_options == {
        docebo.RESET_TRACKS: False, docebo.CASCADE: False, docebo.DELETE_CERTIFICATES: False}
    armed = Docebo(base_url="http://x", transport=transport, access_token="t0ken-value", reset_tracks=True,
                   cascade_unenroll_from_courses_in_selected_learning_plan=True)
    assert armed.operations["unenroll"].destructive_options == {
        docebo.RESET_TRACKS: True, docebo.CASCADE: True, docebo.DELETE_CERTIFICATES: False}
    assert armed.operations["unenroll"].validate(Item("unenroll", COURSE, "1")) is not None
    assert armed.operations["unenroll"].max_items == 1000


async def test_tokens_come_from_the_same_host_with_the_grant_the_credentials_allow() -> None:
    seen: list[dict[str, str]] = []

    async def token_endpoint(request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        assert (request.method, request.path) == ("POST", "/oauth2/token")
        seen.append(dict(request.form or []))
        return answer(200, {"access_token": "abcd1234", "expires_in": 3600, "token_type": "Bearer"})

    transport = InProcessTransport(token_endpoint)
    client = Docebo(base_url="http://x", transport=transport, client_id="cid", client_secret="csecret")
    assert (await client.auth.headers())[1] == {"Authorization": "Bearer abcd1234"}
    user = Docebo(base_url="http://x", transport=transport, client_id="cid", client_secret=Secret("csecret"),
                  username="admin", password="pw-secret")
    await user.auth.headers()
    assert seen[0] == {"client_id": "cid", "client_secret": "csecret", "scope": "api",
                       "grant_type": "client_credentials"}
    assert seen[1]["grant_type"] == "password" and seen[1]["username"] == "admin"
    assert seen[1]["password"] == "pw-secret"


def test_credentials_never_print() -> None:
    client = Docebo(base_url="http://x", transport=InProcessTransport(_no_network), client_id="cid",
                    client_secret="s3cret-value", username="admin", password="pa55word-value")
    text = repr(client) + repr(client.auth) + str(vars(client))
    assert "s3cret-value" not in text and "pa55word-value" not in text


def test_missing_credentials_are_refused_at_construction() -> None:
    transport = InProcessTransport(_no_network)
    with pytest.raises(ValueError, match="client_id"):
        Docebo(base_url="http://x", transport=transport)
    with pytest.raises(ValueError, match="username and password"):
        Docebo(base_url="http://x", transport=transport, client_id="c", client_secret="s", username="u")


def test_every_docebo_endpoint_draws_on_one_limiter_since_the_limit_is_per_ip() -> None:
    adapter = docebo.Docebo(base_url="https://acme.docebosaas.com", transport=object(),  # type: ignore[arg-type]
                            access_token="t0ken-value-long")
    limiters = {spec.make_limiter() for spec in adapter.endpoints.values()}
    assert len(adapter.endpoints) == 2 and len(limiters) == 1


@pytest.mark.parametrize("junk", ["x", None, {"user_id": None, "course_id": 100}, {"user_id": 12001},
                                  {"user_id": 1.5, "course_id": 100},
                                  {"user_id": 12001, "course_id": 100, "status": "enrolled"}])  # listed twice
def test_a_backup_page_with_a_row_that_cannot_be_matched_is_unreadable_not_a_missing_user(junk: object) -> None:
    rows = [{"user_id": 12001, "course_id": 100, "status": "enrolled"}, junk]
    result = docebo.read_page(("course", "100"), ["12001"],
                              answer(200, {"data": {"items": rows, "has_more_data": False}}))
    assert (getattr(result, "verdict", None), getattr(result, "code", None)) == (CallVerdict.RETRY, "unreadable")


def test_a_course_is_counted_in_one_call_from_total_count_and_never_guessed() -> None:
    request = docebo.build_count(("course", "101"))
    assert request.method == "GET" and ("course_id[]", "101") in request.params and ("page_size", "1") in request.params
    plan = docebo.build_count(("learningplan", "7"))
    assert ("learningplan_id[]", "7") in plan.params
    target = ("course", "101")
    assert docebo.read_count(target, answer(200, {"data": {"items": [], "total_count": 40}})) == 40
    assert docebo.read_count(target, answer(200, {"data": {"items": [], "total_count": 0}})) == 0
    for body in ({"data": {"items": []}}, {"data": {"total_count": True}}, {"data": {"total_count": -1}},
                 {"data": {"total_count": "40"}}, [], {"data": {"total_count": 4.5}}):
        unread = docebo.read_count(target, answer(200, body))
        assert not isinstance(unread, int) and unread.verdict is CallVerdict.RETRY, body  # sent again, never guessed
    throttled = docebo.read_count(target, answer(429, {"message": "Too Many Requests"}, {"Retry-After": "3"}))
    assert not isinstance(throttled, int) and throttled.verdict is CallVerdict.THROTTLED
