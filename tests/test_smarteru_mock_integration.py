"""The SmarterU adapter against its mock on loopback: outcomes per id and the mock's state
agree, whole-call failures stop the job, hostile answers are refused, 429s are learnt from.

Tests that take ``network`` run twice: over plain HTTP, and over HTTPS with every answer
gzip-encoded, chunked and written in pieces with pauses."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog

from tests.conftest import LOOPBACK_HTTP, Network
from unenroll import ItemOutcome, JobSettings, Outcome, RetryPolicy, run
from unenroll.adapters.smarteru.adapter import (
    ApiKeys,
    SmarterU,
    SmarterULimits,
    build_learner_report,
    build_unenroll,
    read_learner_report,
    read_unenroll,
    unenroll_item,
)
from unenroll.adapters.smarteru.mock import QUEUED, SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.contract.mock import Faults
from unenroll.model import CallResult, CallVerdict
from unenroll.observe.logs import configure_logging
from unenroll.wire.http import AiohttpTransport, HttpResponse

TIME_SCALE = 0.01
SETTINGS = JobSettings(retry=RetryPolicy(max_attempts=8, base_delay=0.005, max_delay=0.05), seed=3)
ADMIN = SmarterUMockConfig().user_api_key
ACCOUNT = SmarterUMockConfig().account_api_key


@dataclass
class Rig:
    mock: SmarterUMock
    adapter: SmarterU
    url: str
    session: aiohttp.ClientSession

    async def stats(self, state: bool = True) -> dict[str, Any]:
        async with self.session.get(self.url + "/__mock__/stats", params={"state": "1" if state else "0"}) as r:
            body: dict[str, Any] = await r.json()
            return body


@asynccontextmanager
async def rig(
    config: SmarterUMockConfig | None = None,
    state: SmarterUMockState | None = None,
    *,
    user_api_key: str = ADMIN,
    account_api_key: str = ACCOUNT,
    limits: SmarterULimits | None = None,
    network: Network = LOOPBACK_HTTP,
) -> AsyncIterator[Rig]:
    """A SmarterU mock on 127.0.0.1 and an adapter pointed at it, over ``network`` (plain
    HTTP opted in; the network's wire options, unless plain, replace the config's)."""
    config = config or SmarterUMockConfig(time_scale=TIME_SCALE)
    if not network.wire.plain:
        config = replace(config, wire=network.wire)
    mock = SmarterUMock(config, state or SmarterUMockState.generate(500, 0))
    async with mock.serve(ssl_context=network.server_ssl) as server, network.session() as session:
        adapter = SmarterU(
            session=session, base_url=server.url, allow_insecure_http=True,
            account_api_key=account_api_key, user_api_key=user_api_key,
            limits=limits, time_scale=config.time_scale, timeout=5.0,
        )
        yield Rig(mock, adapter, server.url, session)


def record_reads(adapter: SmarterU) -> list[CallResult]:
    """Wrap the adapter's reader so a test can see every call's verdict."""
    seen: list[CallResult] = []
    op = adapter.operations["unenroll"]

    def reading(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        result = op.read_response(target, subjects, response)
        seen.append(result)
        return result

    adapter.operations = {"unenroll": replace(op, read_response=reading)}
    return seen


async def test_ten_thousand_mixed_ids_each_end_right_and_the_mock_agrees(network: Network) -> None:
    rng = random.Random(11)
    state = SmarterUMockState.generate(8_000, 1_000, seed=11)
    valid = state.ids_with("enrolled")
    already = state.ids_with(QUEUED)
    invalid = [str(9_000_000 + n) for n in range(500)]
    unique = valid + already + invalid
    repeats = rng.sample(unique, 10_000 - len(unique))
    ids = unique + repeats
    rng.shuffle(ids)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=36_000.0)  # nothing is processed mid-test

    got: dict[int, ItemOutcome] = {}
    async with rig(config, state, network=network) as r:
        report = await run(r.adapter, [unenroll_item(i) for i in ids], settings=SETTINGS,
                           sinks=[lambda o: got.__setitem__(o.index, o)])
        stats = await r.stats()

    assert report.total == 10_000 and len(got) == 10_000 and report.stopped is None
    expected = {i: (Outcome.QUEUED, "accepted") for i in valid}
    expected |= {i: (Outcome.QUEUED, "ULM:03") for i in already}
    expected |= {i: (Outcome.FAILED, "ULM:02") for i in invalid}
    first_seen: set[str] = set()
    for index, rel_id in enumerate(ids):
        outcome = got[index]
        if rel_id in first_seen:
            assert outcome.outcome is Outcome.DUPLICATE
        else:
            assert (outcome.outcome, outcome.code) == expected[rel_id], rel_id
            first_seen.add(rel_id)
    assert report.counts == {"queued": 9_000, "duplicate": 500, "failed": 500}
    assert all("not valid" in (got[n].message or "") for n in range(10_000) if got[n].outcome is Outcome.FAILED)

    # the mock's state agrees: every valid id is queued, the pre-queued ones still are, no id was added
    assert sorted(stats["state"]["queued"]) == sorted(valid + already)
    assert stats["state"]["enrolled"] == [] and stats["state"]["unenrolled"] == []
    assert stats["blocks_accepted"] == len(valid)
    assert stats["largest_call"] <= 100
    assert stats["answers"]["ULM:03"] == len(already) and stats["answers"]["ULM:02"] == len(invalid)
    assert "ULM:04" not in stats["answers"]  # a duplicate never went out in one call
    assert stats["calls"] == report.calls == 95  # 9,500 distinct ids, 100 a call


async def test_a_missing_permission_stops_the_job_with_one_clear_error(network: Network) -> None:
    state = SmarterUMockState.generate(2_000, 0)
    non_admin = SmarterUMockConfig().non_admin_user_api_key
    log = io.StringIO()
    configure_logging(stream=log)
    try:
        async with rig(state=state, user_api_key=non_admin, network=network) as r:
            report = await run(r.adapter, [unenroll_item(i) for i in state.enrollments], settings=SETTINGS)
            stats = await r.stats()
    finally:
        structlog.reset_defaults()
    assert report.stopped is not None
    assert "ULM:01" in report.stopped and "administrators" in report.stopped
    assert report.counts == {"not_sent": 2_000}  # not 2,000 failures
    assert stats["calls"] <= SmarterULimits().max_in_flight  # it stopped at once
    assert len(stats["state"]["enrolled"]) == 2_000
    assert non_admin not in log.getvalue() and ACCOUNT not in log.getvalue()
    assert "ULM:01" in log.getvalue()


async def test_refused_keys_stop_the_job_naming_the_keys(network: Network) -> None:
    async with rig(account_api_key="wrong-account-key", network=network) as r:
        report = await run(r.adapter, [unenroll_item(str(1_000_001 + n)) for n in range(300)], settings=SETTINGS)
    assert report.stopped is not None and "SU:02" in report.stopped and "AccountAPI or UserAPI" in report.stopped
    assert report.counts == {"not_sent": 300}


async def test_a_plain_http_refusal_stops_the_job_saying_use_https() -> None:
    config = SmarterUMockConfig(time_scale=TIME_SCALE, require_https=True)
    async with rig(config) as r:
        report = await run(r.adapter, [unenroll_item(str(1_000_001 + n)) for n in range(300)], settings=SETTINGS)
        stats = await r.stats()
    assert report.stopped is not None and "SU:01" in report.stopped and "https://" in report.stopped
    assert report.counts == {"not_sent": 300}
    assert stats["answers"]["SU:01"] == stats["calls"] >= 1


async def test_hostile_and_broken_answers_are_refused_and_the_job_still_completes(network: Network) -> None:
    state = SmarterUMockState.generate(3_000, 0, seed=5)
    config = SmarterUMockConfig(
        time_scale=TIME_SCALE, queue_delay=36_000.0, seed=5, hostile_xml=0.25,
        faults=Faults(server_error=0.05, truncated=0.05, html=0.05, drop=0.05),
    )
    async with rig(config, state, network=network) as r:
        reads = record_reads(r.adapter)
        report = await run(r.adapter, [unenroll_item(i) for i in state.enrollments], settings=SETTINGS)
        stats = await r.stats()
    assert report.counts == {"queued": 3_000} and report.stopped is None
    assert stats["faults"]["hostile_xml"] >= 3
    hostile = [c for c in reads if c.verdict is CallVerdict.RETRY and "hostile" in (c.message or "")]
    assert len(hostile) == stats["faults"]["hostile_xml"]  # every one refused, none read as an answer
    assert all("lol" not in (c.message or "") and "root:" not in (c.message or "") for c in reads)
    assert len(stats["state"]["queued"]) == 3_000


async def test_with_a_429_limit_and_no_limit_configured_the_job_learns_the_rate() -> None:
    """Mock: 3 calls per 10 s (scaled: 30 a second, under a third of the limiter's start rate, so even
    a loaded machine meets it), 429 with Retry-After for the rest of the window. Every call
    past a 429 would land inside its Retry-After: at most one per call still in flight
    when the 429 came back."""
    state = SmarterUMockState.generate(8_000, 0, seed=2)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=36_000.0, rate_limit=3, rate_window=10.0)
    limits = SmarterULimits()
    assert limits.calls_per_window is None
    async with rig(config, state, limits=limits) as r:
        report = await run(r.adapter, [unenroll_item(i) for i in state.enrollments], settings=SETTINGS)
        stats = await r.stats(state=False)
    assert report.counts == {"queued": 8_000} and report.stopped is None
    assert stats["throttle_events"] >= 1  # the default start rate is above the mock's limit
    assert stats["calls_past_429"] <= (limits.max_in_flight - 1) * stats["throttle_events"]
    # it slowed down instead of hammering (a limiter that only honours the pauses meets twice as many)
    assert stats["throttled_429"] <= stats["calls"] // 10
    assert report.throttled == stats["throttled_429"]


async def test_a_configured_limit_is_kept_without_a_single_429(network: Network) -> None:
    state = SmarterUMockState.generate(2_000, 0)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=36_000.0, rate_limit=10, rate_window=10.0)
    # margin: 0.2 s scaled, for loopback jitter on a loaded machine (the window itself is 0.1 s)
    limits = SmarterULimits(calls_per_window=10, window=10.0, margin=20.0)
    async with rig(config, state, limits=limits, network=network) as r:
        report = await run(r.adapter, [unenroll_item(i) for i in state.enrollments], settings=SETTINGS)
        stats = await r.stats(state=False)
    assert report.counts == {"queued": 2_000}
    assert stats["throttled_429"] == 0 and stats["max_calls_in_window"] <= 10


async def test_a_cap_lower_than_configured_is_found_by_halving(network: Network) -> None:
    state = SmarterUMockState.generate(1_000, 0)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=36_000.0, max_blocks=100)
    async with rig(config, state, limits=SmarterULimits(max_ids_per_call=150), network=network) as r:
        report = await run(r.adapter, [unenroll_item(i) for i in state.enrollments], settings=SETTINGS)
        stats = await r.stats(state=False)
    assert report.counts == {"queued": 1_000}
    assert report.endpoints["apiv2"].cap_halvings >= 1 and report.endpoints["apiv2"].cap_items <= 100
    assert stats["answers"]["ULM:05"] >= 1 and stats["blocks_accepted"] == 1_000


async def test_the_queue_unenrols_accepted_ids_after_its_delay_and_the_report_shows_it() -> None:
    now = [0.0]
    state = SmarterUMockState.generate(4, 1, completed_share=1.0, seed=4)
    (seeded,) = state.ids_with(QUEUED)
    sent = state.ids_with("enrolled")[:2]
    ids = list(state.enrollments)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, queue_delay=60.0)  # 0.6 s of the mock's clock
    mock = SmarterUMock(config, state, clock=lambda: now[0])
    keys = ApiKeys.of(ACCOUNT, ADMIN)

    async def report() -> dict[str, str]:
        records = read_learner_report(await transport.send(build_learner_report(keys, ids), {}))
        assert all(r.completed_date for r in records)
        return {r.id: r.status for r in records}

    async with mock.serve() as server, aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session, server.url)
        answer = await transport.send(build_unenroll(keys, ("account",), sent), {})
        assert [x.outcome for x in read_unenroll(("account",), sent, answer).items] == [Outcome.QUEUED] * 2
        now[0] = 0.59
        before = await report()
        now[0] = 0.61
        after = await report()
    queued, unenrolled = "Unenrollment Queued", "Unenrolled"
    assert {i for i, s in before.items() if s == queued} == {*sent, seeded}
    assert {i for i, s in after.items() if s == unenrolled} == {*sent, seeded}
    assert {i for i, s in after.items() if s == "Enrolled"} == set(ids) - {*sent, seeded}


async def test_a_duplicate_block_sent_anyway_is_answered_and_read_per_call(network: Network) -> None:
    state = SmarterUMockState.generate(3, 0)
    a, b, _ = state.enrollments
    keys = ApiKeys.of(ACCOUNT, ADMIN)
    async with rig(state=state, network=network) as r:
        transport = AiohttpTransport(r.session, r.url)
        subjects = [a, "404", a, b]
        response = await transport.send(build_unenroll(keys, ("account",), subjects), {})
        stats = await r.stats()
    result = read_unenroll(("account",), subjects, response)
    assert [(x.outcome, x.code) for x in result.items] == [
        (Outcome.QUEUED, "accepted"), (Outcome.FAILED, "ULM:02"), (Outcome.QUEUED, "ULM:04"),
        (Outcome.QUEUED, "accepted")]
    assert "from Unenrollment 1" in (result.items[2].message or "")
    assert stats["state"]["queued"] == sorted([a, b])


def _package(method: str, body: str, user: str = ADMIN) -> str:
    return (f"<SmarterU><AccountAPI>{ACCOUNT}</AccountAPI><UserAPI>{user}</UserAPI><Method>{method}</Method>"
            f"<Parameters>{body}</Parameters></SmarterU>")


def _blocks(ids: Sequence[str]) -> str:
    inner = "".join(f"<Unenrollment><AccountUserLearningModuleRelID>{i}</AccountUserLearningModuleRelID>"
                    "</Unenrollment>" for i in ids)
    return f"<LearningModuleEnrollment>{inner}</LearningModuleEnrollment>"


async def test_the_mock_answers_whole_call_failures_as_smarteru_does(network: Network) -> None:
    ids = [str(1_000_001 + n) for n in range(101)]
    cases = {
        "over the cap": (_package("unenrollLearningModules", _blocks(ids)), "ULM:05"),
        "no package": ("", "SU:01"),
        "not xml": ("<SmarterU><Method>", "SU:03"),
        "a DTD": ('<!DOCTYPE x [<!ENTITY a "b">]><SmarterU/>', "SU:03"),
        "unknown method": (_package("deleteEverything", ""), "SU:04"),
        "non-admin report": (_package("getLearnerReport", "", user="mock-learner-user-api"), "GLR:01"),
    }
    async with rig(state=SmarterUMockState.generate(200, 0), network=network) as r:
        for name, (package, code) in cases.items():
            async with r.session.post(r.url + "/apiv2/", data={"Package": package}) as response:
                assert response.status == 200, name
                body = await response.read()
            result = read_unenroll(("account",), ["1"], HttpResponse(200, body, {}))
            assert result.code == code, name
        stats = await r.stats()
    assert stats["blocks_accepted"] == 0 and len(stats["state"]["enrolled"]) == 200
