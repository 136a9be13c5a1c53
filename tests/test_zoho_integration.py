"""The engine against the Zoho mock over loopback, time scaled (a minute is 0.6 s).

Tests that take ``network`` run twice: over plain HTTP, and over HTTPS with every answer
gzip-encoded, chunked and written in pieces with pauses."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiolimiter import AsyncLimiter

from tests.conftest import FAST_RETRY, TIME_SCALE, Network, unenroll_items, zoho_rig
from unenroll import Item, ItemOutcome, JobSettings, Outcome, ResultsWriter, RetryPolicy, run
from unenroll.adapters.zoho.adapter import ZohoLimits
from unenroll.adapters.zoho.mock import ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import Faults, Latency

SETTINGS = JobSettings(retry=FAST_RETRY, linger=0.5, seed=1)  # the input is a list: chunks fill at once


async def test_5000_erecnos_over_several_batches_all_end_unenrolled_within_the_limit(
    tmp_path: Path, network: Network
) -> None:
    state = ZohoMockState.generate(courses=2, batches_per_course=5, learners_per_batch=500)
    config = ZohoMockConfig(time_scale=TIME_SCALE, latency=Latency(base=0.5, per_item=0.002, jitter=0.5))
    items = unenroll_items(state)
    assert len(items) == 5000
    async with zoho_rig(config, state, network=network) as rig:
        with ResultsWriter(tmp_path / "results.jsonl") as results:
            report = await run(rig.adapter, items, settings=SETTINGS, sinks=[results])
        stats = await rig.stats()
    assert report.counts == {"unenrolled": 5000}
    assert report.calls == 50
    unenroll_stats = stats["endpoints"]["unenroll"]
    assert unenroll_stats["lock_events"] == 0
    assert unenroll_stats["max_in_rolling_window"] <= 30
    assert all(not learners for learners in stats["state"]["batches"].values())
    assert sum(len(v) for v in stats["state"]["unenrolled"].values()) == 5000
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(5000))  # each item exactly once
    # every item's outcome is what the mock did to it
    really_unenrolled = {(target, e) for target, erecnos in stats["state"]["unenrolled"].items() for e in erecnos}
    assert {(line["target"], line["subject"]) for line in lines if line["outcome"] == "unenrolled"} == really_unenrolled


async def test_a_naive_burst_trips_the_lock_and_the_engine_with_the_same_settings_never_does() -> None:
    """The card's limiter used the usual way: AsyncLimiter(30, 60) with gather."""
    state = ZohoMockState.generate(1, 1, 6000)
    config = ZohoMockConfig(time_scale=TIME_SCALE)
    erecnos = sorted(next(iter(state.batches.values())))
    (course, batch) = next(iter(state.batches))
    async with zoho_rig(config, state) as rig:
        limiter = AsyncLimiter(30, 60 * TIME_SCALE)
        _, headers = await rig.adapter.auth.headers()

        async def naive_call(chunk: list[str]) -> None:
            async with limiter:
                url = f"{rig.url}/api/v1/courses/{course}/batches/{batch}/unenroll"
                params = {"erecnosList": "[" + ",".join(chunk) + "]"}
                async with rig.session.post(url, params=params, headers=headers) as response:
                    await response.read()

        async with anyio.create_task_group() as tg:
            for start in range(0, 4000, 100):
                tg.start_soon(naive_call, erecnos[start : start + 100])
        naive = (await rig.stats())["endpoints"]["unenroll"]
    assert naive["lock_events"] >= 1
    assert naive["max_in_rolling_window"] > 30

    state = ZohoMockState.generate(1, 1, 6000)
    async with zoho_rig(config, state) as rig:
        report = await run(rig.adapter, unenroll_items(state)[:4000], settings=SETTINGS)
        ours = (await rig.stats())["endpoints"]["unenroll"]
    assert report.counts == {"unenrolled": 4000}
    assert ours["lock_events"] == 0 and report.throttled == 0
    assert ours["max_in_rolling_window"] == 30  # and it does use the whole allowance


async def test_a_slow_token_fetch_does_not_make_calls_arrive_later_than_counted() -> None:
    """Regression: the first calls waited for the token *after* taking their permit, so
    they reached the vendor late and the 31st call landed inside their window."""
    state = ZohoMockState.generate(1, 4, 1000)
    config = ZohoMockConfig(time_scale=TIME_SCALE, token_latency=5.0)  # 50 ms, five times the margin
    async with zoho_rig(config, state, limits=ZohoLimits(margin=1.0)) as rig:
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS)
        stats = (await rig.stats())["endpoints"]["unenroll"]
    assert report.counts == {"unenrolled": 4000}
    assert stats["lock_events"] == 0 and stats["max_in_rolling_window"] == 30


@pytest.mark.parametrize("window_kind", ["rolling", "fixed"])
async def test_with_10_percent_faults_every_item_still_ends_unenrolled(window_kind: str, network: Network) -> None:
    state = ZohoMockState.generate(2, 3, 200)
    faults = Faults(server_error=0.04, drop=0.03, truncated=0.01, html=0.01, wrong_type=0.01)
    config = ZohoMockConfig(time_scale=TIME_SCALE, faults=faults, seed=3, window_kind=window_kind,  # type: ignore[arg-type]
                            latency=Latency(base=0.2, jitter=0.2))
    async with zoho_rig(config, state, network=network) as rig:
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS)
        stats = await rig.stats()
    assert report.counts == {"unenrolled": 1200}
    assert sum(stats["faults"].values()) >= 1
    assert report.endpoints["unenroll"].retried_calls == sum(stats["faults"].values())
    assert stats["endpoints"]["unenroll"]["lock_events"] == 0


async def test_every_call_the_vendor_sees_went_through_the_limiter(network: Network) -> None:
    """aiohttp would re-send a DELETE on a dropped kept-alive connection by itself; the
    transport turns that off so the mock counts exactly the calls the engine counted."""
    state = ZohoMockState.generate(1, 1, 120)
    (course, batch), learners = next(iter(state.batches.items()))
    items = [Item("remove_learner", (course, batch), lid) for lid in learners.values()]
    config = ZohoMockConfig(time_scale=TIME_SCALE, faults=Faults(drop=0.3), seed=4, threshold=1000)
    async with zoho_rig(config, state, limits=ZohoLimits(margin=5.0, calls_per_window=1000), network=network) as rig:
        report = await run(rig.adapter, items, settings=SETTINGS)
        stats = await rig.stats()
    assert stats["faults"]["drop"] >= 10
    assert report.counts.get("unenrolled", 0) + report.counts.get("not_enrolled", 0) == 120
    assert stats["endpoints"]["remove_learner"]["lock_events"] == 0
    assert stats["endpoints"]["remove_learner"]["calls"] == report.endpoints["remove_learner"].calls


async def test_hung_requests_time_out_and_are_retried(network: Network) -> None:
    state = ZohoMockState.generate(1, 2, 300)
    config = ZohoMockConfig(time_scale=TIME_SCALE, faults=Faults(hang=0.4, hang_seconds=2.0), seed=5)
    async with zoho_rig(config, state, request_timeout=0.3, network=network) as rig:
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS)
        stats = await rig.stats()
    assert report.counts == {"unenrolled": 600}
    assert stats["faults"].get("hang", 0) >= 1


async def test_invalid_duplicate_and_not_enrolled_items_get_their_outcomes(network: Network) -> None:
    state = ZohoMockState.generate(1, 2, 20)
    (c, b1), (_, b2) = list(state.batches)
    enrolled = sorted(state.batches[(c, b1)])
    items = [
        Item("unenroll", (c, b1), enrolled[0]),
        Item("unenroll", (c, b1), enrolled[0]),  # duplicate
        Item("unenroll", (c, b1), "12-34"),  # invalid erecno
        Item("unenroll", (c, b2), enrolled[1]),  # enrolled in b1, not in b2
        Item("unenroll", (c, "999999"), enrolled[2]),  # unknown batch
        Item("unenroll", (c, b1), enrolled[3], meta={"row": 7}),
    ]
    got: dict[int, ItemOutcome] = {}
    async with zoho_rig(ZohoMockConfig(time_scale=TIME_SCALE), state, network=network) as rig:
        report = await run(rig.adapter, items, settings=SETTINGS, sinks=[lambda o: got.__setitem__(o.index, o)])
    assert [got[i].outcome for i in range(6)] == [
        Outcome.UNENROLLED, Outcome.DUPLICATE, Outcome.REJECTED, Outcome.NOT_ENROLLED, Outcome.FAILED,
        Outcome.UNENROLLED,
    ]
    assert got[4].code == "404" and "not found" in (got[4].message or "").lower()
    assert got[5].item.meta == {"row": 7}
    assert report.total == 6


async def test_a_poisoned_chunk_is_bisected_so_one_bad_id_does_not_fail_99_good_ones(network: Network) -> None:
    state = ZohoMockState.generate(1, 1, 100)
    erecnos = sorted(next(iter(state.batches.values())))
    config = ZohoMockConfig(time_scale=TIME_SCALE, refused_erecnos=frozenset({erecnos[41]}))
    got: dict[str, Outcome] = {}
    async with zoho_rig(config, state, network=network) as rig:
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS,
                           sinks=[lambda o: got.__setitem__(o.item.subject, o.outcome)])
    assert report.counts == {"unenrolled": 99, "failed": 1}
    assert got[erecnos[41]] is Outcome.FAILED
    assert report.endpoints["unenroll"].splits == 7  # log2(100) rounded up: one split per level
    assert report.calls == 1 + 2 * 7


async def test_a_422_halves_the_chunk_size_for_the_rest_of_the_job(network: Network) -> None:
    state = ZohoMockState.generate(1, 2, 250)
    config = ZohoMockConfig(time_scale=TIME_SCALE, max_ids=40)
    async with zoho_rig(config, state, network=network) as rig:
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS)
        stats = await rig.stats()
    assert report.counts == {"unenrolled": 500}
    assert report.endpoints["unenroll"].cap_items == 25
    # each refused size is refused at most once per call in flight: 100 and 50, four in flight
    assert stats["endpoints"]["unenroll"]["statuses"]["422"] <= 2 * rig.adapter.limits.max_in_flight


async def test_a_token_expiring_mid_job_is_survived_without_spending_retries(network: Network) -> None:
    state = ZohoMockState.generate(1, 4, 1000)  # 40 calls: over two windows
    config = ZohoMockConfig(time_scale=TIME_SCALE, token_lifetime=40.0)  # 0.4 s: expires mid-job
    async with zoho_rig(config, state, network=network) as rig:
        report = await run(rig.adapter, unenroll_items(state),
                           settings=JobSettings(retry=RetryPolicy(max_attempts=1), linger=0.01))
        stats = await rig.stats()
    assert report.counts == {"unenrolled": 4000}
    assert stats["tokens_issued"] >= 2
    assert report.endpoints["unenroll"].auth_refreshes == stats["tokens_issued"] - 1


async def test_cancelling_mid_job_accounts_for_every_item_and_matches_the_mock(network: Network) -> None:
    state = ZohoMockState.generate(1, 3, 1500)  # 45 calls: more than one window holds
    config = ZohoMockConfig(time_scale=TIME_SCALE, latency=Latency(base=1.0))
    got: list[ItemOutcome] = []
    async with zoho_rig(config, state, network=network) as rig:
        with anyio.CancelScope() as scope:

            def sink(outcome: ItemOutcome) -> None:
                got.append(outcome)
                if len(got) == 1000:  # inside the first window: some done, the rest not
                    scope.cancel()

            await run(rig.adapter, unenroll_items(state), settings=SETTINGS, sinks=[sink])
        stats = await rig.stats()
    assert sorted(o.index for o in got) == list(range(4500))
    counts = Counter(o.outcome for o in got)
    assert counts[Outcome.UNENROLLED] > 0 and counts[Outcome.NOT_SENT] > 0
    assert set(counts) == {Outcome.UNENROLLED, Outcome.NOT_SENT}
    really_unenrolled = {e for v in stats["state"]["unenrolled"].values() for e in v}
    assert {o.item.subject for o in got if o.outcome is Outcome.UNENROLLED} == really_unenrolled


async def test_share_and_remove_learner_operations_end_to_end(network: Network) -> None:
    state = ZohoMockState.generate(1, 1, 10)
    (course, batch), learners = next(iter(state.batches.items()))
    items = [Item("share_course", (course,), e) for e in sorted(learners)[:5]]
    items.append(Item("share_course", (course,), "7999999999999"))  # no such employee
    items += [Item("remove_learner", (course, batch), lid) for lid in sorted(learners.values())[:3]]
    items.append(Item("remove_learner", (course, batch), "1"))  # not in the batch
    async with zoho_rig(ZohoMockConfig(time_scale=TIME_SCALE), state, network=network) as rig:
        report = await run(rig.adapter, items, settings=SETTINGS)
        stats = await rig.stats()
    assert report.counts == {"shared": 5, "failed": 1, "unenrolled": 3, "not_enrolled": 1}
    assert len(stats["state"]["shares"][course]) == 5
    assert len(stats["state"]["batches"][f"{course}/{batch}"]) == 7
    assert report.endpoints["share_course"].calls == 1 and report.endpoints["remove_learner"].calls == 4


async def test_a_lock_from_elsewhere_pauses_only_that_endpoint_for_the_lock_period() -> None:
    """Someone else spent the quota: the engine meets a 7209, waits the lock out, finishes."""
    state = ZohoMockState.generate(1, 1, 300)
    (course, batch) = next(iter(state.batches))
    config = ZohoMockConfig(time_scale=TIME_SCALE, lock_period=60.0)  # 0.6 s lock
    async with zoho_rig(config, state) as rig:
        _, headers = await rig.adapter.auth.headers()
        for _ in range(31):  # another client burns the window and trips the lock
            async with rig.session.post(f"{rig.url}/api/v1/courses/{course}/batches/{batch}/unenroll",
                                        params={"erecnosList": "[1]"}, headers=headers) as response:
                await response.read()
        report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS)
    assert report.counts == {"unenrolled": 300}
    assert report.endpoints["unenroll"].throttled >= 1


async def test_no_secret_appears_in_logs_reports_or_reprs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], network: Network
) -> None:
    from unenroll.observe.logs import configure_logging

    configure_logging(json=True, level="debug")
    state = ZohoMockState.generate(1, 1, 50)
    config = ZohoMockConfig(time_scale=TIME_SCALE, token_lifetime=30.0, refresh_token="rt-SUPER-SECRET-1",
                            client_secret="cs-SUPER-SECRET-2", faults=Faults(server_error=0.2), seed=2)
    try:
        async with zoho_rig(config, state, network=network) as rig:
            with ResultsWriter(tmp_path / "r.csv") as results:
                report = await run(rig.adapter, unenroll_items(state), settings=SETTINGS, sinks=[results])
            token = next(iter(rig.mock.tokens))
            texts = [repr(rig.adapter), repr(rig.adapter.auth), repr(rig.adapter.transport),
                     json.dumps(report.as_dict()), report.summary(), (tmp_path / "r.csv").read_text()]
    finally:
        configure_logging(level="warning")
    out = capsys.readouterr()
    texts += [out.out, out.err]
    assert "chunk.answered" in out.err  # debug logs were on
    for text in texts:
        for secret in ("rt-SUPER-SECRET-1", "cs-SUPER-SECRET-2", token):
            assert secret not in text


async def test_a_bad_refresh_token_stops_the_job_with_a_clear_error() -> None:
    state = ZohoMockState.generate(1, 1, 40)
    config = ZohoMockConfig(time_scale=TIME_SCALE)
    mock_config = ZohoMockConfig(time_scale=TIME_SCALE, refresh_token="the-right-one")
    async with zoho_rig(mock_config, state, limits=ZohoLimits(margin=5.0)) as rig:
        from unenroll.adapters.zoho.adapter import ZohoPeople

        async with aiohttp.ClientSession() as session:
            wrong = ZohoPeople(session=session, base_url=rig.url, accounts_url=rig.url, refresh_token="wrong",
                               client_id=config.client_id, client_secret=config.client_secret,
                               time_scale=TIME_SCALE)
            report = await run(wrong, unenroll_items(state), settings=SETTINGS)
    assert report.stopped is not None and "refused the credentials" in report.stopped
    assert report.counts == {"not_sent": 40}
