"""The progress display (unenroll.observe.progress): waits count down, the ETA comes from
the limits, the pauses and the daily budget, and what other runs spend of the quota."""

from __future__ import annotations

import io
import itertools

import pytest
from rich.console import Console

from unenroll import EndpointSpec
from unenroll.accounts.ledger import EndpointStats, Report
from unenroll.limits.memory_quota import MemoryQuotaStore
from unenroll.limits.quota import QuotaKey, SharedWindowLimiter, WindowRule
from unenroll.limits.window import RollingWindowLimiter
from unenroll.observe.progress import (
    DailyBudget,
    LiveDisplay,
    LogProgress,
    ObservedLimiter,
    Progress,
    QuotaWatch,
    days_beyond_budget,
    render_line,
)

KEY = QuotaKey("vendor", "https://tenant.example", "api")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_progress_line_says_what_other_runs_spend_of_the_quota() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    rules = [WindowRule(30, 60.0)]
    for _ in range(12):
        assert store.acquire_step(KEY, rules, participant="another run", call_timeout=5.0).call_id is not None
    mine = SharedWindowLimiter(store, KEY, rules, 5.0, participant="this run")
    progress = Progress(100, {}, {}, {}, clock)
    watch = QuotaWatch(progress, [mine])
    await watch.look()
    line = render_line(progress.snapshot(), width=200)
    assert line.endswith("| 12 of 30 calls per minute are used by another run"), line
    clock.now += 61.0  # their calls left the window: nothing to say
    await watch.look()
    assert progress.snapshot().shared is None
    assert "another run" not in render_line(progress.snapshot(), width=200)


async def test_an_unreadable_store_keeps_the_last_words_and_stops_nothing() -> None:
    class Unreachable(MemoryQuotaStore):
        async def usage(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise ConnectionError("the store is down")

    progress = Progress(1, {}, {}, {})
    progress.shared = "3 of 30 calls per minute are used by another run"
    await QuotaWatch(progress, [SharedWindowLimiter(Unreachable(), KEY, [WindowRule(30, 60.0)], 5.0)]).look()
    assert progress.shared == "3 of 30 calls per minute are used by another run"


# -- waits count down, the ETA comes from the limits (a fake clock) --------------------------------


def pause_rig(clock: Clock, planned: int = 100) -> tuple[Progress, ObservedLimiter, list[float]]:
    class Inner:
        paused: list[float] = []

        async def acquire(self) -> None: ...

        def pause(self, seconds: float) -> None:
            self.paused.append(seconds)

    spec = EndpointSpec("unenroll", max_calls=30, window=60.0)
    inner = Inner()
    limiter = ObservedLimiter(inner, clock=clock)  # type: ignore[arg-type]
    progress = Progress(1000, {"unenroll": planned}, {"unenroll": spec}, {"unenroll": limiter}, clock=clock)
    return progress, limiter, inner.paused


def test_a_pause_counts_down_and_the_eta_falls_with_it() -> None:
    clock = Clock()
    progress, limiter, forwarded = pause_rig(clock)
    limiter.pause(300.0)  # a Zoho lock: 5 minutes
    assert forwarded == [300.0]  # forwarded unchanged: the wrapper only watches
    first = progress.snapshot()
    assert first.wait == "paused 5 min more (the vendor throttled unenroll)"
    assert first.eta == pytest.approx(300.0 + 180.0)  # the pause, then 100 calls at 30 a minute: 3 more windows
    etas = []
    for _ in range(30):  # nothing but time passes: 10 s at a time
        clock.now += 10.0
        etas.append(progress.snapshot().eta)
    assert all(later <= earlier for earlier, later in itertools.pairwise([first.eta, *etas]))  # never rises
    clock.now = 160.0  # 60 s into the pause
    later = progress.snapshot()
    assert later.wait == "paused 4 min more (the vendor throttled unenroll)" and later.wait_left == pytest.approx(240)
    assert later.eta == pytest.approx(first.eta - 60.0)
    assert "ETA 7 min | paused 4 min more" in render_line(later, width=200)


async def test_a_rate_limit_wait_counts_down_to_the_next_call() -> None:
    clock = Clock()
    spec = EndpointSpec("unenroll", max_calls=30, window=60.0)
    window = RollingWindowLimiter(30, 60.0, clock=clock)
    limiter = ObservedLimiter(window, clock=clock)
    progress = Progress(1000, {"unenroll": 100}, {"unenroll": spec}, {"unenroll": limiter}, clock=clock)
    progress.report = Report("zoho", endpoints={"unenroll": EndpointStats(calls=30)})
    for _ in range(30):  # the window is full; each answer back at once
        limiter.done(await limiter.acquire())
    limiter.waiters, limiter.waiting_since = 1, clock.now  # the 31st call waits
    clock.now += 10.0
    at_10 = progress.snapshot()
    assert at_10.wait == "next call in 50 s (rate limit: 30 calls/1 min)" and at_10.wait_left == pytest.approx(50)
    assert at_10.eta == pytest.approx(50 + 120)  # 70 calls left: 30 in 50 s, 30 a minute later, 10 one more later
    clock.now += 30.0
    at_40 = progress.snapshot()
    assert at_40.wait == "next call in 20 s (rate limit: 30 calls/1 min)"
    assert at_40.eta == pytest.approx(at_10.eta - 30.0)


def test_calls_beyond_todays_budget_count_whole_days() -> None:
    assert days_beyond_budget(50, 60, 100) == 0
    assert days_beyond_budget(50, 10, 100) == 1
    assert days_beyond_budget(250, 0, 100) == 3
    clock = Clock()
    spec = EndpointSpec("unenroll", max_calls=30, window=60.0)
    limiter = ObservedLimiter(RollingWindowLimiter(30, 60.0, clock=clock), clock=clock)
    daily = DailyBudget(100, 86400.0, frozenset({"unenroll"}))
    progress = Progress(1000, {"unenroll": 50}, {"unenroll": spec}, {"unenroll": limiter}, clock=clock, daily=daily)
    assert progress.snapshot().eta == pytest.approx(60.0)  # 50 calls fit today's 100
    progress.budget_used = 90  # other runs spent most of today's budget
    assert progress.snapshot().eta == pytest.approx(60.0 + 86400.0)


def test_the_observed_pace_leaves_out_the_vendors_pauses_and_counts_down_between_calls() -> None:
    clock = Clock()
    progress, limiter, _ = pause_rig(clock)
    limiter.pause(12.0)
    clock.now += 60.0  # a minute later, 10 calls made: a pace far slower than the limits allow
    progress.report = Report("zoho", endpoints={"unenroll": EndpointStats(calls=10)})
    assert progress.snapshot().eta == pytest.approx(90 * 4.8)  # 48 s outside the pause for 10 calls
    clock.now += 20.0
    assert progress.snapshot().eta == pytest.approx(90 * 4.8 - 20.0)  # no new call: it counts down


def test_the_live_display_draws_the_bar_and_prints_logs_above_it() -> None:
    clock = Clock()
    progress, limiter, _ = pause_rig(clock)
    limiter.pause(30.0)
    out = io.StringIO()
    display = LiveDisplay(progress, "sending", Console(file=out, force_terminal=True, width=160, color_system=None))
    display.console.print(display.renderable())
    display.log_stream().write("a log line\n")
    text = out.getvalue()
    assert "sending" in text and "0/1,000" in text and "paused 30 s more" in text and "ETA" in text
    assert text.rstrip().endswith("a log line")


def test_the_log_events_carry_the_phase_and_the_wait_left() -> None:
    clock = Clock()
    progress, limiter, _ = pause_rig(clock)
    limiter.pause(30.0)
    said: list[tuple[str, dict[str, object]]] = []

    class Logger:
        def info(self, event: str, **fields: object) -> None:
            said.append((event, fields))

    LogProgress(progress, Logger(), event="backup.progress").emit()
    (event, fields), = said
    assert event == "backup.progress" and fields["wait_left_s"] == 30.0 and fields["total"] == 1000
