"""Backups before a job: each vendor's reader (pure), the engine's runner (limits, retries,
throttles, token refresh, failures), and whole backups against the mocks on loopback.

Time is scaled by 0.01 against the mocks (a Zoho minute is 0.6 s, Docebo's 3.6 s spacing
is 36 ms) and by 0.001 for the runner's in-process tests.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import anyio
import pytest

from tests.conftest import FAST_RETRY, TIME_SCALE, zoho_rig
from unenroll import EndpointSpec, Item, ItemOutcome, JobSettings, Operation, Outcome, RetryPolicy, Secret, run
from unenroll.accounts.journal import Journal, JournalError
from unenroll.adapters.docebo import adapter as docebo
from unenroll.adapters.docebo.adapter import Docebo, DoceboLimits
from unenroll.adapters.docebo.mock import DoceboMock, DoceboMockConfig, DoceboMockState
from unenroll.adapters.smarteru import adapter as smarteru
from unenroll.adapters.smarteru.adapter import ApiKeys, SmarterU
from unenroll.adapters.smarteru.mock import REPORT_STATUS, SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.adapters.zoho import adapter as zoho
from unenroll.adapters.zoho.adapter import ZohoPeople
from unenroll.adapters.zoho.mock import ZohoMockConfig, ZohoMockState
from unenroll.contract.declarations import EnrolmentReader, ReadPage
from unenroll.contract.mock import Faults, Latency
from unenroll.model import CallResult, CallVerdict, ItemResult
from unenroll.planning.backup import (
    BackupError,
    BackupPlan,
    BackupResult,
    plan_backup,
    reconcile_refusals,
    run_backup,
    settled_by_backup,
)
from unenroll.planning.durations import format_duration
from unenroll.planning.plan import make_plan
from unenroll.wire.auth import NoAuth
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

COURSE, BATCH = "5000000000000", "5000000000001"
ZOHO_TARGET = (COURSE, BATCH)
SECRET_TOKEN = "tok-very-secret-value"


def json_answer(status: int, body: object, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode(), headers or {})


def read_lines(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The backup file by (operation, target, subject); every key appears once."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(line["operation"], line["target"], line["subject"]) for line in lines]
    assert len(keys) == len(set(keys))
    return dict(zip(keys, lines, strict=True))


# -- Zoho reader (pure) -------------------------------------------------------------------


def zoho_learner(erecno: int) -> dict[str, str]:
    return {"erecno": str(erecno), "learnerId": str(erecno + 10**12), "enrollmentStatus": "enrolled",
            "completionStatus": "completed"}


def test_zoho_pages_a_batch_by_start_index_25_a_call() -> None:
    request = zoho.build_read_learners(ZOHO_TARGET, ["7"], 2)
    assert (request.method, request.path) == ("GET", f"/api/v1/courses/{COURSE}/batches/{BATCH}/learners")
    assert list(request.params) == [("startIndex", "50")]


def test_zoho_keeps_the_targeted_learners_of_a_page_and_a_full_page_means_more() -> None:
    page = [zoho_learner(7000 + n) for n in range(25)]
    answer = json_answer(200, {"code": "200", "message": "success", "learners": page})
    by_erecno = zoho.read_learners_page("erecno", ZOHO_TARGET, ["7003", "7024", "9999"], answer)
    assert isinstance(by_erecno, ReadPage)
    assert by_erecno.more and set(by_erecno.records) == {"7003", "7024"}
    assert by_erecno.records["7003"] == page[3]
    learner_id = str(7005 + 10**12)
    by_learner = zoho.read_learners_page("learnerId", ZOHO_TARGET, [learner_id], answer)
    assert isinstance(by_learner, ReadPage) and by_learner.records[learner_id]["erecno"] == "7005"
    short = zoho.read_learners_page("erecno", ZOHO_TARGET, ["7003"],
                                    json_answer(200, {"code": "200", "learners": page[:3]}))
    assert isinstance(short, ReadPage) and not short.more


def test_zoho_an_unknown_batch_enrols_nobody() -> None:
    answer = json_answer(404, {"code": "404", "message": "Course or batch not found"})
    page = zoho.read_learners_page("erecno", ZOHO_TARGET, ["7"], answer)
    assert page == ReadPage({}, more=False, listed=0)  # a batch that holds no one


@pytest.mark.parametrize(("status", "body", "verdict"), [
    (400, {"code": "7209", "message": "API access blocked"}, CallVerdict.THROTTLED),
    (401, {"code": "401", "message": "Invalid OAuth token"}, CallVerdict.AUTH_EXPIRED),
    (403, {"code": "403", "message": "no scope"}, CallVerdict.FATAL),
    (500, {"code": "500", "message": "Sorry! Server error occured"}, CallVerdict.RETRY),
    (200, {"code": "200", "message": "success"}, CallVerdict.RETRY),  # no learners: not the documented JSON
])
def test_zoho_read_whole_call_verdicts(status: int, body: object, verdict: CallVerdict) -> None:
    result = zoho.read_learners_page("erecno", ZOHO_TARGET, ["7"], json_answer(status, body))
    assert isinstance(result, CallResult) and result.verdict is verdict


def test_zoho_plan_is_a_page_per_25_targeted_learners_and_says_it_is_a_lower_bound() -> None:
    assert [zoho.plan_read_learners(ZOHO_TARGET, n) for n in (1, 25, 26, 100_000)] == [1, 1, 2, 4000]
    reader = zoho.readers()["unenroll"]
    assert reader.endpoint == zoho.READ_LEARNERS and not reader.plan_is_exact and reader.max_subjects is None
    assert "share_course" not in zoho.readers()


# -- SmarterU reader (pure) ---------------------------------------------------------------

KEYS = ApiKeys.of("account-key-secret", "user-key-secret")


def report_xml(enrollments: Sequence[tuple[str, str, str]], result: str = "Success", errors: str = "") -> bytes:
    rows = "".join(f"<Enrollment><ID>{i}</ID><Status>{s}</Status><CompletedDate>{d}</CompletedDate></Enrollment>"
                   for i, s, d in enrollments)
    return (f"<SmarterU><Result>{result}</Result><Info><LearnerReport>{rows}</LearnerReport></Info>"
            f"<Errors>{errors}</Errors></SmarterU>").encode()


def test_smarteru_reads_a_filtered_learner_report_and_never_prints_the_keys() -> None:
    reader = smarteru.readers(KEYS)["unenroll"]
    request = reader.build_page(smarteru.ACCOUNT_TARGET, ["11", "a<b"], 0)
    assert request.form is not None
    package = dict(request.form)["Package"]
    assert "<Method>getLearnerReport</Method>" in package
    assert "<ID>11</ID><ID>a&lt;b</ID>" in package
    assert "secret" not in repr(request) and reader.max_subjects == 100
    assert [reader.plan_calls(smarteru.ACCOUNT_TARGET, n) for n in (1, 100, 101)] == [1, 1, 2]


def test_smarteru_keeps_the_targeted_enrolments_and_an_unlisted_id_is_absent() -> None:
    body = report_xml([("11", "Enrolled", ""), ("12", "Unenrollment Queued", "2025-03-01"), ("99", "Enrolled", "")])
    page = smarteru.read_report_page(smarteru.ACCOUNT_TARGET, ["11", "12", "13"], HttpResponse(200, body))
    assert isinstance(page, ReadPage) and not page.more
    assert page.records == {"11": {"ID": "11", "Status": "Enrolled", "CompletedDate": ""},
                            "12": {"ID": "12", "Status": "Unenrollment Queued", "CompletedDate": "2025-03-01"}}


@pytest.mark.parametrize(("response", "verdict"), [
    (HttpResponse(200, report_xml([], "Failed", "<Error><ErrorID>GLR:01</ErrorID><ErrorMessage>no</ErrorMessage>"
                                                "</Error>")), CallVerdict.FATAL),
    (HttpResponse(200, report_xml([], "Failed", "<Error><ErrorID>SU:02</ErrorID><ErrorMessage>keys</ErrorMessage>"
                                                "</Error>")), CallVerdict.FATAL),
    (HttpResponse(200, report_xml([], "Failed", "<Error><ErrorID>X:1</ErrorID><ErrorMessage>busy</ErrorMessage>"
                                                "</Error>")), CallVerdict.RETRY),
    (HttpResponse(429, b"Too Many Requests", {"Retry-After": "2"}), CallVerdict.THROTTLED),
    (HttpResponse(200, b"<SmarterU><Result>Succ"), CallVerdict.RETRY),
    (HttpResponse(200, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><SmarterU/>'), CallVerdict.RETRY),
])
def test_smarteru_read_whole_call_verdicts(response: HttpResponse, verdict: CallVerdict) -> None:
    result = smarteru.read_report_page(smarteru.ACCOUNT_TARGET, ["11"], response)
    assert isinstance(result, CallResult) and result.verdict is verdict
    if verdict is CallVerdict.THROTTLED:
        assert result.retry_after == 2.0


# -- Docebo reader (pure) -----------------------------------------------------------------


def test_docebo_filters_by_users_and_the_target_200_a_page_counting_pages_from_1() -> None:
    course = docebo.build_read_page(("course", "100"), ["12001", "12002"], 0)
    assert (course.method, course.path) == ("GET", "/learn/v1/enrollments")
    assert list(course.params) == [("user_id[]", "12001"), ("user_id[]", "12002"), ("course_id[]", "100"),
                                   ("page", "1"), ("page_size", "200")]
    plan = docebo.build_read_page(("learningplan", "10"), ["12001"], 2)
    assert ("learningplan_id[]", "10") in plan.params and ("page", "3") in plan.params
    reader = docebo.readers()["unenroll"]
    assert reader.max_subjects == 100 and reader.plan_is_exact
    assert [reader.plan_calls(("course", "1"), n) for n in (1, 100, 250)] == [1, 1, 3]


def test_docebo_keeps_the_rows_of_the_target_and_users_asked_for() -> None:
    rows = [{"user_id": 12001, "course_id": 100, "status": "completed", "completion_date": "2024-01-01 00:00:00"},
            {"user_id": 12002, "course_id": 101, "status": "enrolled", "completion_date": None},  # another course
            {"user_id": 12003, "course_id": 100, "status": "enrolled", "completion_date": None}]  # not asked for
    answer = json_answer(200, {"data": {"items": rows, "has_more_data": True, "current_page": 1}})
    page = docebo.read_page(("course", "100"), ["12001", "12002"], answer)
    assert isinstance(page, ReadPage) and page.more and page.records == {"12001": rows[0]}


@pytest.mark.parametrize(("response", "verdict"), [
    (json_answer(429, {"message": "Rate limit exceeded"}, {"Retry-After": "3"}), CallVerdict.THROTTLED),
    (json_answer(401, {"error": "invalid_token"}), CallVerdict.AUTH_EXPIRED),
    (json_answer(403, {"message": "forbidden"}), CallVerdict.FATAL),
    (json_answer(502, {"message": "bad gateway"}), CallVerdict.RETRY),
    (json_answer(200, {"data": {"items": "nope"}}), CallVerdict.RETRY),
    (HttpResponse(200, b"<html>502</html>"), CallVerdict.RETRY),
])
def test_docebo_read_whole_call_verdicts(response: HttpResponse, verdict: CallVerdict) -> None:
    result = docebo.read_page(("course", "100"), ["12001"], response)
    assert isinstance(result, CallResult) and result.verdict is verdict


# -- the plan -----------------------------------------------------------------------------


def fake_zoho(handler: Any = None, *, auth: Any = None, time_scale: float = 1.0) -> ZohoPeople:
    async def unused(request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        raise AssertionError("no call expected")

    return ZohoPeople(transport=InProcessTransport(handler or unused), auth=auth or CountingAuth(),
                      time_scale=time_scale)


def test_backing_up_100000_zoho_learners_costs_4000_calls_and_over_two_hours() -> None:
    targets: dict[tuple[str, tuple[str, ...]], int] = {
        ("unenroll", (COURSE, str(int(BATCH) + b))): 10_000 for b in range(10)}
    plan = plan_backup(fake_zoho(), targets)
    assert isinstance(plan, BackupPlan)
    assert plan.calls == {"read_learners": 4000} and not plan.exact
    assert plan.seconds == 133 * 60.0 > 2 * 3600
    text = plan.describe()
    assert text.splitlines()[0] == ("backup reads: at least 4,000 calls on zoho read_learners, "
                                    "taking at least 2 h 13 min at 30 calls/1 min")
    assert "batch" in text  # says why it is a lower bound


def test_the_plan_of_an_exact_reader_and_of_nothing() -> None:
    adapter = Docebo(base_url="https://x.docebosaas.com", transport=InProcessTransport(_never), access_token="t")
    plan = plan_backup(adapter, {("unenroll", ("course", "1")): 250, ("unenroll", ("learningplan", "2")): 1})
    assert plan.calls == {"read_enrollments": 4} and plan.exact
    assert plan.seconds == pytest.approx(3 * 3.6)
    assert plan.describe() == ("backup reads: 4 calls on docebo read_enrollments, taking at least 10.8 s at "
                               "1,000 calls/1 h, one every 3.6 s")
    assert plan_backup(adapter, {}).describe() == "backup reads: nothing to read"
    unlimited = SmarterU(account_api_key="a-key", user_api_key="u-key", transport=InProcessTransport(_never))
    assert "no documented rate limit" in plan_backup(unlimited, {("unenroll", ("account",)): 5}).describe()


def test_the_job_plan_and_the_backup_plan_say_a_duration_the_same_way() -> None:
    adapter = Docebo(base_url="https://x.docebosaas.com", transport=InProcessTransport(_never), access_token="t")
    job_plan = make_plan(adapter, [Item("unenroll", ("course", "1"), "5")])
    assert job_plan.limits["unenroll"] == "1,000 calls per 1 h, one every 3.6 s, 1 in flight"
    assert [format_duration(s) for s in (10.8, 45.0, 192.0, 3600.0, 7980.0)] == [
        "10.8 s", "45 s", "3 min 12 s", "1 h", "2 h 13 min"]


async def _never(request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
    raise AssertionError("no call expected")


async def test_an_operation_without_a_read_cannot_be_backed_up_and_nothing_is_called(tmp_path: Path) -> None:
    adapter = fake_zoho()
    with pytest.raises(BackupError, match="share_course"):
        plan_backup(adapter, {("share_course", (COURSE,)): 3})
    with pytest.raises(BackupError, match="share_course"):
        await run_backup(adapter, [Item("share_course", (COURSE,), "7001")], tmp_path / "b.jsonl")
    assert not (tmp_path / "b.jsonl").exists() and not (tmp_path / "b.jsonl.partial").exists()


# -- the runner, in process ---------------------------------------------------------------


class CountingAuth:
    """Tokens that change on each refresh; the current one is the only one a fake accepts."""

    def __init__(self) -> None:
        self.generation = 1
        self.refreshes = 0

    @property
    def token(self) -> str:
        return f"{SECRET_TOKEN}-{self.generation}"

    async def headers(self) -> tuple[int, Mapping[str, str]]:
        token = Secret(self.token)  # as the real ones hold it: known to the scrubber
        return self.generation, {"Authorization": f"Zoho-oauthtoken {token.reveal()}"}

    async def refresh(self, generation: int) -> bool:
        self.refreshes += 1
        self.generation += 1
        return True


class FakeZohoBatch:
    """One Zoho batch of ``size`` learners served 25 a page; ``script`` answers the first
    calls instead (a status and body each), then pages are served."""

    def __init__(self, size: int, script: Sequence[tuple[int, object]] = ()) -> None:
        self.learners = [zoho_learner(7000 + n) for n in range(size)]
        self.script = list(script)
        self.calls: list[int] = []  # startIndex of each call

    async def __call__(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        start = int(dict(request.params)["startIndex"])
        self.calls.append(start)
        if self.script:
            status, body = self.script.pop(0)
            return json_answer(status, body)
        return json_answer(200, {"code": "200", "message": "success", "learners": self.learners[start : start + 25]})


async def test_the_runner_pages_to_a_short_page_and_writes_absent_and_invalid_items_as_null(tmp_path: Path) -> None:
    batch = FakeZohoBatch(60)
    items = [Item("unenroll", ZOHO_TARGET, s) for s in ("7010", "7059", "7010", "6999", "x1")]
    result = await run_backup(fake_zoho(batch, time_scale=0.001), items, tmp_path / "b.jsonl")
    assert isinstance(result, BackupResult)
    assert batch.calls == [0, 25, 50]  # the short page ends it (6999 is never found)
    assert (result.records, result.found, result.calls, result.path) == (4, 2, 3, tmp_path / "b.jsonl")
    lines = read_lines(result.path)
    target = "/".join(ZOHO_TARGET)
    assert lines[("unenroll", target, "7010")] == {"vendor": "zoho", "operation": "unenroll", "target": target,
                                                   "subject": "7010", "record": zoho_learner(7010)}
    assert lines[("unenroll", target, "6999")]["record"] is None
    invalid = lines[("unenroll", target, "x1")]
    assert invalid["record"] is None and "digits" in invalid["invalid"]
    assert not (tmp_path / "b.jsonl.partial").exists()


async def test_paging_stops_once_every_targeted_learner_is_found(tmp_path: Path) -> None:
    batch = FakeZohoBatch(500)
    items = [Item("unenroll", ZOHO_TARGET, str(7000 + n)) for n in range(30)]
    result = await run_backup(fake_zoho(batch, time_scale=0.001), items, tmp_path / "b.jsonl")
    assert batch.calls == [0, 25] and result.found == 30


async def test_a_lock_pauses_a_401_refreshes_once_and_a_5xx_is_retried(tmp_path: Path) -> None:
    auth = CountingAuth()
    lock = {"code": "7209", "message": "API access blocked since threshold limit exceeded"}
    batch = FakeZohoBatch(10, [(400, lock), (401, {"code": "401", "message": "Invalid OAuth token"}),
                               (500, {"code": "500", "message": "Sorry! Server error occured"})])
    adapter = fake_zoho(batch, auth=auth, time_scale=0.001)
    result = await run_backup(adapter, [Item("unenroll", ZOHO_TARGET, "7003")], tmp_path / "b.jsonl",
                              retry=FAST_RETRY)
    assert (result.calls, result.found, auth.refreshes) == (4, 1, 1)
    assert SECRET_TOKEN not in (tmp_path / "b.jsonl").read_text()


async def test_a_read_that_keeps_failing_stops_the_backup_leaving_only_a_partial_file(tmp_path: Path) -> None:
    batch = FakeZohoBatch(10, [(503, {"code": "503", "message": "down"})] * 10)
    adapter = fake_zoho(batch, time_scale=0.001)
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
    with pytest.raises(BackupError, match="gave up after 3 failed sends"):
        await run_backup(adapter, [Item("unenroll", ZOHO_TARGET, "7003")], tmp_path / "b.jsonl", retry=retry)
    assert len(batch.calls) == 3
    assert not (tmp_path / "b.jsonl").exists() and (tmp_path / "b.jsonl.partial").exists()


async def test_refused_credentials_stop_the_backup_at_once_and_name_no_secret(tmp_path: Path) -> None:
    unauthorised = (401, {"code": "401", "message": f"Invalid OAuth token {SECRET_TOKEN}-1"})
    batch = FakeZohoBatch(10, [unauthorised, unauthorised])
    auth = CountingAuth()
    with pytest.raises(BackupError) as caught:
        await run_backup(fake_zoho(batch, auth=auth, time_scale=0.001), [Item("unenroll", ZOHO_TARGET, "7003")],
                         tmp_path / "b.jsonl", retry=FAST_RETRY)
    assert len(batch.calls) == 2 and auth.refreshes == 1  # one refresh per call, then it stops
    assert "401" in str(caught.value) and SECRET_TOKEN not in str(caught.value)


async def test_a_fatal_answer_stops_the_backup(tmp_path: Path) -> None:
    batch = FakeZohoBatch(10, [(403, {"code": "403", "message": "Not authorised"})])
    with pytest.raises(BackupError, match=r"ZOHOPEOPLE\.training\.ALL"):
        await run_backup(fake_zoho(batch, time_scale=0.001), [Item("unenroll", ZOHO_TARGET, "7003")],
                         tmp_path / "b.jsonl", retry=FAST_RETRY)
    assert batch.calls == [0]


# -- against the mocks on loopback --------------------------------------------------------


def zoho_expected(state: ZohoMockState, item: Item) -> dict[str, str] | None:
    learners = state.batches.get((item.target[0], item.target[1]), {})
    erecno = item.subject if item.operation == "unenroll" else next(
        (e for e, lid in learners.items() if lid == item.subject), None)
    if erecno is None or erecno not in learners:
        return None
    return {"erecno": erecno, "learnerId": learners[erecno], "enrollmentStatus": "enrolled",
            "completionStatus": "in_progress"}


async def test_a_zoho_backup_matches_the_mock_for_every_targeted_item(tmp_path: Path) -> None:
    state = ZohoMockState.generate(courses=1, batches_per_course=3, learners_per_batch=60)
    (first, second, third) = list(state.batches)
    some = sorted(state.batches[first])[::7]
    items = [Item("unenroll", first, e) for e in some]
    items += [Item("unenroll", first, "7999999999999"), Item("unenroll", first, some[0])]  # absent, repeated
    items += [Item("remove_learner", second, lid) for lid in sorted(state.batches[second].values())[-5:]]
    items += [Item("unenroll", third, e) for e in state.batches[third]]  # the whole batch
    items += [Item("unenroll", (first[0], "5000000000999"), "7000000000001")]  # an unknown batch
    config = ZohoMockConfig(time_scale=TIME_SCALE, faults=Faults(server_error=0.2, truncated=0.1, html=0.1),
                            seed=5)
    targets = Counter((i.operation, i.target) for i in dict.fromkeys(items))
    async with zoho_rig(config, state) as rig:
        plan = plan_backup(rig.adapter, targets)
        result = await run_backup(rig.adapter, items, tmp_path / "zoho.jsonl", retry=FAST_RETRY, seed=1)
        all_stats = await rig.stats()
    stats = all_stats["endpoints"]["read_learners"]
    assert sum(all_stats["faults"].values()) >= 1  # and each was read again
    lines = read_lines(result.path)
    distinct = list(dict.fromkeys(items))
    assert set(lines) == {(i.operation, "/".join(i.target), i.subject) for i in distinct}
    for item in distinct:
        assert lines[(item.operation, "/".join(item.target), item.subject)]["record"] == zoho_expected(state, item)
    assert result.records == len(distinct) and result.found == len(distinct) - 2
    assert stats["calls"] == result.calls and stats["lock_events"] == 0
    assert plan.calls["read_learners"] <= result.calls and not plan.exact


async def test_a_zoho_backup_bigger_than_a_window_keeps_to_30_calls_in_any_rolling_minute(tmp_path: Path) -> None:
    state = ZohoMockState.generate(courses=1, batches_per_course=2, learners_per_batch=600)
    items = [Item("unenroll", key, e) for key, learners in state.batches.items() for e in learners]
    config = ZohoMockConfig(time_scale=TIME_SCALE, latency=Latency(base=0.5, jitter=0.5))
    async with zoho_rig(config, state) as rig:
        plan = plan_backup(rig.adapter, Counter((i.operation, i.target) for i in items))
        result = await run_backup(rig.adapter, items, tmp_path / "zoho.jsonl", retry=FAST_RETRY)
        stats = (await rig.stats())["endpoints"]["read_learners"]
    assert result.calls == 48 == plan.calls["read_learners"]  # every learner targeted: the bound is met
    assert result.found == 1200
    assert stats["calls"] == 48 and stats["max_in_rolling_window"] <= 30 and stats["lock_events"] == 0


@asynccontextmanager
async def smarteru_rig(config: SmarterUMockConfig, state: SmarterUMockState,
                       user_api_key: str = SmarterUMockConfig().user_api_key) -> AsyncIterator[SmarterU]:
    mock = SmarterUMock(config, state)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        yield SmarterU(session=session, base_url=server.url, allow_insecure_http=True,
                       account_api_key=config.account_api_key, user_api_key=user_api_key,
                       time_scale=config.time_scale, timeout=5.0)


async def test_a_smarteru_backup_matches_the_mock_and_costs_what_was_planned(tmp_path: Path) -> None:
    state = SmarterUMockState.generate(230, 20, seed=2)
    ids = [*list(state.enrollments)[::-1], "9000001", "9000002"]  # 252: three calls of up to 100
    items = [smarteru.unenroll_item(i) for i in ids]
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=36_000.0)  # nothing leaves the queue mid-test
    async with smarteru_rig(config, state) as adapter:
        plan = plan_backup(adapter, {("unenroll", smarteru.ACCOUNT_TARGET): len(items)})
        result = await run_backup(adapter, items, tmp_path / "smarteru.jsonl", retry=FAST_RETRY)
    assert plan.calls == {"apiv2": 3} and plan.exact
    lines = read_lines(result.path)
    for rel_id in ids:
        record = lines[("unenroll", "account", rel_id)]["record"]
        if rel_id not in state.enrollments:
            assert record is None
        else:
            assert record == {"ID": rel_id, "Status": REPORT_STATUS[state.enrollments[rel_id]],
                              "CompletedDate": state.completed.get(rel_id, "")}
    assert (result.records, result.found, result.calls) == (252, 250, 3)


async def test_a_smarteru_429_pauses_the_backup_until_its_retry_after(tmp_path: Path) -> None:
    state = SmarterUMockState.generate(300, seed=2)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, rate_limit=1, rate_window=20.0)  # one call per 0.2 s
    mock = SmarterUMock(config, state)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        adapter = SmarterU(session=session, base_url=server.url, allow_insecure_http=True,
                           account_api_key=config.account_api_key, user_api_key=config.user_api_key,
                           time_scale=TIME_SCALE)
        result = await run_backup(adapter, [smarteru.unenroll_item(i) for i in state.enrollments],
                                  tmp_path / "b.jsonl", retry=FAST_RETRY)
        async with session.get(server.url + "/__mock__/stats?state=0") as answer:
            stats = await answer.json()
    assert result.found == 300 and mock.calls["getLearnerReport"] == 3
    assert stats["throttled_429"] >= 1
    assert result.calls == 3 + stats["throttled_429"]  # each refused call was sent again, after its pause


async def test_a_smarteru_user_without_permission_stops_the_backup_naming_no_key(tmp_path: Path) -> None:
    config = SmarterUMockConfig(time_scale=TIME_SCALE)
    async with smarteru_rig(config, SmarterUMockState.generate(5), config.non_admin_user_api_key) as adapter:
        with pytest.raises(BackupError, match="GLR:01") as caught:
            await run_backup(adapter, [smarteru.unenroll_item("1000001")], tmp_path / "b.jsonl")
    assert config.non_admin_user_api_key not in str(caught.value)
    assert config.account_api_key not in str(caught.value)
    assert not (tmp_path / "b.jsonl").exists()


async def test_a_docebo_backup_matches_the_mock_and_costs_what_was_planned(tmp_path: Path) -> None:
    state = DoceboMockState.generate(courses=2, plans=1, courses_per_plan=1, users_per_target=120, seed=3)
    population = [str(u) for u in range(12_001, 12_001 + 150)]  # some enrolled in each target, some not
    targets = [("course", "100"), ("learningplan", "10"), ("course", "999")]  # 999 does not exist
    items = [Item("unenroll", t, u) for t in targets for u in population]
    config = DoceboMockConfig(time_scale=TIME_SCALE, bucket_capacity=3.0)  # a burst would be refused
    mock = DoceboMock(config, state)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        adapter = Docebo(base_url=server.url, session=session, client_id=config.client_id,
                         client_secret=config.client_secret, limits=DoceboLimits(), time_scale=TIME_SCALE)
        plan = plan_backup(adapter, Counter((i.operation, i.target) for i in items))
        result = await run_backup(adapter, items, tmp_path / "docebo.jsonl", retry=FAST_RETRY)
        async with session.get(server.url + "/__mock__/stats?state=0") as answer:
            stats = await answer.json()
    assert plan.calls == {"read_enrollments": 6} == {"read_enrollments": result.calls} and plan.exact
    assert stats["endpoints"]["read_enrollments"]["statuses"] == {"200": 6}
    assert stats["bucket"]["refused"] == 0
    lines = read_lines(result.path)
    found = 0
    for (kind, target_id), user in ((t, u) for t in targets for u in population):
        record = lines[("unenroll", f"{kind}/{target_id}", user)]["record"]
        enrolled = int(user) in state.targets(kind).get(int(target_id), set())
        found += enrolled
        if not enrolled:
            assert record is None
            continue
        key = "course_id" if kind == "course" else "learningplan_id"
        completed = kind == "course" and (int(target_id), int(user)) in state.completed
        assert record == {"user_id": int(user), key: int(target_id),
                          "status": "completed" if completed else "enrolled",
                          "completion_date": "2024-01-01 00:00:00" if completed else None}
    assert result.found == found > 0
    assert "mock-client-secret" not in result.path.read_text()


def test_the_docebo_read_filters_fit_in_a_modest_url() -> None:
    request = docebo.build_read_page(("course", "123456789012345678"), [str(10**17 + n) for n in range(100)], 9)
    assert len(urlencode(list(request.params))) < 4096
    assert dict(parse_qsl(urlencode(list(request.params))))["page"] == "10"


# -- a journaled backup: written as read, resumed where it stopped ------------------------


class DiesAtPage:
    """A Zoho batch that serves pages until page ``die_at`` is asked for, then cancels
    ``scope`` there (the process dying mid-read); ``die_at=None`` serves every page."""

    def __init__(self, batch: FakeZohoBatch, die_at: int | None, scope: anyio.CancelScope | None = None) -> None:
        self.batch, self.die_at, self.scope = batch, die_at, scope

    async def __call__(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        if self.die_at is not None and int(dict(request.params)["startIndex"]) == self.die_at * 25:
            assert self.scope is not None
            self.scope.cancel()
            await anyio.sleep(1)  # cancelled here
        return await self.batch(request, headers)


async def test_a_killed_backup_keeps_every_page_read_and_its_resume_reads_only_the_rest(tmp_path: Path) -> None:
    items = [Item("unenroll", ZOHO_TARGET, str(7000 + n)) for n in range(100)] + [
        Item("unenroll", ZOHO_TARGET, "6999")]  # not in the batch: null, once the batch is read to its end
    path, journal_path = tmp_path / "b.jsonl", tmp_path / "job.db"
    first = FakeZohoBatch(100)
    with Journal.open(journal_path, "job") as journal, anyio.CancelScope() as scope:
        await run_backup(fake_zoho(DiesAtPage(first, 2, scope), time_scale=0.001), items, path, journal=journal)
    assert first.calls == [0, 25] and not path.exists()
    partial = tmp_path / "b.jsonl.partial"
    on_disk = [json.loads(line) for line in partial.read_text().splitlines()]
    assert [line["subject"] for line in on_disk] == [str(7000 + n) for n in range(50)]  # each page as it was read
    with partial.open("a") as torn:
        torn.write('{"vendor": "zoho", "operation": "unenroll", "target": "x", "sub')  # a page the journal never knew

    with Journal.open(journal_path, "job", resume=True) as journal:
        with pytest.raises(JournalError, match="backup is not complete"):
            journal.before_call([0])  # no change may leave before the backup is complete
        second = FakeZohoBatch(100)
        result = await run_backup(fake_zoho(DiesAtPage(second, None), time_scale=0.001), items, path,
                                  journal=journal)
        assert second.calls == [50, 75, 100]  # from the page after the last one written, not from the start
        assert (result.records, result.found, result.kept, result.calls) == (101, 100, 50, 3)
        state = journal.backup_state()
        assert state is not None and state.complete and state.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        journal.before_call([0])  # allowed now

    whole = FakeZohoBatch(100)
    uninterrupted = await run_backup(fake_zoho(whole, time_scale=0.001), items, tmp_path / "whole.jsonl")
    assert read_lines(path) == read_lines(uninterrupted.path)  # as one uninterrupted read would have written it

    with Journal.open(journal_path, "job", resume=True) as journal:  # complete: nothing is read again
        again = await run_backup(fake_zoho(time_scale=0.001), items, path, journal=journal)
        assert again.already_complete and again.records == 101 and again.calls == 0
        with pytest.raises(BackupError, match="this job's backup is"):
            await run_backup(fake_zoho(time_scale=0.001), items, tmp_path / "other.jsonl", journal=journal)


async def test_a_backup_renamed_just_before_the_kill_is_recognised_as_complete(tmp_path: Path) -> None:
    items = [Item("unenroll", ZOHO_TARGET, str(7000 + n)) for n in range(10)]
    path, journal_path = tmp_path / "b.jsonl", tmp_path / "job.db"
    with Journal.open(journal_path, "job") as journal:
        await run_backup(fake_zoho(FakeZohoBatch(10), time_scale=0.001), items, path, journal=journal)
        state = journal.backup_state()
        assert state is not None
        journal._conn.execute("DELETE FROM meta WHERE key = 'backup.complete'")  # killed before it was journaled
    with Journal.open(journal_path, "job", resume=True) as journal:
        result = await run_backup(fake_zoho(time_scale=0.001), items, path, journal=journal)  # no call expected
        assert result.already_complete and result.records == 10
        assert journal.backup_state() == state


# -- what the read alone settles: a toy vendor --------------------------------------------


class ToyVendor:
    """A vendor whose unenroll refuses, as "not valid", any id that is not enrolled now, and
    whose read lists each enrolment with a status (as SmarterU's learner report does)."""

    vendor = "toy"

    def __init__(self, statuses: dict[str, str], *, whole_call_refusals: bool = False) -> None:
        self.statuses = statuses  # subject -> Enrolled / Queued / Unenrolled; absent: never existed
        self.whole = whole_call_refusals
        self.transport = InProcessTransport(self._handle)
        self.auth = NoAuth()
        self.endpoints = {"api": EndpointSpec("api", max_in_flight=1)}
        self.operations = {"unenroll": Operation("unenroll", "api", Outcome.QUEUED, 10, self._build, self._read)}
        self.readers = {"unenroll": EnrolmentReader("api", self._build_read, self._read_page, lambda t, n: 1,
                                                    max_subjects=10, settled=self.settled)}

    @staticmethod
    def settled(record: Mapping[str, Any] | None) -> ItemResult | None:
        status = None if record is None else record.get("status")
        if status == "Unenrolled":
            return ItemResult.final(Outcome.NOT_ENROLLED, "read", "the read shows it Unenrolled")
        if status == "Queued":
            return ItemResult.final(Outcome.QUEUED, "read", "the read shows it queued")
        return None

    def _build(self, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
        return HttpRequest("POST", "/unenroll", json=list(subjects))

    def _build_read(self, target: tuple[str, ...], subjects: Sequence[str], page: int) -> HttpRequest:
        return HttpRequest("POST", "/read", json=list(subjects))

    async def _handle(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        if request.path == "/read":
            return json_answer(200, {s: {"status": self.statuses[s]} for s in request.json if s in self.statuses})
        answers = {}
        for s in request.json:
            if self.statuses.get(s) == "Enrolled":
                self.statuses[s] = "Queued"
                answers[s] = "accepted"
            else:
                answers[s] = "not valid"
        return json_answer(200, answers)

    def _read_page(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> ReadPage:
        return ReadPage(json.loads(response.body), more=False)

    def _read(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        answers = json.loads(response.body)
        if self.whole and all(answers[s] == "not valid" for s in subjects):
            return CallResult.whole(CallVerdict.FAILED, "E2", "not valid")
        return CallResult.answered([
            ItemResult.final(Outcome.QUEUED, "ok") if answers[s] == "accepted"
            else ItemResult.final(Outcome.FAILED, "E2", f"{s} is not valid") for s in subjects])


@pytest.mark.parametrize("whole_call_refusals", [False, True])
async def test_a_refusal_the_backup_read_settles_ends_as_the_read_says(tmp_path: Path,
                                                                       whole_call_refusals: bool) -> None:
    statuses = {"1": "Enrolled", "2": "Unenrolled", "3": "Queued", "5": "Unenrolled", "6": "Unenrolled"}
    toy = ToyVendor(statuses, whole_call_refusals=whole_call_refusals)
    items = [Item("unenroll", ("account",), s) for s in ("1", "2", "3", "4", "5")]
    items.append(Item("unenroll", ("other",), "6"))  # alone in its call: a whole-call refusal when asked
    await run_backup(toy, items, tmp_path / "b.jsonl")
    settled = settled_by_backup(toy, tmp_path / "b.jsonl")
    assert set(settled) == {("unenroll", "account", s) for s in ("2", "3", "5")} | {("unenroll", "other", "6")}
    statuses["5"] = "Enrolled"  # re-enrolled after the backup: the vendor's acceptance stands
    toy.operations = {"unenroll": reconcile_refusals(toy.operations["unenroll"], settled)}
    outcomes: list[ItemOutcome] = []
    report = await run(toy, items, settings=JobSettings(retry=FAST_RETRY, linger=0.01), sinks=[outcomes.append])
    by_subject = {o.item.subject: o for o in outcomes}
    assert {s: o.outcome.value for s, o in by_subject.items()} == {
        "1": "queued", "2": "not_enrolled", "3": "queued", "4": "failed", "5": "queued", "6": "not_enrolled"}
    assert "the read shows it Unenrolled" in (by_subject["2"].message or "")
    assert "not valid" in (by_subject["2"].message or "")  # the vendor's refusal is quoted
    assert by_subject["4"].code == "E2"  # the read did not list it: the refusal stands
    assert report.total == 6
