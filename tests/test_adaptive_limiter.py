"""The adaptive (AIMD) limiter's invariant, and that it converges on a vendor's unknown rate."""

from __future__ import annotations

import itertools
import math

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unenroll.contract.declarations import EndpointSpec
from unenroll.contract.mock import ThresholdCounter
from unenroll.limits.adaptive import AdaptiveRate, AdaptiveRateLimiter, AimdSchedule

EPS = 1e-9

rates = st.builds(
    lambda floor, start_share, ceiling_share, increase_share, decrease: AdaptiveRate(
        start_rate=min(floor * ceiling_share, floor + (floor * ceiling_share - floor) * start_share),
        max_rate=floor * ceiling_share,
        min_rate=floor,
        increase_share=increase_share,
        decrease=decrease,
    ),
    floor=st.floats(0.01, 2.0),
    start_share=st.floats(0.0, 1.0),
    ceiling_share=st.floats(1.0, 500.0),
    increase_share=st.floats(0.0, 1.0),
    decrease=st.floats(0.05, 0.95),
)

# ("call", gap before the caller arrives) or ("throttle", seconds of pause)
events = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.floats(0.0, 3.0)),
        st.tuples(st.just("throttle"), st.floats(0.0, 10.0)),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=400, deadline=None)
@given(rate=rates, events=events)
def test_the_aimd_invariant_holds_for_any_calls_and_throttles(
    rate: AdaptiveRate, events: list[tuple[str, float]]
) -> None:
    schedule = AimdSchedule(rate)
    now = 0.0
    last_start: float | None = None
    pause_ends = -math.inf
    started_since_decrease = False
    step = rate.increase_share * rate.start_rate
    for kind, value in events:
        if kind == "call":
            now += value
            start = schedule.earliest_start(now)
            assert start >= now
            assert start >= pause_ends  # 3. no call starts before a pause ends
            if last_start is not None:
                gap = start - last_start
                assert gap >= 1.0 / rate.max_rate - EPS  # 1. the ceiling is never exceeded
                assert gap >= schedule.interval - EPS  # 2. spaced by the rate in force
            before = schedule.rate
            schedule.record(start)
            assert schedule.rate == pytest.approx(min(rate.max_rate, before + step))  # 5. linear growth
            now = last_start = start
            started_since_decrease = True
        else:
            before = schedule.rate
            schedule.throttled(now, value)
            pause_ends = max(pause_ends, now + value)
            if started_since_decrease:  # 4. multiplicative decrease, floored
                assert schedule.rate <= max(rate.min_rate, rate.decrease * before) + EPS
                started_since_decrease = False
                step = rate.increase_share * before
            else:  # only answers to calls from before the last decrease: no second cut
                assert schedule.rate == before
        assert rate.min_rate - EPS <= schedule.rate <= rate.max_rate + EPS  # 1.


def test_calls_without_a_throttle_creep_the_rate_up_to_the_ceiling() -> None:
    schedule = AimdSchedule(AdaptiveRate(start_rate=1.0, max_rate=2.0, min_rate=0.5, increase_share=0.25))
    seen = []
    for _ in range(6):
        schedule.record(schedule.earliest_start(0.0))
        seen.append(schedule.rate)
    assert seen == [1.25, 1.5, 1.75, 2.0, 2.0, 2.0]


def test_a_throttle_halves_the_rate_once_per_round_and_never_below_the_floor() -> None:
    schedule = AimdSchedule(AdaptiveRate(start_rate=4.0, max_rate=4.0, min_rate=0.75, increase_share=0.0,
                                         decrease=0.5))
    schedule.record(0.0)
    schedule.throttled(0.1, 1.0)
    assert schedule.rate == 2.0
    schedule.throttled(0.2, 1.0)  # a second answer from the same round
    assert schedule.rate == 2.0 and schedule.decreases == 1
    for _ in range(3):
        schedule.record(schedule.earliest_start(0.0))
        schedule.throttled(0.0, 0.0)
    assert schedule.rate == 0.75
    assert schedule.earliest_start(0.0) >= 1.1  # the first pause is honoured


def _simulate(vendor_calls: int, vendor_window: float, calls: int, rate: AdaptiveRate,
              latency: float = 0.01) -> tuple[float, int, ThresholdCounter]:
    """``calls`` accepted calls against a vendor allowing ``vendor_calls`` per rolling
    ``vendor_window``, answering 429 with ``Retry-After`` the rest of its lock; virtual time."""
    vendor = ThresholdCounter(vendor_calls, vendor_window, vendor_window)
    schedule = AimdSchedule(rate)
    now, accepted = 0.0, 0
    while accepted < calls:
        start = schedule.earliest_start(now)
        schedule.record(start)
        now = start
        if vendor.hit(start):
            accepted += 1
        else:
            schedule.throttled(start + latency, vendor.locked_until - start)
    return now, vendor.lock_events, vendor


@pytest.mark.parametrize(("vendor_calls", "vendor_window"), [(30, 60.0), (100, 60.0), (5, 60.0), (10, 1.0)])
def test_a_long_job_converges_on_the_vendors_unknown_rate(vendor_calls: int, vendor_window: float) -> None:
    """Over half the vendor's rate (or of our ceiling, if lower), with throttles a small
    share of the calls (about increase_share / (1 - decrease) = 4 %) and never a call
    while a Retry-After is in force."""
    calls = 2_000
    rate = AdaptiveRate(start_rate=1.0, max_rate=5.0)
    virtual_seconds, throttles, vendor = _simulate(vendor_calls, vendor_window, calls, rate)
    reachable = min(vendor_calls / vendor_window, rate.max_rate)
    assert calls / virtual_seconds >= 0.5 * reachable  # simulated time: no clock involved
    assert throttles <= calls // 20
    assert vendor.refused == vendor.lock_events


def test_scaling_divides_every_rate() -> None:
    rate = AdaptiveRate(start_rate=1.0, max_rate=5.0, min_rate=0.5, increase_share=0.1, decrease=0.5).scaled(0.01)
    assert (rate.start_rate, rate.max_rate, rate.min_rate) == pytest.approx((100.0, 500.0, 50.0))
    assert rate.increase_share == 0.1 and rate.decrease == 0.5


@pytest.mark.parametrize("kwargs", [
    {"start_rate": 10.0, "max_rate": 5.0},
    {"min_rate": 0.0},
    {"decrease": 1.0},
    {"decrease": 0.0},
    {"increase_share": -0.1},
    {"increase_share": 1.5},
])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveRate(**kwargs)


def test_an_endpoint_builds_it_through_its_limiter_factory() -> None:
    spec = EndpointSpec("api", limiter_factory=lambda spec: AdaptiveRate().scaled(0.01).limiter())
    limiter = spec.make_limiter()
    assert isinstance(limiter, AdaptiveRateLimiter)
    assert limiter.rate == pytest.approx(100.0)


async def test_concurrent_callers_are_spaced_by_the_ceiling_on_the_real_clock() -> None:
    limiter = AdaptiveRate(start_rate=200.0, max_rate=400.0, min_rate=1.0, increase_share=0.5).limiter()
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(call)
    starts.sort()
    assert len(starts) == 12
    assert all(b - a >= 1 / 400.0 - EPS for a, b in itertools.pairwise(starts))
    assert limiter.rate == 400.0


async def test_a_pause_holds_every_caller_and_slows_the_rate() -> None:
    limiter = AdaptiveRate(start_rate=100.0, max_rate=100.0, min_rate=1.0, increase_share=0.0).limiter()
    await limiter.acquire()
    limiter.pause(0.05)
    paused_at = anyio.current_time()
    await limiter.acquire()
    assert anyio.current_time() - paused_at >= 0.05
    assert limiter.pauses == 1 and limiter.decreases == 1
    assert limiter.rate == 50.0
    assert "rate=50/s" in repr(limiter)
