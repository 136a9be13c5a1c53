"""The rolling-window limiter's invariant: never more than N call starts in any window W."""

from __future__ import annotations

import itertools

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from unenroll.limiter import RollingWindowLimiter, WindowSchedule


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
    gaps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=300),
    pause_at=st.one_of(st.none(), st.integers(0, 299)),
)
def test_no_window_ever_holds_more_than_max_calls(
    max_calls: int, window: float, min_interval: float, gaps: list[float], pause_at: int | None
) -> None:
    schedule = WindowSchedule(max_calls, window, min_interval=min_interval)
    starts: list[float] = []
    arrival = 0.0
    for i, gap in enumerate(gaps):
        arrival += gap
        if pause_at == i:
            schedule.pause_until(arrival + window / 2)
        now = max(arrival, starts[-1] if starts else 0.0)  # callers are served in order
        start = schedule.earliest_start(now)
        assert start >= now
        schedule.record(start)
        starts.append(start)
    assert _most_in_any_window(starts, window) <= max_calls
    if min_interval:
        assert all(b - a >= min_interval - 1e-9 for a, b in itertools.pairwise(starts))


@settings(max_examples=200, deadline=None)
@given(max_calls=st.integers(1, 30), window=st.floats(1.0, 60.0), calls=st.integers(1, 200))
def test_a_backlog_runs_at_exactly_the_limit(max_calls: int, window: float, calls: int) -> None:
    """No idle time either: with everything queued at t=0, call k starts at (k // N) * W."""
    schedule = WindowSchedule(max_calls, window)
    for k in range(calls):
        start = schedule.earliest_start(0.0)
        assert abs(start - (k // max_calls) * window) < 1e-6 * max(1.0, start)
        schedule.record(start)


def test_margin_widens_our_window() -> None:
    schedule = WindowSchedule(2, 10.0, margin=0.5)
    for _ in range(2):
        schedule.record(schedule.earliest_start(0.0))
    assert 10.5 <= schedule.earliest_start(0.0) < 10.5 + 1e-9


async def test_concurrent_acquirers_respect_the_window_on_the_real_clock() -> None:
    limiter = RollingWindowLimiter(5, 0.05)
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(anyio.current_time())

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
