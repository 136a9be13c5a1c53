"""Watching a job: items ended, calls made, the current wait counting down and why, and an
ETA from the limits. A live display on a terminal (rich); ``run.progress`` log events
(JSON lines) otherwise. The backup shows the same (``backup.progress``).

:class:`ObservedLimiter` wraps an endpoint's limiter and only watches it: both methods
forward unchanged, so the limiter's guarantee is the wrapped one's. :class:`Progress` is
a ledger sink (it counts outcomes as they happen) and reads the running job's report for
its calls; nothing here can slow the job down or change what it does.

The ETA (:meth:`Progress.snapshot`) is, for the slowest endpoint: the wait before its next
call may leave (a pause in force, or the limit's window, as the limiter counts it) plus the
least time the endpoint's limits allow for the calls still planned after it
(:meth:`~unenroll.EndpointSpec.least_seconds_for`), plus whole days when the tenant's daily
budget cannot hold those calls today. So while only time passes, waits count down and the
ETA falls with them. Once a few calls have been made, a slower observed pace takes over
(latency, not the limits, then bounds the job): projected when a call is made, from the
time spent outside the vendor's pauses, and counted down from then on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from unenroll.accounts.ledger import Report
from unenroll.contract.declarations import EndpointSpec
from unenroll.limits.budget import DAY_GROUP
from unenroll.limits.quota import SharedWindowLimiter
from unenroll.limits.window import CallLimiter, Permit
from unenroll.model import ItemOutcome, Outcome
from unenroll.planning.durations import format_duration

SHOW_WAITS_LONGER_THAN = 0.3  # seconds: shorter waits are the limiter's normal spacing
MIN_CALLS_FOR_PACE = 3  # calls made before the observed pace counts in the ETA


class ObservedLimiter:
    """A :class:`CallLimiter` that records, for display, who waits and the vendor's pauses."""

    __slots__ = ("_clock", "inner", "paused_seconds", "paused_until", "pauses", "waiters", "waiting_since")

    def __init__(self, inner: CallLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self.waiters = 0
        self.waiting_since = 0.0
        self.paused_until = 0.0
        self.pauses = 0
        self.paused_seconds = 0.0  # the vendor's pauses, overlaps counted once

    async def acquire(self) -> Permit:
        self.waiters += 1
        if self.waiters == 1:
            self.waiting_since = self._clock()
        try:
            return await self.inner.acquire()
        finally:
            self.waiters -= 1
            if self.waiters:
                self.waiting_since = self._clock()

    def done(self, permit: Permit) -> None:
        self.inner.done(permit)

    def pause(self, seconds: float) -> None:
        now = self._clock()
        until = now + seconds
        if until > self.paused_until:  # a NaN is never later
            self.paused_seconds += until - max(self.paused_until, now)
            self.paused_until = until
        self.pauses += 1
        self.inner.pause(seconds)

    def wait_left(self) -> float | None:
        """Seconds until the next call may leave, as the limiter counts it (``None``: it
        cannot tell); at least the pause this wrapper saw, counted down on its clock."""
        paused = max(0.0, self.paused_until - self._clock())
        free = getattr(self.inner, "seconds_until_free", None)
        try:
            left = free() if free is not None else None
        except Exception:  # a limiter that cannot say now: the display shows the wait so far
            left = None
        return paused if left is None and paused > 0 else (None if left is None else max(left, paused))

    def observe(self, permit: Permit, *how: Any) -> None:
        """Passed on to a limiter that learns from each answer (``observe``)."""
        observe = getattr(self.inner, "observe", None)
        if observe is not None:
            observe(permit, *how)


def observe(specs: Mapping[str, EndpointSpec], clock: Callable[[], float] = time.monotonic,
            ) -> dict[str, ObservedLimiter]:
    """A watched limiter per endpoint, each the one its spec would make."""
    return {name: ObservedLimiter(spec.make_limiter(), clock) for name, spec in specs.items()}


@dataclass(frozen=True, slots=True)
class Snapshot:
    ended: int
    total: int
    ok: int  # done, or already in the wanted state
    failed: int  # failed or gave up
    skipped: int  # rejected or duplicate
    not_sent: int
    calls: int
    elapsed: float
    wait: str | None  # the current wait, counting down, and why
    eta: float | None  # seconds, from the limits
    shared: str | None = None  # what other runs spend of the tenant's quota now
    wait_left: float | None = None  # the current wait's seconds left


_SKIPPED = frozenset({Outcome.REJECTED, Outcome.DUPLICATE})
_FAILED = frozenset({Outcome.FAILED, Outcome.GAVE_UP})


@dataclass(frozen=True, slots=True)
class DailyBudget:
    """The tenant's daily call budget, for the ETA: ``calls`` per ``day`` seconds, counted on
    the endpoints named in ``endpoints``; ``used`` is set by whoever reads the shared quota."""

    calls: int
    day: float
    endpoints: frozenset[str]


def days_beyond_budget(calls_left: int, budget_left: int, per_day: int) -> int:
    """Whole days the job must wait for the budget: 0 when today's budget holds the calls left."""
    if calls_left <= budget_left:
        return 0
    return math.ceil((calls_left - budget_left) / per_day)


class Progress:
    """Counts outcomes (it is a ledger sink) and reads calls from the job's report."""

    def __init__(
        self,
        total: int,
        planned_calls: Mapping[str, int],
        specs: Mapping[str, EndpointSpec],
        limiters: Mapping[str, ObservedLimiter],
        clock: Callable[[], float] = time.monotonic,
        daily: DailyBudget | None = None,
    ) -> None:
        self.total = total
        self.planned_calls = dict(planned_calls)
        self.specs = specs
        self.limiters = limiters
        self.report: Report | None = None
        self.calls_of: Callable[[], Mapping[str, int]] | None = None  # calls per endpoint, where no report says
        self.shared: str | None = None  # set by whoever watches the shared quota (QuotaWatch)
        self.daily = daily
        self.budget_used: int = 0  # calls counting against the daily budget now (QuotaWatch)
        self._clock = clock
        self._started = clock()
        self._pace: dict[str, tuple[int, float]] = {}  # endpoint -> (calls made, projected end) when last seen
        self.ended = self.ok = self.failed = self.skipped = self.not_sent = 0

    def __call__(self, outcome: ItemOutcome) -> None:
        self.ended += 1
        kind = outcome.outcome
        if kind.is_success:
            self.ok += 1
        elif kind in _FAILED:
            self.failed += 1
        elif kind in _SKIPPED:
            self.skipped += 1
        else:
            self.not_sent += 1

    def set_ended(self, ended: int, ok: int | None = None) -> None:
        """For a phase that counts in bulk (a backup's records): ``ended`` so far, ``ok`` of them."""
        self.ended = ended
        self.ok = ended if ok is None else ok

    def _calls(self) -> dict[str, int]:
        if self.report is None:
            return dict(self.calls_of()) if self.calls_of is not None else {}
        return {name: stats.calls for name, stats in self.report.endpoints.items()}

    def _paced_end(self, name: str, made: int, remaining: int, now: float, paused: float) -> float:
        """When the observed pace would end the endpoint's calls, fixed when a call is made
        (so it counts down between calls); time in the vendor's pauses is not pace."""
        seen = self._pace.get(name)
        if seen is None or seen[0] != made:
            active = max(0.0, now - self._started - paused)
            end = now + remaining * active / made if made >= MIN_CALLS_FOR_PACE else now
            self._pace[name] = seen = (made, end)
        return seen[1]

    def snapshot(self) -> Snapshot:
        now = self._clock()
        calls = self._calls()
        wait: str | None = None
        wait_left: float | None = None
        eta = 0.0
        elapsed = now - self._started
        budgeted_left = 0
        for name, limiter in self.limiters.items():
            spec = self.specs.get(name)
            paused = max(0.0, limiter.paused_until - now)
            left = limiter.wait_left()
            waiting = limiter.waiters and now - limiter.waiting_since > SHOW_WAITS_LONGER_THAN
            if wait is None and paused > 0:
                wait, wait_left = f"paused {format_duration(_whole(paused))} more (the vendor throttled {name})", \
                    paused
            elif wait is None and waiting:
                limit = (f": {spec.max_calls} calls/{format_duration(spec.window)}"
                         if spec is not None and spec.max_calls is not None else "")
                if left is not None and left > 0:
                    wait, wait_left = f"next call in {format_duration(_whole(left))} (rate limit{limit})", left
                elif left is None:
                    wait = f"waiting {format_duration(round(now - limiter.waiting_since))} (rate limit{limit})"
            if spec is None:
                continue
            made = calls.get(name, 0)
            remaining = max(0, self.planned_calls.get(name, 0) - made)
            if remaining == 0 and self.ended < self.total and self.planned_calls.get(name):
                remaining = 1
            if self.daily is not None and name in self.daily.endpoints:
                budgeted_left += remaining
            start_in = max(paused, left or 0.0) if remaining else 0.0
            by_limits = start_in + spec.least_seconds_for(remaining)
            by_pace = self._paced_end(name, made, remaining, now, limiter.paused_seconds) - now
            eta = max(eta, by_limits, by_pace)
        if self.daily is not None:
            days = days_beyond_budget(budgeted_left, max(0, self.daily.calls - self.budget_used), self.daily.calls)
            eta += days * self.daily.day
        return Snapshot(self.ended, self.total, self.ok, self.failed, self.skipped, self.not_sent,
                        sum(calls.values()), elapsed, wait,
                        0.0 if self.ended >= self.total else eta, self.shared, wait_left)


def render_line(s: Snapshot, width: int = 100) -> str:
    """As plain text: ``[#####.....] 1,234/5,000 | ok 1,200 failed 4 skipped 30 | 45 calls | ETA | wait``."""
    share = s.ended / s.total if s.total else 1.0
    bar_width = 20
    filled = int(share * bar_width)
    line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {describe(s)}"
    return line if len(line) <= width else line[: max(0, width - 3)] + "..."


def _whole(seconds: float) -> float:
    """Seconds shown whole, rounded up (a float a hair above a whole second is that second)."""
    return float(max(1, math.ceil(seconds - 1e-3)))


def describe(s: Snapshot) -> str:
    """The words beside the bar: counts, calls, the ETA, the wait counting down, the others' use."""
    parts = [f"{s.ended:,}/{s.total:,}", f"ok {s.ok:,} failed {s.failed:,} skipped {s.skipped:,}",
             f"{s.calls:,} calls"]
    if s.eta is not None:
        parts.append(f"ETA {format_duration(_whole(s.eta))}" if s.eta >= 1 else "ETA <1 s")
    if s.wait:
        parts.append(s.wait)
    if s.shared:
        parts.append(s.shared)
    return " | ".join(parts)


class LiveDisplay:
    """The progress on a terminal: rich's live display, redrawn a few times a second on
    stderr (stdout keeps the plan and the summary). Log lines written through
    :meth:`log_stream` print above it, so the two never share a line. When it stops, the
    final state stays on screen."""

    def __init__(self, progress: Progress, title: str, console: Console | None = None,
                 interval: float = 0.2) -> None:
        self.progress = progress
        self.title = title
        self.console = console or Console(stderr=True, highlight=False)
        self.interval = interval

    def renderable(self) -> Table:
        s = self.progress.snapshot()
        grid = Table.grid(padding=(0, 1))
        grid.add_row(Text(self.title, style="bold"), ProgressBar(total=max(1, s.total), completed=s.ended, width=24),
                     Text(describe(s), overflow="ellipsis", no_wrap=True))
        return grid

    async def run(self) -> None:
        """Redraw until cancelled; then draw the final state once and leave it on screen."""
        with Live(self.renderable(), console=self.console, auto_refresh=False, transient=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            try:
                while True:
                    await anyio.sleep(self.interval)
                    live.update(self.renderable(), refresh=True)
            finally:
                live.update(self.renderable(), refresh=True)

    def log_stream(self) -> _AboveTheDisplay:
        return _AboveTheDisplay(self.console)


class _AboveTheDisplay:
    """A text stream for the logs that prints above the live display."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        if text.strip():
            self._console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        self._console.file.flush()


class QuotaWatch:
    """Keeps ``progress.shared`` up to date with what other runs spend of the tenant's quota:
    every ``interval`` seconds it reads each shared limiter's usage (a read: it records
    nothing) and says it in words, or None when nobody else counts. A store that cannot be
    read leaves the last words; it never stops the job."""

    def __init__(self, progress: Progress, limiters: Sequence[SharedWindowLimiter], interval: float = 2.0) -> None:
        self.progress = progress
        self.limiters = list(limiters)
        self.interval = interval

    async def look(self) -> None:
        said = []
        for limiter in self.limiters:
            try:
                usage = await limiter.usage()
            except Exception:  # an unreachable store: the quota still holds, only the words are stale
                return
            if limiter.key.group == DAY_GROUP and usage.windows:  # the daily budget, for the ETA
                self.progress.budget_used = sum(usage.windows[0])
            if words := usage.describe(limiter.rules):
                said.append(words)
        self.progress.shared = "; ".join(said) or None

    async def run(self) -> None:
        while True:
            await self.look()
            await anyio.sleep(self.interval)


class LogProgress:
    """Emits an ``event`` (``run.progress``, ``backup.progress``) every ``interval`` seconds
    (JSON lines when logging is configured for JSON), and one more when the phase ends."""

    def __init__(self, progress: Progress, logger: Any, interval: float = 2.0, event: str = "run.progress") -> None:
        self.progress = progress
        self.logger = logger
        self.interval = interval
        self.event = event

    def emit(self) -> None:
        s = self.progress.snapshot()
        self.logger.info(self.event, ended=s.ended, total=s.total, ok=s.ok, failed=s.failed,
                         skipped=s.skipped, not_sent=s.not_sent, calls=s.calls, elapsed_s=round(s.elapsed, 3),
                         wait=s.wait, wait_left_s=None if s.wait_left is None else round(s.wait_left, 3),
                         eta_s=None if s.eta is None else round(s.eta, 3), shared=s.shared)

    async def run(self) -> None:
        try:
            while True:
                await anyio.sleep(self.interval)
                self.emit()
        finally:
            self.emit()
