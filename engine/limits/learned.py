"""Learn an undocumented limit from a few throttles, then run at it with the exact window.

A throttle carries information that backing off (AIMD) throws away: the calls this
participant had admitted before it, and the ``Retry-After``, which for a rolling window is
when the oldest counted call leaves it. :class:`LimitEstimator` turns them into a window
limit "N calls per W" and :class:`LearnedWindowLimiter` drives the same answer-based
:class:`~unenroll.limits.window.WindowSchedule` the documented vendors use at that
estimate (the way BBR estimates a path's bottleneck instead of probing by loss).

**The estimate.** Each admitted call is known by the moment its answer came back (it
arrived at the vendor by then), and so is a refusal: the time spent sending cancels out.
A refusal back at ``t`` with retry-after ``ra`` names, for every admitted call ``a`` before
it, a candidate: ``W = t + ra - a`` (``a`` the oldest counted call, leaving the window at
``t + ra``) and ``N`` = the admitted calls
in ``[a, t)``; ``W`` is stretched by ``SAFETY``. A candidate is *consistent* when no
``W``-long stretch of the recent admitted history holds more than ``N`` calls (the vendor
admitted each of them, so its limit allowed them). Of the consistent candidates the
estimator takes the slowest one (the least ``N / W``): the one every piece of evidence
allows. Without a ``Retry-After`` the endpoint's ``lock_period`` stands in for it (a
longer, safer window). When no window explains the throttles (a token bucket), the rate
backs off by ``BACK_OFF``, below what was refused. The limiter keeps the answer-based
window (``start[k+N] >= end[k] + W``), which adds one call's latency on top.

Invariants (pinned by ``tests/test_learned_limit.py``):

1. the limiter never schedules faster than an estimate it has seen refused: every new
   estimate's rate is below the rate of every estimate that met a throttle;
2. a new estimate is consistent with every admitted start in the history;
3. with no estimate yet the limiter sends at ``max_rate`` (a ceiling of our own, the
   first calls find the limit), and it never exceeds ``max_rate`` afterwards;
4. after ``probe_after`` clean windows it tries ``N + 1`` calls per ``W`` for one window
   (re-probing rarely), unless ``N + 1`` per ``W`` has been refused before.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from unenroll.limits.headers import RateLimitWord
from unenroll.limits.window import Permit, WindowSchedule, sane_pause

HISTORY = 512  # admitted starts kept for the estimate
BACK_OFF = 0.75  # the rate is multiplied by this after a throttle no window explains
SAFETY = 0.02  # a learned window is this much longer than the evidence says (clock and network jitter)


@dataclass(frozen=True, slots=True)
class WindowEstimate:
    """``calls`` per ``window`` seconds, and where it came from."""

    calls: int
    window: float
    throttles: int = 0  # the throttles it was learned from
    learned_at: float = 0.0  # wall-clock time (time.time()) it was learned
    source: str = "learned"  # "learned", or "remembered" when recalled from the quota store
    refused_rate: float = math.inf  # the slowest rate seen refused when it was learned (never tried again)

    @property
    def rate(self) -> float:
        return self.calls / self.window

    def describe(self, time_scale: float = 1.0) -> str:
        """``learned 5 per 1 s from 3 throttles on 2026-12-02`` (the window on the vendor's clock)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(self.learned_at)) if self.learned_at else "an earlier run"
        window = self.window / time_scale
        shown = f"{window:.3g} s" if window < 120 else f"{window / 60:.3g} min"
        throttles = f"{self.throttles} throttle{'s' if self.throttles != 1 else ''}"
        return f"{self.source} {self.calls:,} per {shown} from {throttles} on {day}"

    def as_fact(self) -> dict[str, object]:
        """What the quota store keeps (JSON)."""
        fact: dict[str, object] = {"calls": self.calls, "window": self.window, "throttles": self.throttles,
                                   "learned_at": self.learned_at}
        if self.refused_rate < math.inf:
            fact["refused_rate"] = self.refused_rate
        return fact

    @staticmethod
    def from_fact(fact: Mapping[str, object]) -> WindowEstimate | None:
        """The estimate a store kept, or None if it is not one (a hostile or stale value)."""
        try:
            calls, window = fact["calls"], fact["window"]
            throttles, learned_at = fact.get("throttles", 0), fact.get("learned_at", 0.0)
            if not (isinstance(calls, int) and isinstance(window, int | float) and isinstance(throttles, int)
                    and isinstance(learned_at, int | float)):
                return None
            if calls < 1 or not (0 < window < math.inf) or throttles < 0:
                return None
            refused = fact.get("refused_rate", math.inf)
            if not isinstance(refused, int | float) or not refused > 0:
                refused = math.inf
            return WindowEstimate(calls, float(window), throttles, float(learned_at), "remembered", float(refused))
        except (KeyError, TypeError):
            return None


class LimitEstimator:
    """Admitted starts and throttles in, a window estimate out (see the module docstring)."""

    def __init__(self, *, max_rate: float, fallback_wait: float, margin: float = 0.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.max_rate = max_rate
        self.fallback_wait = fallback_wait  # stands in for a missing Retry-After
        self.margin = margin
        self.wall_clock = wall_clock
        self.admitted: deque[float] = deque(maxlen=HISTORY)  # when each admitted call's answer came back
        self.estimate: WindowEstimate | None = None
        self.refused_rate = math.inf  # the slowest rate that met a throttle
        self.throttles = 0

    def admitted_at(self, end: float) -> None:
        """An admitted call's answer came back at ``end``: it arrived at the vendor by then."""
        self.admitted.append(end)

    def refused_at(self, start: float, retry_after: float | None, scheduled_rate: float) -> WindowEstimate | None:
        """A call started at ``start`` was refused; the limiter ran at ``scheduled_rate``.
        Returns the new estimate (also kept), or None when no candidate is consistent."""
        self.throttles += 1
        self.refused_rate = min(self.refused_rate, scheduled_rate)
        wait = retry_after if retry_after is not None and retry_after >= 0 else self.fallback_wait
        starts = [s for s in self.admitted if s < start]  # calls admitted (and answered) before this one left
        current = self.estimate.window if self.estimate is not None else 0.0
        horizon = start - 2 * max(wait, current)  # recent evidence only: a limit may change mid-job
        best: tuple[float, int, float] | None = None  # (rate, calls, window)
        for i, oldest in enumerate(starts):
            if oldest < horizon:
                continue
            calls = len(starts) - i
            window = (start + wait - oldest) * (1 + SAFETY) + self.margin
            if window <= 0:
                continue
            rate = calls / window
            # the evidence: at least two of the candidate's windows, and two of the estimate in force
            since = start - 2 * max(window, current)
            if rate >= self.refused_rate or not self._consistent(calls, window, since=since):
                continue
            if best is None or rate < best[0]:
                best = (rate, calls, window)
        if best is None:
            return None
        _, calls, window = best
        self.estimate = WindowEstimate(calls, window, self.throttles, self.wall_clock(), refused_rate=self.refused_rate)
        return self.estimate

    def _consistent(self, calls: int, window: float, since: float) -> bool:
        """No ``window``-long stretch of the admitted history since ``since`` holds more than ``calls`` starts."""
        starts = sorted(s for s in self.admitted if s >= since)
        first = 0
        for last, at in enumerate(starts):
            while at - starts[first] >= window:
                first += 1
            if last - first + 1 > calls:
                return False
        return True


class LearnedWindowLimiter:
    """A :class:`~unenroll.limits.window.CallLimiter` for an endpoint whose limit is not
    documented: ``max_rate`` until the first throttle, then the learned window (see the
    module docstring). ``observe`` is called by the engine with every call's verdict."""

    def __init__(self, *, max_rate: float = 5.0, fallback_wait: float = 60.0, margin: float = 0.0,
                 probe_after: int = 100, start: WindowEstimate | None = None, time_scale: float = 1.0,
                 clock: Callable[[], float] = anyio.current_time,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not max_rate > 0:
            raise ValueError("max_rate must be above 0")
        self.estimator = LimitEstimator(max_rate=max_rate, fallback_wait=fallback_wait, margin=margin,
                                        wall_clock=wall_clock)
        self.probe_after = probe_after
        self.time_scale = time_scale  # a header's window is the vendor's seconds
        self._clock = clock
        self._clean_calls = 0
        self._schedule = WindowSchedule(1, 1.0 / max_rate)
        self._recent: deque[Permit] = deque(maxlen=HISTORY)  # every call's permit, for a schedule that grows
        self._scheduled_since = -math.inf  # when the current schedule began: older refusals are old news
        self._before_probe: WindowEstimate | None = None  # the known-good estimate while probing one call bolder
        if start is not None:
            self.adopt(start)

    def __repr__(self) -> str:
        return f"LearnedWindowLimiter({self.estimate!r})"

    @property
    def estimate(self) -> WindowEstimate | None:
        return self.estimator.estimate

    @property
    def rate(self) -> float:
        """The rate the limiter schedules at now (calls per second)."""
        return self._schedule.max_calls / self._schedule.window

    def adopt(self, estimate: WindowEstimate) -> None:
        """Run at ``estimate`` (a remembered limit): no probing from scratch, and no rate it
        saw refused tried again."""
        self.estimator.estimate = estimate
        self.estimator.refused_rate = min(self.estimator.refused_rate, estimate.refused_rate)
        self._use(estimate.calls, estimate.window)

    def _use(self, calls: int, window: float) -> None:
        """Schedule ``calls`` per ``window`` (at most ``max_rate``), counting the calls already made."""
        calls = max(1, min(calls, math.floor(self.estimator.max_rate * window) or 1))
        self._schedule = self._schedule.resized(calls, window, list(self._recent)[-calls:])
        self._scheduled_since = self._clock()

    async def acquire(self) -> Permit:
        """As :func:`~unenroll.limits.window.start_when_allowed`, but on the schedule in force
        at each look: a waiter never starts on a schedule an estimate has replaced."""
        while True:
            now = self._clock()
            at = self._schedule.earliest_start(now)
            if at <= now:
                permit = self._schedule.record(now)
                self._recent.append(permit)
                return permit
            await anyio.sleep(at - now)

    def done(self, permit: Permit) -> None:
        if permit.end == math.inf:
            permit.end = self._clock()

    def pause(self, seconds: float) -> None:
        self._schedule.pause_until(self._clock() + sane_pause(seconds))

    def seconds_until_free(self) -> float:
        """Seconds until a call may start (0: now), by this limiter's own count: a read for
        the progress display, which counts waits down; it records nothing."""
        now = self._clock()
        return max(0.0, self._schedule.earliest_start(now) - now)

    def observe(self, permit: Permit, throttled: bool, retry_after: float | None,
                word: RateLimitWord | None = None) -> None:
        """The call of ``permit`` was answered: admitted, or refused with ``retry_after``;
        ``word``: the answer's rate-limit headers (a policy with a window is taken as said)."""
        if word is not None and word.limit is not None and word.window is not None:
            said = (word.limit, word.window * self.time_scale)
            current = self.estimator.estimate
            if current is None or (current.calls, current.window) != said:
                if said[0] / said[1] < self.estimator.refused_rate:
                    self.adopt(WindowEstimate(said[0], said[1], self.estimator.throttles,
                                              self.estimator.wall_clock(), "said by the vendor's headers:"))
        if not throttled:
            self.estimator.admitted_at(permit.end if permit.end < math.inf else self._clock())
            self._clean_calls += 1
            estimate = self.estimator.estimate
            if estimate is not None and self._clean_calls >= self.probe_after * estimate.calls:
                self._clean_calls = 0
                bolder = (estimate.calls + 1) / estimate.window
                if bolder < self.estimator.refused_rate and bolder <= self.estimator.max_rate:
                    # one call bolder per window; a throttle takes it back (and never tries it again)
                    self._before_probe = estimate
                    self.estimator.estimate = WindowEstimate(estimate.calls + 1, estimate.window, estimate.throttles,
                                                             estimate.learned_at, estimate.source)
                    self._use(estimate.calls + 1, estimate.window)
            return
        self._clean_calls = 0
        if permit.start < self._scheduled_since:
            return  # sent under the schedule before: it says nothing of the current one
        if self._before_probe is not None:  # the probe was refused: back to what held, and never again
            self.estimator.throttles += 1
            self.estimator.refused_rate = min(self.estimator.refused_rate, self.rate)
            estimate, self._before_probe = self._before_probe, None
            self.estimator.estimate = estimate
        else:
            # the refusal's answer, like every admitted call's, is known by when it came back:
            # the time spent sending cancels out of W = end + ra - oldest end
            answered = permit.end if permit.end < math.inf else self._clock()
            estimate = self.estimator.refused_at(answered, retry_after, self.rate)
        if estimate is None:  # no window explains it (a token bucket): back off by a quarter, below what was refused
            s = self._schedule
            calls, window = (s.max_calls * 3 // 4, s.window) if s.max_calls >= 4 else (s.max_calls, s.window / BACK_OFF)
            estimate = self.estimator.estimate = WindowEstimate(calls, window, self.estimator.throttles,
                                                                self.estimator.wall_clock())
        self._use(estimate.calls, estimate.window)
