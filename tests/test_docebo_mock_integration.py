"""The Docebo adapter against its mock over loopback, through the engine.

Time is scaled by 0.01: the 3.6 s spacing between calls is 36 ms, an hour is 36 s.
The mock's bucket is given a small capacity so that a client that bursts would be
refused: "no 429" then means the calls really were spaced at the documented rate.

Tests that take ``network`` run twice: over plain HTTP, and over HTTPS with every answer
gzip-encoded, chunked and written in pieces with pauses.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest

import unenroll
from tests.conftest import LOOPBACK_HTTP, Network
from unenroll import Item, ItemOutcome, JobSettings, Outcome, Report, RetryPolicy
from unenroll.adapters.docebo import adapter as docebo
from unenroll.adapters.docebo.adapter import Docebo, DoceboLimits
from unenroll.adapters.docebo.mock import DoceboMock, DoceboMockConfig, DoceboMockState
from unenroll.contract.mock import Faults, Latency

TIME_SCALE = 0.01
FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.005, max_delay=0.05)
TIGHT_BUCKET = 3.0  # calls; the documented leak rate drains one every 36 ms at this scale
UNKNOWN_COURSE, UNKNOWN_PLAN = 999, 99

Target = tuple[str, str]


@dataclass
class Rig:
    mock: DoceboMock
    adapter: Docebo
    url: str
    session: aiohttp.ClientSession

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(self.url + "/__mock__/stats?state=0") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def run(self, items: Iterable[Item]) -> tuple[Report, list[ItemOutcome]]:
        ended: list[ItemOutcome] = []
        report = await unenroll.run(self.adapter, list(items), settings=JobSettings(retry=FAST_RETRY, seed=1),
                                    sinks=[ended.append])
        return report, sorted(ended, key=lambda o: o.index)


@asynccontextmanager
async def rig(
    config: DoceboMockConfig, state: DoceboMockState, *, client_secret: str = "mock-client-secret",
    limits: DoceboLimits | None = None, client_timeout: float = 10.0,
    reset_tracks: bool = False, cascade: bool = False, delete_issued_certificates: bool = False,
    network: Network = LOOPBACK_HTTP,
) -> AsyncIterator[Rig]:
    """The mock over ``network`` (whose wire options, unless plain, replace the config's)."""
    if not network.wire.plain:
        config = replace(config, wire=network.wire)
    mock = DoceboMock(config, state)
    async with mock.serve(ssl_context=network.server_ssl) as server, network.session() as session:
        adapter = Docebo(base_url=server.url, session=session, client_id="mock-client-id",
                         client_secret=client_secret, limits=limits, time_scale=config.time_scale,
                         timeout=client_timeout, reset_tracks=reset_tracks,
                         cascade_unenroll_from_courses_in_selected_learning_plan=cascade,
                         delete_issued_certificates=delete_issued_certificates)
        yield Rig(mock, adapter, server.url, session)


def config(**changes: Any) -> DoceboMockConfig:
    return DoceboMockConfig(**{"time_scale": TIME_SCALE, "bucket_capacity": TIGHT_BUCKET, **changes})


def items_for(targets: Iterable[tuple[str, int]], users: Iterable[int]) -> list[Item]:
    users = list(users)
    return [Item("unenroll", (kind, str(target)), str(u)) for kind, target in targets for u in users]


def expected_outcome(before: DoceboMockState, item: Item) -> Outcome:
    kind, target = item.target
    enrolled = before.targets(kind).get(int(target))
    if enrolled is None:
        return Outcome.FAILED
    return Outcome.UNENROLLED if int(item.subject) in enrolled else Outcome.NOT_ENROLLED


def assert_outcomes_as_expected(before: DoceboMockState, ended: list[ItemOutcome], count: int) -> None:
    assert [o.index for o in ended] == list(range(count))  # one outcome per item
    wrong = [(o.item, o.outcome, o.message) for o in ended if o.outcome is not expected_outcome(before, o.item)]
    assert wrong == []


def assert_one_call_at_a_time_and_never_throttled(stats: dict[str, Any], report: Report) -> None:
    assert stats["batch"]["concurrent_calls"] == 0
    assert stats["bucket"]["refused"] == 0 and report.throttled == 0
    assert stats["batch"]["admitted"] == report.calls  # every call we made reached the mock once


# -- the job ------------------------------------------------------------------------------


async def test_20000_pairs_over_courses_and_plans_end_right_and_the_state_agrees(network: Network) -> None:
    state = DoceboMockState.generate(courses=10, plans=4, courses_per_plan=2, users_per_target=1200, seed=7)
    before = copy.deepcopy(state)
    standalone = [(docebo.COURSE, c) for c in range(100, 110)]
    plans = [(docebo.LEARNING_PLAN, p) for p in state.plans]
    items: list[Item] = []
    for kind, target in standalone + plans:
        enrolled = sorted(state.targets(kind)[target])
        strangers = [u for u in range(12_001, 16_000) if u not in state.targets(kind)[target]][:150]
        items += items_for([(kind, target)], enrolled + strangers)
    items += items_for([(docebo.COURSE, UNKNOWN_COURSE)], range(12_001, 12_601))
    items += items_for([(docebo.LEARNING_PLAN, UNKNOWN_PLAN)], range(12_001, 12_501))
    assert len(items) == 20_000

    faults = Faults(server_error=0.05, truncated=0.03, html=0.02, wrong_type=0.02)
    settings = config(latency=Latency(base=1.0, per_item=0.002, jitter=0.5), faults=faults, omit_share=0.01, seed=4)
    async with rig(settings, state, network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()

    assert_outcomes_as_expected(before, ended, len(items))
    assert report.counts == {"unenrolled": 16_800, "not_enrolled": 2_100, "failed": 1_100}
    assert all(o.code == "not_found" for o in ended if o.outcome is Outcome.FAILED)
    assert report.stopped is None and report.options == {
        docebo.RESET_TRACKS: False, docebo.CASCADE: False, docebo.DELETE_CERTIFICATES: False}
    # the retries did happen: pairs left out of answers, and faulted calls
    assert stats["omitted_pairs"] > 0 and report.retried_items >= stats["omitted_pairs"]
    assert sum(stats["faults"].values()) > 0 and report.endpoints["unenroll"].retried_calls > 0
    # the mock's state agrees: every targeted enrolment gone, the plans' courses untouched
    assert all(not state.courses[c] for _, c in standalone) and all(not users for users in state.plans.values())
    for plan, courses in state.plan_courses.items():
        assert all(state.courses[c] == before.courses[c] for c in courses), plan
    assert state.unenrolled == {(o.item.target[0], int(o.item.target[1]), int(o.item.subject))
                                for o in ended if o.outcome is Outcome.UNENROLLED}
    assert not state.tracks_reset and not state.certificates_deleted
    assert_one_call_at_a_time_and_never_throttled(stats, report)


async def test_the_endpoint_is_kept_busy_one_call_at_a_time() -> None:
    # calls slower than the spacing: the limiter never waits, so any idle time between
    # calls is the engine's own; the next chunk is ready when the answer comes back
    state = DoceboMockState.generate(courses=10, plans=0, courses_per_plan=0, users_per_target=1000)
    items = [i for c in state.courses for i in items_for([(docebo.COURSE, c)], sorted(state.courses[c]))]
    settings = config(latency=Latency(base=4.0, per_item=0.002, jitter=0.2), bucket_capacity=1000.0)
    async with rig(settings, state) as r:
        report, _ = await r.run(items)
        stats = await r.stats()
    assert report.calls == 10 and report.counts == {"unenrolled": 10_000}
    assert_one_call_at_a_time_and_never_throttled(stats, report)
    # a share of the mock's own clock, not a deadline: the batch endpoint was working
    # for most of the time between the first call's arrival and the last call's answer
    assert stats["batch"]["busy_share"] >= 0.5


async def test_calls_spaced_at_the_documented_rate_never_meet_a_429(network: Network) -> None:
    state = DoceboMockState.generate(courses=2, plans=0, courses_per_plan=0, users_per_target=1000)
    before = copy.deepcopy(state)
    items = items_for([(docebo.COURSE, c) for c in state.courses], range(12_001, 13_001))
    async with rig(config(), state, limits=DoceboLimits(max_users_per_call=100), network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()
    assert report.calls == 20
    assert_outcomes_as_expected(before, ended, len(items))
    assert_one_call_at_a_time_and_never_throttled(stats, report)


async def test_a_client_that_bursts_meets_429_and_retry_after_brings_it_through(network: Network) -> None:
    # the control for the test above: without the spacing the same bucket does refuse
    state = DoceboMockState.generate(courses=1, plans=0, courses_per_plan=0, users_per_target=1500)
    before = copy.deepcopy(state)
    items = items_for([(docebo.COURSE, 100)], range(12_001, 13_501))
    limits = DoceboLimits(max_users_per_call=50, min_interval=0.0)
    async with rig(config(), state, limits=limits, network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()
    assert stats["bucket"]["refused"] > 0 and report.throttled == stats["bucket"]["refused"]
    assert stats["endpoints"]["unenroll"]["statuses"]["429"] == stats["bucket"]["refused"]
    assert_outcomes_as_expected(before, ended, len(items))
    assert stats["batch"]["concurrent_calls"] == 0


async def test_a_token_expiring_mid_job_is_refreshed_and_the_job_completes(network: Network) -> None:
    # tokens live 20 vendor seconds (0.2 s); 15 calls spaced 36 ms apart outlive several
    state = DoceboMockState.generate(courses=3, plans=0, courses_per_plan=0, users_per_target=500)
    before = copy.deepcopy(state)
    items = items_for([(docebo.COURSE, c) for c in state.courses], range(12_001, 13_501))
    limits = DoceboLimits(max_users_per_call=300)
    async with rig(config(token_lifetime=20.0), state, limits=limits, network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()
    assert stats["tokens_issued"] >= 2
    assert stats["endpoints"]["unenroll"]["statuses"]["401"] >= 1
    assert report.endpoints["unenroll"].auth_refreshes == stats["tokens_issued"] - 1
    assert report.stopped is None
    assert_outcomes_as_expected(before, ended, len(items))
    assert_one_call_at_a_time_and_never_throttled(stats, report)


async def test_dropped_and_hung_calls_are_sent_again_and_end_right(network: Network) -> None:
    # a hung call outlives the client's timeout; the mock cancels it when the client
    # hangs up, and a call that still finds it in flight is answered 409 and sent again
    state = DoceboMockState.generate(courses=3, plans=0, courses_per_plan=0, users_per_target=300)
    before = copy.deepcopy(state)
    items = [i for c in state.courses for i in items_for([(docebo.COURSE, c)], sorted(state.courses[c]))]
    settings = config(faults=Faults(drop=0.15, hang=0.15, hang_seconds=2.0), seed=2)
    limits = DoceboLimits(max_users_per_call=100)
    async with rig(settings, state, limits=limits, client_timeout=0.2, network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()
    assert_outcomes_as_expected(before, ended, len(items))
    assert not any(state.courses.values())
    assert set(stats["faults"]) == {"drop", "hang"} and report.endpoints["unenroll"].retried_calls > 0


async def test_refused_client_credentials_stop_the_job_with_every_item_not_sent(network: Network) -> None:
    state = DoceboMockState.generate(courses=1, plans=0, courses_per_plan=0, users_per_target=10)
    items = items_for([(docebo.COURSE, 100)], range(12_001, 12_011))
    async with rig(config(), state, client_secret="wrong-secret", network=network) as r:
        report, _ = await r.run(items)
    assert report.counts == {"not_sent": 10}
    assert report.stopped is not None and "refused the credentials" in report.stopped
    assert "wrong-secret" not in report.stopped
    assert all(users for users in state.courses.values())


async def test_a_cap_lower_than_documented_halves_the_chunks_until_they_fit(network: Network) -> None:
    state = DoceboMockState.generate(courses=1, plans=0, courses_per_plan=0, users_per_target=1200)
    items = items_for([(docebo.COURSE, 100)], sorted(state.courses[100]))
    async with rig(config(max_users=400, bucket_capacity=1000.0), state, network=network) as r:
        report, _ = await r.run(items)
    assert report.counts == {"unenrolled": 1200}
    assert report.endpoints["unenroll"].cap_items == 250 and report.endpoints["unenroll"].cap_halvings == 2


# -- the three flags ----------------------------------------------------------------------


def plan_state() -> DoceboMockState:
    state = DoceboMockState.generate(courses=1, plans=2, courses_per_plan=2, users_per_target=300, seed=5)
    state.courses[state.plan_courses[10][0]].add(99_999)  # in a plan's course, not in the plan
    return state


async def test_without_cascade_a_plan_unenrolment_leaves_the_plans_courses(network: Network) -> None:
    state = plan_state()
    before = copy.deepcopy(state)
    items = items_for([(docebo.LEARNING_PLAN, 10)], sorted(state.plans[10]))
    async with rig(config(), state, network=network) as r:
        report, _ = await r.run(items)
    assert report.counts == {"unenrolled": 300}
    assert not state.plans[10] and state.courses == before.courses
    assert not state.tracks_reset and not state.certificates_deleted


async def test_cascade_removes_the_plans_courses_and_refuses_course_items(network: Network) -> None:
    state = plan_state()
    before = copy.deepcopy(state)
    plan_users = sorted(state.plans[10])
    items = items_for([(docebo.LEARNING_PLAN, 10)], plan_users) + items_for([(docebo.COURSE, 100)], [12_001, 12_002])
    async with rig(config(), state, reset_tracks=True, cascade=True, delete_issued_certificates=True,
                   network=network) as r:
        report, ended = await r.run(items)
        stats = await r.stats()
    assert report.counts == {"unenrolled": 300, "rejected": 2}
    assert all(docebo.CASCADE in (o.message or "") for o in ended if o.outcome is Outcome.REJECTED)
    assert report.options == {docebo.RESET_TRACKS: True, docebo.CASCADE: True, docebo.DELETE_CERTIFICATES: True}
    # the plan's courses lost the plan's users (and only them); everything else is as it was
    for course in state.plan_courses[10]:
        assert state.courses[course] == before.courses[course] - set(plan_users)
    assert 99_999 in state.courses[state.plan_courses[10][0]]
    for course in [100, *state.plan_courses[11]]:
        assert state.courses[course] == before.courses[course]
    assert state.plans[11] == before.plans[11]
    # tracking and certificates went for the plan and for each course the cascade reached
    reached = {("learningplan", 10, u) for u in plan_users} | {
        ("course", c, u) for c in state.plan_courses[10] for u in plan_users}
    assert state.unenrolled == state.tracks_reset == state.certificates_deleted == reached
    assert stats["batch"]["admitted"] == report.calls == 1  # the course items were never sent


# -- the mock's own mechanisms ------------------------------------------------------------


async def _token(session: aiohttp.ClientSession, url: str) -> str:
    form = {"grant_type": "client_credentials", "client_id": "mock-client-id", "client_secret": "mock-client-secret"}
    async with session.post(url + "/oauth2/token", data=form) as response:
        assert response.status == 200
        token: str = (await response.json())["access_token"]
        return token


async def test_the_mock_answers_409_to_a_second_batch_call_in_flight() -> None:
    state = DoceboMockState.generate(courses=2, plans=0, courses_per_plan=0, users_per_target=5)
    mock = DoceboMock(DoceboMockConfig(latency=Latency(base=0.2)), state)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer " + await _token(session, server.url)}

        async def delete(course: int) -> int:
            body = {"user_ids": sorted(state.courses[course]), "course_ids": [course]}
            async with session.delete(server.url + "/learn/v1/enrollments", json=body, headers=headers) as response:
                return response.status

        statuses = await asyncio.gather(delete(100), delete(101))
    assert sorted(statuses) == [200, 409]
    assert mock.gate.concurrent_calls == 1 and mock.gate.admitted == 1
    assert sum(1 for users in state.courses.values() if users) == 1  # the refused call did nothing


async def test_the_mock_refuses_a_call_over_the_user_cap() -> None:
    mock = DoceboMock(DoceboMockConfig(), DoceboMockState.generate(1, 0, 0, 10))
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer " + await _token(session, server.url)}
        body = {"user_ids": list(range(1, 1002)), "course_ids": [100]}
        async with session.delete(server.url + "/learn/v1/enrollments", json=body, headers=headers) as response:
            assert response.status == 400
            assert "Maximum 1000" in (await response.json())["message"]


async def test_the_mock_pages_enrolments_200_at_most() -> None:
    state = DoceboMockState.generate(courses=2, plans=0, courses_per_plan=0, users_per_target=450)
    mock = DoceboMock(DoceboMockConfig(), state)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        url = server.url + "/learn/v1/enrollments"
        async with session.get(url, params={"page_size": "10"}) as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer " + await _token(session, server.url)}
        seen: list[dict[str, Any]] = []
        for page in range(1, 10):  # bounded: 450 rows are 3 pages
            params = [("course_id[]", "100"), ("page", str(page)), ("page_size", "200")]
            async with session.get(url, params=params, headers=headers) as response:
                data = (await response.json())["data"]
            assert data["current_page"] == page and len(data["items"]) <= 200
            seen += data["items"]
            if not data["has_more_data"]:
                break
        assert page == 3 and {row["user_id"] for row in seen} == state.courses[100]
        assert {row["status"] for row in seen} == {"enrolled", "completed"}
        async with session.get(url, params={"page_size": "201"}, headers=headers) as response:
            assert response.status == 400


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_mock_runs_as_a_process() -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unenroll.adapters.docebo.mock", "--port", str(port), "--courses", "1",
        "--plans", "1", "--users", "20", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # bounded: up to ~10 s for the interpreter to start
                try:
                    async with session.get(f"http://127.0.0.1:{port}/__mock__/stats") as response:
                        stats = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the mock process did not start")
        assert len(stats["state"]["courses"]["100"]) == 20 and stats["batch"]["concurrent_calls"] == 0
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
