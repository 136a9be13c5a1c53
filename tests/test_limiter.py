"""The rolling-window limiter's invariant: never more than N call starts in any window W."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unenroll.limits.adaptive import AdaptiveRateLimiter
from unenroll.limits.window import (
    LONGEST_PAUSE,
    Permit,
    RollingWindowLimiter,
    UnlimitedLimiter,
    WindowSchedule,
    sane_pause,
)


def _most_in_any_window(starts: list[float], window: float) -> int:
    """The most starts inside any half-open window [t, t + window)."""
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@settings(max_examples=300, deadline=None)
@given(
    max_calls=st.integers(1, 40),
    window=st.floats(0.5, 120.0),
    min_interval=st.sampled_from([0.0, 0.1, 2.0]),
    calls=st.lists(
        st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 30.0), st.floats(0.0, 1.0)),  # gap, latency, where it lands
        min_size=1, max_size=250,
    ),
    pause_at=st.one_of(st.none(), st.integers(0, 249)),
)
def test_the_vendor_never_sees_more_than_max_calls_in_any_window(
    max_calls: int, window: float, min_interval: float, calls: list[tuple[float, float, float]], pause_at: int | None
) -> None:
    """Whatever each call's latency, and wherever in its flight it reaches the vendor."""
    schedule = WindowSchedule(max_calls, window, min_interval=min_interval)
    in_flight: list[tuple[float, Permit]] = []  # (end, permit)
    starts: list[float] = []
    arrivals: list[float] = []
    now = 0.0
    for i, (gap, latency, lands_at) in enumerate(calls):
        now += gap
        if pause_at == i:
            schedule.pause_until(now + window / 2)
        while True:
            for end, permit in [f for f in in_flight if f[0] <= now]:
                permit.end = end  # its answer came back
            in_flight = [f for f in in_flight if f[0] > now]
            at = schedule.earliest_start(now)
            if at <= now:
                permit = schedule.record(now)
                in_flight.append((now + latency, permit))
                starts.append(now)
                arrivals.append(now + lands_at * latency)
                break
            now = min([at, *(end for end, _ in in_flight)])  # the next thing that can change
    assert _most_in_any_window(sorted(arrivals), window) <= max_calls
    if min_interval:
        assert all(b - a >= min_interval - 1e-9 for a, b in itertools.pairwise(starts))


@settings(max_examples=200, deadline=None)
@given(max_calls=st.integers(1, 30), window=st.floats(1.0, 60.0), calls=st.integers(1, 200))
def test_a_backlog_of_instant_calls_runs_at_exactly_the_limit(max_calls: int, window: float, calls: int) -> None:
    """No idle time either: with everything queued at t=0 and instant answers, call k
    starts at (k // N) * W."""
    schedule = WindowSchedule(max_calls, window)
    for k in range(calls):
        start = schedule.earliest_start(0.0)
        assert abs(start - (k // max_calls) * window) < 1e-6 * max(1.0, start)
        schedule.record(start).end = start


def test_a_call_in_flight_holds_the_start_that_depends_on_it() -> None:
    schedule = WindowSchedule(2, 10.0, margin=0.5)
    first = schedule.record(0.0)
    schedule.record(0.0).end = 0.1
    assert schedule.earliest_start(3.0) < 3.0 + 1.0  # a time to look again, not a start
    assert schedule.earliest_start(3.0) > 3.0
    first.end = 4.0  # its answer came back late: the window counts from there
    assert 14.5 <= schedule.earliest_start(5.0) < 14.5 + 1e-9


async def test_concurrent_acquirers_respect_the_window_on_the_real_clock() -> None:
    limiter = RollingWindowLimiter(5, 0.05)
    starts: list[float] = []

    async def call() -> None:
        permit = await limiter.acquire()
        starts.append(anyio.current_time())
        limiter.done(permit)

    async with anyio.create_task_group() as tg:
        for _ in range(17):
            tg.start_soon(call)
    starts.sort()
    assert len(starts) == 17
    assert _most_in_any_window(starts, 0.05) <= 5


async def test_a_pause_holds_every_caller_until_it_ends() -> None:
    limiter = RollingWindowLimiter(100, 1.0)
    limiter.pause(0.05)
    paused_at = anyio.current_time()
    await limiter.acquire()
    assert anyio.current_time() - paused_at >= 0.05
    assert limiter.pauses == 1


@pytest.mark.parametrize("make", [
    lambda clock: RollingWindowLimiter(5, 1.0, clock=clock),
    lambda clock: UnlimitedLimiter(clock=clock),
    lambda clock: AdaptiveRateLimiter(clock=clock),
], ids=["rolling", "unlimited", "adaptive"])
def test_a_pause_is_never_for_ever_and_garbage_never_lifts_one(make: Callable[[Callable[[], float]], Any]) -> None:
    """Whatever ``pause`` is given, the limiter resumes by LONGEST_PAUSE from now at the latest,
    and a NaN or negative pause changes nothing."""
    now = 100.0
    limiter = make(lambda: now)
    limiter.pause(10.0)
    for garbage in (math.nan, -5.0, -math.inf, 0.0):
        limiter.pause(garbage)
        assert limiter.paused_until == 110.0
    limiter.pause(math.inf)
    assert limiter.paused_until == 100.0 + LONGEST_PAUSE
    limiter.pause(1e300)
    assert limiter.paused_until == 100.0 + LONGEST_PAUSE


def test_pause_seconds_are_made_sane() -> None:
    assert [sane_pause(s) for s in (math.nan, -1.0, -math.inf, 0.0, 2.5, math.inf, 1e300)] == [
        0.0, 0.0, 0.0, 0.0, 2.5, LONGEST_PAUSE, LONGEST_PAUSE]
    assert math.isfinite(LONGEST_PAUSE)
