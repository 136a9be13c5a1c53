"""Watching a job: items ended, calls made, the current wait and why, and an ETA from the
limits. A one-line bar on a terminal; ``run.progress`` log events (JSON lines) otherwise.

:class:`ObservedLimiter` wraps an endpoint's limiter and only watches it: both methods
forward unchanged, so the limiter's guarantee is the wrapped one's. :class:`Progress` is
a ledger sink (it counts outcomes as they happen) and reads the running job's report for
its calls; nothing here can slow the job down or change what it does.

The ETA is what the endpoints' limits allow for the calls still planned
(:meth:`~unenroll.EndpointSpec.least_seconds_for`, the slowest endpoint, plus any pause
the vendor asked for), a lower bound like the plan's; once a few calls have been made,
the observed pace takes over when it is slower (latency, not the limits, is then what
bounds the job).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import anyio

from unenroll.accounts.ledger import Report
from unenroll.contract.declarations import EndpointSpec
from unenroll.limits.quota import SharedWindowLimiter
from unenroll.limits.window import CallLimiter, Permit
from unenroll.model import ItemOutcome, Outcome
from unenroll.planning.durations import format_duration

SHOW_WAITS_LONGER_THAN = 0.3  # seconds: shorter waits are the limiter's normal spacing
MIN_CALLS_FOR_PACE = 3  # calls made before the observed pace counts in the ETA


class ObservedLimiter:
    """A :class:`CallLimiter` that records, for display, who waits and the vendor's pauses."""

    __slots__ = ("_clock", "inner", "paused_until", "pauses", "waiters", "waiting_since")

    def __init__(self, inner: CallLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self.waiters = 0
        self.waiting_since = 0.0
        self.paused_until = 0.0
        self.pauses = 0

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
        self.paused_until = max(self.paused_until, self._clock() + seconds)
        self.pauses += 1
        self.inner.pause(seconds)

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
    wait: str | None  # the current wait and why
    eta: float | None  # seconds, from the limits
    shared: str | None = None  # what other runs spend of the tenant's quota now


_SKIPPED = frozenset({Outcome.REJECTED, Outcome.DUPLICATE})
_FAILED = frozenset({Outcome.FAILED, Outcome.GAVE_UP})


class Progress:
    """Counts outcomes (it is a ledger sink) and reads calls from the job's report."""

    def __init__(
        self,
        total: int,
        planned_calls: Mapping[str, int],
        specs: Mapping[str, EndpointSpec],
        limiters: Mapping[str, ObservedLimiter],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.planned_calls = dict(planned_calls)
        self.specs = specs
        self.limiters = limiters
        self.report: Report | None = None
        self.shared: str | None = None  # set by whoever watches the shared quota (QuotaWatch)
        self._clock = clock
        self._started = clock()
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

    def _calls(self) -> dict[str, int]:
        if self.report is None:
            return {}
        return {name: stats.calls for name, stats in self.report.endpoints.items()}

    def snapshot(self) -> Snapshot:
        now = self._clock()
        calls = self._calls()
        wait = None
        eta = 0.0
        elapsed = now - self._started
        for name, limiter in self.limiters.items():
            spec = self.specs.get(name)
            paused = max(0.0, limiter.paused_until - now)
            if wait is None and paused > 0:
                wait = f"paused {paused:.1f}s (the vendor throttled {name})"
            elif wait is None and limiter.waiters and now - limiter.waiting_since > SHOW_WAITS_LONGER_THAN:
                limit = (f": {spec.max_calls} calls/{format_duration(spec.window)}"
                         if spec is not None and spec.max_calls is not None else "")
                wait = f"waiting {now - limiter.waiting_since:.1f}s (rate limit{limit})"
            if spec is None:
                continue
            made = calls.get(name, 0)
            remaining = max(0, self.planned_calls.get(name, 0) - made)
            if remaining == 0 and self.ended < self.total and self.planned_calls.get(name):
                remaining = 1
            by_limits = spec.least_seconds_for(made + remaining) - spec.least_seconds_for(made) + paused
            # the limits are a lower bound; once calls have been made, a slower pace shows
            by_pace = remaining * elapsed / made if made >= MIN_CALLS_FOR_PACE else 0.0
            eta = max(eta, by_limits, by_pace)
        return Snapshot(self.ended, self.total, self.ok, self.failed, self.skipped, self.not_sent,
                        sum(calls.values()), elapsed, wait,
                        0.0 if self.ended >= self.total else eta, self.shared)


def render_line(s: Snapshot, width: int = 100) -> str:
    """The bar: ``[#####.....] 1,234/5,000 | ok 1,200 failed 4 skipped 30 | 45 calls | ETA | wait``."""
    share = s.ended / s.total if s.total else 1.0
    bar_width = 20
    filled = int(share * bar_width)
    parts = [f"[{'#' * filled}{'.' * (bar_width - filled)}] {s.ended:,}/{s.total:,}",
             f"ok {s.ok:,} failed {s.failed:,} skipped {s.skipped:,}", f"{s.calls:,} calls"]
    if s.eta is not None:
        parts.append(f"ETA {format_duration(float(round(s.eta)))}" if s.eta >= 1 else "ETA <1 s")
    if s.wait:
        parts.append(s.wait)
    if s.shared:
        parts.append(s.shared)
    line = " | ".join(parts)
    return line if len(line) <= width else line[: max(0, width - 3)] + "..."


class TerminalBar:
    """Redraws the progress line on a terminal a few times a second. Log lines written
    through :meth:`log_stream` clear the bar first, so the two never share a line."""

    def __init__(self, progress: Progress, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.progress = progress
        self._stream = stream
        self.interval = interval
        self._shown = False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + render_line(self.progress.snapshot(), width))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    async def run(self) -> None:
        """Redraw until cancelled; then draw the final state once and leave it on screen."""
        try:
            while True:
                self.draw()
                await anyio.sleep(self.interval)
        finally:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False

    def log_stream(self) -> _BarAwareStream:
        return _BarAwareStream(self)


class _BarAwareStream:
    def __init__(self, bar: TerminalBar) -> None:
        self._bar = bar

    def write(self, text: str) -> int:
        self._bar.clear()
        return self._bar.stream.write(text)

    def flush(self) -> None:
        self._bar.stream.flush()


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
                words = (await limiter.usage()).describe(limiter.rules)
            except Exception:  # an unreachable store: the quota still holds, only the words are stale
                return
            if words:
                said.append(words)
        self.progress.shared = "; ".join(said) or None

    async def run(self) -> None:
        while True:
            await self.look()
            await anyio.sleep(self.interval)


class LogProgress:
    """Emits a ``run.progress`` event every ``interval`` seconds (JSON lines when logging
    is configured for JSON), and one more when the job ends."""

    def __init__(self, progress: Progress, logger: Any, interval: float = 2.0) -> None:
        self.progress = progress
        self.logger = logger
        self.interval = interval

    def emit(self) -> None:
        s = self.progress.snapshot()
        self.logger.info("run.progress", ended=s.ended, total=s.total, ok=s.ok, failed=s.failed,
                         skipped=s.skipped, not_sent=s.not_sent, calls=s.calls, elapsed_s=round(s.elapsed, 3),
                         wait=s.wait, eta_s=None if s.eta is None else round(s.eta, 3), shared=s.shared)

    async def run(self) -> None:
        try:
            while True:
                await anyio.sleep(self.interval)
                self.emit()
        finally:
            self.emit()
