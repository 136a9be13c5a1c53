"""The engine against an in-process fake vendor: accounting, retries, bisecting, halving,
fatal stops, cancellation, streaming. No HTTP, so each case is small and exact."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import FAST_RETRY, FakeVendor
from unenroll import Item, ItemOutcome, Job, JobSettings, Outcome, RetryPolicy, Unreadable, run, stream
from unenroll.limits.window import Permit
from unenroll.model import CallResult, CallVerdict, ItemResult
from unenroll.wire.auth import AuthError
from unenroll.wire.http import TransportError

SETTINGS = JobSettings(retry=FAST_RETRY, linger=0.5, seed=7)  # the input is a list: chunks fill at once


def items_for(n: int, targets: int = 3) -> list[Item]:
    return [Item("unenroll", (f"c{i % targets}",), str(1000 + i)) for i in range(n)]


def assert_exactly_once(outcomes: Sequence[ItemOutcome], n: int) -> None:
    assert sorted(o.index for o in outcomes) == list(range(n))


async def test_every_item_ends_exactly_once_and_chunks_respect_the_cap(fake_vendor: Callable[..., FakeVendor]) -> None:
    vendor = fake_vendor(max_items=7)
    got: list[ItemOutcome] = []
    report = await run(vendor, items_for(100), settings=SETTINGS, sinks=[got.append])
    assert_exactly_once(got, 100)
    assert report.counts == {"unenrolled": 100}
    assert all(len(subjects) <= 7 and len(set(subjects)) == len(subjects) for _, subjects in vendor.calls)
    assert report.calls == len(vendor.calls) == sum(-(-n // 7) for n in (34, 33, 33))


async def test_invalid_and_duplicate_items_are_never_sent(fake_vendor: Callable[..., FakeVendor]) -> None:
    vendor = fake_vendor()
    items: list[object] = [
        Item("unenroll", ("c",), "1"),
        Item("unenroll", ("c",), "1"),  # duplicate
        Item("unenroll", ("c",), "abc"),  # the adapter's id rule
        Item("unenroll", ("c",), ""),  # empty id
        Item("unenroll", (), "3"),  # no target
        {"not": "an item"},
        Item("unenroll", ("d",), "1"),  # same id, other target: not a duplicate
        Unreadable("row 9: not UTF-8", "caf\\xe9", meta={"row": 9}),
    ]
    got: dict[int, ItemOutcome] = {}
    report = await run(vendor, items, settings=SETTINGS, sinks=[lambda o: got.__setitem__(o.index, o)])
    assert [got[i].outcome for i in range(8)] == [
        Outcome.UNENROLLED, Outcome.DUPLICATE, Outcome.REJECTED, Outcome.REJECTED,
        Outcome.REJECTED, Outcome.REJECTED, Outcome.UNENROLLED, Outcome.REJECTED,
    ]
    assert (got[7].message, got[7].item.meta) == ("row 9: not UTF-8", {"row": 9})
    assert "not digits" in (got[2].message or "")
    assert sorted(s for _, subjects in vendor.calls for s in subjects) == ["1", "1"]
    assert report.total == 8


async def test_only_failed_items_are_retried_never_the_ones_that_succeeded(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    flaky = {str(1000 + i) for i in range(0, 60, 4)}
    seen: Counter[str] = Counter()

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        results = []
        for s in subjects:
            seen[s] += 1
            first_time = seen[s] == 1
            retry = s in flaky and first_time
            results.append(ItemResult.retry("busy") if retry else ItemResult.final(Outcome.UNENROLLED))
        return CallResult.answered(results)

    vendor = fake_vendor(decide=decide)
    report = await run(vendor, items_for(60), settings=SETTINGS)
    assert report.counts == {"unenrolled": 60}
    for i in range(60):
        assert vendor.sends_of(str(1000 + i)) == (2 if str(1000 + i) in flaky else 1)
    assert report.retried_items == len(flaky)


async def test_transient_call_failures_retry_until_the_budget_runs_out(fake_vendor: Callable[..., FakeVendor]) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if "1000" in subjects:
            raise TransportError("connection reset")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=1)
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
    got: dict[int, ItemOutcome] = {}
    report = await run(vendor, items_for(5), settings=JobSettings(retry=policy, linger=0.001),
                       sinks=[lambda o: got.__setitem__(o.index, o)])
    assert got[0].outcome is Outcome.GAVE_UP and got[0].attempts == 3
    assert "connection reset" in (got[0].message or "")
    assert report.counts == {"unenrolled": 4, "gave_up": 1}


async def test_a_poisoned_chunk_is_bisected_down_to_the_bad_items(fake_vendor: Callable[..., FakeVendor]) -> None:
    poison = {"1013", "1047"}

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if poison & set(subjects):
            return CallResult.whole(CallVerdict.SPLIT, "400", "Invalid parameter value")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=50)
    got: dict[int, ItemOutcome] = {}
    report = await run(vendor, [Item("unenroll", ("c",), str(1000 + i)) for i in range(50)],
                       settings=SETTINGS, sinks=[lambda o: got.__setitem__(o.index, o)])
    assert report.counts == {"unenrolled": 48, "failed": 2}
    assert {got[i].item.subject for i in got if got[i].outcome is Outcome.FAILED} == poison
    assert got[13].code == "400"
    # bisecting costs about 2 * log2(50) calls per bad id, not one call per item
    assert len(vendor.calls) <= 1 + 2 * 2 * 6
    assert all(vendor.sends_of(str(1000 + i)) <= 7 for i in range(50))


async def test_too_large_halves_the_cap_for_the_rest_of_the_job(fake_vendor: Callable[..., FakeVendor]) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if len(subjects) > 12:
            return CallResult.whole(CallVerdict.TOO_LARGE, "422", "Maximum limit exceeded")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=50, max_in_flight=1)
    report = await run(vendor, [Item("unenroll", ("c",), str(1000 + i)) for i in range(200)], settings=SETTINGS)
    assert report.counts == {"unenrolled": 200}
    assert report.endpoints["bulk"].cap_items == 12
    refused = [s for _, s in vendor.calls if len(s) > 12]
    assert len(refused) == 2  # 50 refused -> cap 25, 25 refused -> cap 12; then never again


async def test_a_fatal_answer_stops_the_job_and_accounts_for_everything(fake_vendor: Callable[..., FakeVendor]) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        return CallResult.whole(CallVerdict.FATAL, "ULM:01", "no permission to unenroll")

    vendor = fake_vendor(decide=decide, max_items=10, max_in_flight=1)
    got: list[ItemOutcome] = []
    report = await run(vendor, items_for(500, targets=1), settings=SETTINGS, sinks=[got.append])
    assert report.stopped == "ULM:01: no permission to unenroll"
    assert report.counts == {"not_sent": 500}
    assert len(vendor.calls) == 1
    assert_exactly_once(got, 500)
    assert not report.all_succeeded


async def test_cancelling_mid_job_still_accounts_for_every_item(fake_vendor: Callable[..., FakeVendor]) -> None:
    async def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        await anyio.sleep(0.002)
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=10)
    got: list[ItemOutcome] = []
    with anyio.CancelScope() as scope:

        def sink(outcome: ItemOutcome) -> None:
            got.append(outcome)
            if len(got) == 500:
                scope.cancel()

        await run(vendor, items_for(5000), settings=SETTINGS, sinks=[sink])
    counts = Counter(o.outcome for o in got)
    assert_exactly_once(got, 5000)
    assert counts[Outcome.UNENROLLED] > 0 and counts[Outcome.NOT_SENT] > 0
    assert set(counts) == {Outcome.UNENROLLED, Outcome.NOT_SENT}
    sent_and_answered = sum(len(s) for _, s in vendor.calls)
    assert counts[Outcome.UNENROLLED] == sent_and_answered  # calls in flight finished


async def test_throttles_pause_the_endpoint_and_do_not_spend_attempts(fake_vendor: Callable[..., FakeVendor]) -> None:
    answers = iter([CallVerdict.THROTTLED] * 3)

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if next(answers, None) is CallVerdict.THROTTLED:
            return CallResult.whole(CallVerdict.THROTTLED, "429", "slow down", retry_after=0.01)
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=10, max_in_flight=1)
    settings = JobSettings(retry=RetryPolicy(max_attempts=1), linger=0.001)
    report = await run(vendor, items_for(10, targets=1), settings=settings)
    assert report.counts == {"unenrolled": 10}
    assert report.endpoints["bulk"].throttled == 3


async def test_the_stream_yields_each_outcome_as_it_happens(fake_vendor: Callable[..., FakeVendor]) -> None:
    async def source() -> AsyncIterator[Item]:
        for item in items_for(300):
            yield item

    vendor = fake_vendor()
    seen: list[ItemOutcome] = []
    async with stream(vendor, source(), settings=SETTINGS) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome)
    assert_exactly_once(seen, 300)
    assert outcomes.report.counts == {"unenrolled": 300}


async def test_leaving_the_stream_early_stops_the_job_with_a_full_account(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    vendor = fake_vendor()
    seen: list[ItemOutcome] = []
    sink: list[ItemOutcome] = []
    async with stream(vendor, items_for(3000), settings=SETTINGS, sinks=[sink.append]) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome)
            if len(seen) == 50:
                break
    await anyio.lowlevel.checkpoint()
    assert_exactly_once(sink, 3000)
    assert outcomes.report.total == 3000
    assert sum(outcomes.report.counts.values()) == 3000


async def test_a_failing_input_stops_intake_but_finishes_what_was_read(fake_vendor: Callable[..., FakeVendor]) -> None:
    def source() -> object:
        yield from items_for(25)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    vendor = fake_vendor()
    report = await run(vendor, source(), settings=SETTINGS)  # type: ignore[arg-type]
    assert report.counts == {"unenrolled": 25}
    assert report.stopped is not None and "after 25 items" in report.stopped and "UnicodeDecodeError" in report.stopped


@pytest.mark.parametrize("seed", range(5))
async def test_random_faults_never_lose_or_double_count_an_item(
    fake_vendor: Callable[..., FakeVendor], seed: int
) -> None:
    rng = random.Random(seed)

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        roll = rng.random()
        if roll < 0.1:
            raise TransportError("dropped")
        if roll < 0.2:
            return CallResult.whole(CallVerdict.RETRY, "503", "unavailable")
        if roll < 0.25:
            return CallResult.whole(CallVerdict.THROTTLED, "429", "slow", retry_after=0.001)
        return CallResult.answered([
            rng.choice([ItemResult.final(Outcome.UNENROLLED), ItemResult.final(Outcome.NOT_ENROLLED),
                        ItemResult.retry("partial"), ItemResult.final(Outcome.FAILED, "x", "bad")])
            for _ in subjects
        ])

    vendor = fake_vendor(decide=decide, max_items=8)
    got: list[ItemOutcome] = []
    items = items_for(400, targets=5) + items_for(40, targets=5)  # 40 duplicates
    report = await run(vendor, items, settings=JobSettings(retry=RetryPolicy(max_attempts=4, base_delay=0.0005,
                                                                                max_delay=0.001), linger=0.001),
                       sinks=[got.append])
    assert_exactly_once(got, 440)
    assert report.total == 440 == sum(report.counts.values())
    assert report.counts["duplicate"] == 40
    for o in got:
        if o.outcome is Outcome.GAVE_UP:
            assert o.attempts >= 4  # throttled sends come on top of the 4 failed ones


async def test_an_internal_error_still_accounts_for_every_item_and_names_the_cause(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    def explode(outcome: ItemOutcome) -> None:
        if outcome.index == 30:
            raise RuntimeError("sink is full")

    vendor = fake_vendor()
    job = Job(vendor, items_for(100), settings=SETTINGS, sinks=[explode])
    with pytest.raises(BaseExceptionGroup):
        await job.run()
    assert job.report.stopped == "internal error: RuntimeError: sink is full"
    assert sum(job.report.counts.values()) == job.report.total == 100


# -- found by review: each pins a fixed bug ----------------------------------------------


async def test_a_lockstep_stream_stage_does_not_hang(fake_vendor: Callable[..., FakeVendor]) -> None:
    """The upstream yields its next item only after it saw the previous outcome."""
    seen_outcome = anyio.Event()

    async def upstream() -> AsyncIterator[Item]:
        nonlocal seen_outcome
        for item in items_for(3, targets=1):
            yield item
            await seen_outcome.wait()
            seen_outcome = anyio.Event()

    got: list[ItemOutcome] = []
    with anyio.fail_after(10):  # a hang fails the test instead of blocking the suite
        async with stream(fake_vendor(), upstream(), settings=JobSettings(linger=0.01)) as outcomes:
            async for outcome in outcomes:
                got.append(outcome)
                seen_outcome.set()
    assert [o.outcome for o in got] == [Outcome.UNENROLLED] * 3


async def test_a_stream_reader_gets_the_not_sent_outcomes_of_a_stopped_job(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        return CallResult.whole(CallVerdict.FATAL, "SU:02", "bad API keys")

    seen: list[ItemOutcome] = []
    async with stream(fake_vendor(decide=decide), items_for(100), settings=SETTINGS) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome)
    assert_exactly_once(seen, 100)
    assert {o.outcome for o in seen} == {Outcome.NOT_SENT}


async def test_idle_workers_spend_no_permits_on_chunks_others_take(fake_vendor: Callable[..., FakeVendor]) -> None:
    class CountingLimiter:
        def __init__(self) -> None:
            self.permits = 0

        async def acquire(self) -> Permit:
            self.permits += 1
            await anyio.sleep(0.01)
            return Permit(anyio.current_time())

        def done(self, permit: Permit) -> None:
            pass

        def pause(self, seconds: float) -> None:
            pass

    limiter = CountingLimiter()
    vendor = fake_vendor(max_items=10, max_in_flight=4)
    report = await run(vendor, items_for(30, targets=1), settings=SETTINGS, limiters={"bulk": limiter})
    assert report.counts == {"unenrolled": 30}
    assert limiter.permits == report.calls == 3


def test_settings_that_cannot_work_are_refused_up_front() -> None:
    for bad in ({"max_buffered_items": 0}, {"linger": -1.0}, {"max_throttles": -1}):
        with pytest.raises(ValueError):
            JobSettings(**bad)  # type: ignore[arg-type]
    for bad_policy in ({"multiplier": 0.5}, {"base_delay": -1.0}, {"deadline": 0.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad_policy)  # type: ignore[arg-type]
    assert RetryPolicy(multiplier=1e300, max_delay=7.0, jitter=0.0).backoff(50, random.Random(0)) == 7.0


async def test_no_item_is_resent_after_its_deadline(fake_vendor: Callable[..., FakeVendor]) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        return CallResult.whole(CallVerdict.RETRY, "503", "unavailable")

    vendor = fake_vendor(decide=decide, max_items=1)
    policy = RetryPolicy(max_attempts=100, deadline=0.1, base_delay=0.06, multiplier=1.0, jitter=0.0)
    report = await run(vendor, items_for(1), settings=JobSettings(retry=policy, linger=0.0))
    assert report.counts == {"gave_up": 1}
    # the retry falls due at 0.06 s (inside the deadline); the next at 0.12 s or later
    # (outside), however late the event loop runs: exactly two sends
    assert len(vendor.calls) == 2


async def test_an_item_meets_at_most_max_throttles_throttles(fake_vendor: Callable[..., FakeVendor]) -> None:
    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        return CallResult.whole(CallVerdict.THROTTLED, "429", "slow down", retry_after=0.0)

    vendor = fake_vendor(decide=decide, max_items=1)
    report = await run(vendor, items_for(1), settings=JobSettings(max_throttles=3, linger=0.0))
    assert report.counts == {"gave_up": 1}
    assert len(vendor.calls) == 3


async def test_one_refused_item_does_not_shrink_the_cap_below_sizes_that_worked(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    """A vendor that reads one bad item as "too large" must not turn 1,000 items into 1,000 calls."""

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if "1500" in subjects:
            return CallResult.whole(CallVerdict.TOO_LARGE, "400", "limit reached for user")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    vendor = fake_vendor(decide=decide, max_items=50, max_in_flight=1)
    report = await run(vendor, [Item("unenroll", ("c",), str(1000 + i)) for i in range(1000)], settings=SETTINGS)
    assert report.counts == {"unenrolled": 999, "failed": 1}
    assert report.endpoints["bulk"].cap_items == 50
    assert len(vendor.calls) <= 20 + 2 * 6


async def test_an_item_with_unhashable_fields_is_rejected_and_the_input_goes_on(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    items: list[Item] = [Item("unenroll", ("c",), "1"), Item("unenroll", ("c", ["x"]), "2"),  # type: ignore[list-item]
                         Item(["unenroll"], ("c",), "3"), Item("unenroll", ("c",), "4")]  # type: ignore[arg-type]
    report = await run(fake_vendor(), items, settings=SETTINGS)
    assert report.counts == {"unenrolled": 2, "rejected": 2}
    assert report.stopped is None


# -- issue 11: a second 401 after a refresh; a finite input stopped early ------------------


class CountingAuth:
    """A token per generation; ``refresh`` fetches a new one unless another caller already
    did, or raises AuthError when the token endpoint refuses the credentials."""

    def __init__(self, refused: bool = False) -> None:
        self.generation = 1
        self.fetches = 0
        self.refused = refused

    async def headers(self) -> tuple[int, Mapping[str, str]]:
        return self.generation, {"Authorization": f"Bearer t{self.generation}"}

    async def refresh(self, generation: int) -> bool:
        if self.refused:
            raise AuthError("token endpoint refused the credentials (HTTP 400)")
        if generation != self.generation:
            return False
        self.generation += 1
        self.fetches += 1
        return True


def unauthorised_first(calls: int) -> Callable[[tuple[str, ...], Sequence[str]], CallResult]:
    answered = 0

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        nonlocal answered
        answered += 1
        if answered <= calls:
            return CallResult.whole(CallVerdict.AUTH_EXPIRED, "401", "invalid token")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    return decide


async def test_a_second_401_right_after_a_refresh_is_retried_not_failed(fake_vendor: Callable[..., FakeVendor]) -> None:
    vendor = fake_vendor(decide=unauthorised_first(3), max_items=10, max_in_flight=1)
    vendor.auth = auth = CountingAuth()  # type: ignore[assignment]
    report = await run(vendor, items_for(10, targets=1), settings=SETTINGS)
    assert report.counts == {"unenrolled": 10}
    # 401, refresh, 401 (a spent attempt, with backoff), 401, refresh, answered
    assert len(vendor.calls) == 4
    assert auth.fetches == report.endpoints["bulk"].auth_refreshes == 2
    assert report.retried_items == 10


async def test_401s_for_ever_end_gave_up_within_the_retry_budget_never_failed(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    vendor = fake_vendor(decide=unauthorised_first(10**9), max_items=10, max_in_flight=1)
    vendor.auth = auth = CountingAuth()  # type: ignore[assignment]
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
    got: list[ItemOutcome] = []
    report = await run(vendor, items_for(10, targets=1), settings=JobSettings(retry=policy, linger=0.0),
                       sinks=[got.append])
    assert report.counts == {"gave_up": 10}
    assert report.stopped is None
    assert len(vendor.calls) == 6  # each attempt: a send, one refresh, a re-send
    assert auth.fetches == 3
    assert {(o.code, o.attempts) for o in got} == {("401", 6)}
    # credentials the token endpoint refuses outright still stop the job
    refusing = fake_vendor(decide=unauthorised_first(10**9), max_items=10, max_in_flight=1)
    refusing.auth = CountingAuth(refused=True)  # type: ignore[assignment]
    report = await run(refusing, items_for(10, targets=1), settings=JobSettings(retry=policy, linger=0.0))
    assert report.counts == {"not_sent": 10}
    assert report.stopped is not None and "refused the credentials" in report.stopped


def fatal_after(calls: int) -> Callable[[tuple[str, ...], Sequence[str]], CallResult]:
    answered = 0

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        nonlocal answered
        answered += 1
        if answered > calls:
            return CallResult.whole(CallVerdict.FATAL, "403", "no permission")
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    return decide


async def test_a_finite_input_stopped_early_is_accounted_for_in_full(fake_vendor: Callable[..., FakeVendor]) -> None:
    """5,000 items, a 403 after two calls: every item of the input has its outcome, the
    untaken rest ``not_sent``, and the intake's rules still hold for it."""
    items: list[object] = [*items_for(4_990), *items_for(5), *[Item("unenroll", ("c0",), "abc")] * 5]
    vendor = fake_vendor(decide=fatal_after(2), max_items=10, max_in_flight=1)
    got: list[ItemOutcome] = []
    settings = JobSettings(retry=FAST_RETRY, linger=0.0, max_buffered_items=100)
    report = await run(vendor, items, settings=settings, sinks=[got.append])
    assert report.stopped == "403: no permission"
    assert_exactly_once(got, 5_000)
    assert report.total == 5_000 == sum(report.counts.values())
    assert report.input_complete
    assert report.counts == {"unenrolled": 20, "duplicate": 5, "rejected": 5, "not_sent": 4_970}
    by_index = {o.index: o.outcome for o in got}
    assert [by_index[i] for i in range(4_990, 5_000)] == [Outcome.DUPLICATE] * 5 + [Outcome.REJECTED] * 5


async def test_a_stream_stopped_early_says_how_much_of_it_was_taken_in(fake_vendor: Callable[..., FakeVendor]) -> None:
    taken = 0

    async def source() -> AsyncIterator[Item]:
        nonlocal taken
        for item in items_for(5_000):
            taken += 1
            yield item

    vendor = fake_vendor(decide=fatal_after(2), max_items=10, max_in_flight=1)
    report = await run(vendor, source(), settings=JobSettings(retry=FAST_RETRY, linger=0.0, max_buffered_items=100))
    assert report.stopped == "403: no permission"
    assert not report.input_complete
    assert report.total == sum(report.counts.values()) < 5_000
    assert report.as_dict()["input_complete"] is False
    assert "not read" in report.summary()
    whole = await run(fake_vendor(), items_for(30), settings=SETTINGS)
    assert whole.input_complete and whole.as_dict()["input_complete"] is True
