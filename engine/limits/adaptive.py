"""A call limiter that learns an undocumented rate from the vendor's throttles.

When a vendor documents no rate limit but answers HTTP 429 (with or without
``Retry-After``) once we go too fast, a fixed limit is either too slow or a hammer.
:class:`AdaptiveRateLimiter` spaces call starts ``1 / rate`` seconds apart (the
call-spacing interval) and adjusts ``rate`` by additive increase, multiplicative decrease
(AIMD, as TCP does with its window):

- every call start that meets no throttle adds a fixed step to the rate (up to
  ``max_rate``): ``increase_share`` of the rate the last throttle happened at (of
  ``start_rate`` before any), so a long job creeps back up to the vendor's real rate in
  about ``(1 - decrease) / increase_share`` calls whatever that rate is;
- a throttle (:meth:`~AdaptiveRateLimiter.pause`) multiplies the rate by ``decrease``
  (down to ``min_rate``) and holds every call until the vendor's pause has passed.

So the rate saw-tooths just under the vendor's limit, with one throttle (one pause) per
tooth: about ``increase_share / (1 - decrease)`` of the calls, 4 % by default.

Invariant (pinned by ``tests/test_adaptive_limiter.py`` on the pure :class:`AimdSchedule`):

1. ``min_rate <= rate <= max_rate`` at all times, so two consecutive call starts are
   never closer than ``1 / max_rate`` seconds (the configured ceiling is never exceeded);
2. two consecutive starts are at least ``1 / rate`` apart, ``rate`` as it stands when the
   later one starts (a throttle in between only widens the gap);
3. no call starts before a pause ends, and a pause keeps the limiter's pause invariant
   (``limiter.py``): NaN or negative seconds change nothing, none lasts beyond ``LONGEST_PAUSE``;
4. after a throttle the rate is at most ``max(min_rate, decrease * r)``, ``r`` the rate
   before it, unless no call started since the previous decrease: answers to calls
   that were already in flight at one decrease do not decrease it again (one decrease
   per round of calls), though their pauses are still honoured;
5. between throttles the rate grows linearly: by the same step per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio

from unenroll.limits.window import Permit, sane_pause, start_when_allowed


@dataclass(frozen=True, slots=True)
class AdaptiveRate:
    """The settings of an :class:`AdaptiveRateLimiter`, in calls per second.

    ``start_rate`` is where a job begins, ``max_rate`` a ceiling it never exceeds (our own
    politeness when the vendor states none), ``min_rate`` a floor so a storm of throttles
    cannot stall a job for good (each throttle's pause is honoured on top of it).
    """

    start_rate: float = 1.0
    max_rate: float = 5.0
    min_rate: float = 1.0 / 60.0
    # each call that meets no throttle adds this share of the rate of the last throttle
    increase_share: float = 0.02
    decrease: float = 0.5  # the rate is multiplied by this on a throttle

    def __post_init__(self) -> None:
        if not 0.0 < self.min_rate <= self.start_rate <= self.max_rate:
            raise ValueError("need 0 < min_rate <= start_rate <= max_rate")
        if not 0.0 <= self.increase_share <= 1.0:
            raise ValueError("increase_share must be between 0 and 1")
        if not 0.0 < self.decrease < 1.0:
            raise ValueError("decrease must be between 0 and 1 (exclusive)")

    def scaled(self, time_scale: float) -> AdaptiveRate:
        """The same behaviour with every duration multiplied by ``time_scale`` (rates divided)."""
        if time_scale <= 0.0:
            raise ValueError("time_scale must be positive")
        return replace(
            self,
            start_rate=self.start_rate / time_scale,
            max_rate=self.max_rate / time_scale,
            min_rate=self.min_rate / time_scale,
        )

    def limiter(self, clock: Callable[[], float] = anyio.current_time) -> AdaptiveRateLimiter:
        return AdaptiveRateLimiter(self, clock=clock)


class AimdSchedule:
    """The pure state of the adaptive limiter: the rate, the last start and the pause.

    No clock and no waiting, so the invariant in the module docstring can be checked on
    any sequence of arrivals and throttles.
    """

    __slots__ = (
        "decreases",
        "last_start",
        "paused_until",
        "rate",
        "settings",
        "starts_since_decrease",
        "step",
    )

    def __init__(self, settings: AdaptiveRate) -> None:
        self.settings = settings
        self.rate = settings.start_rate
        self.step = settings.increase_share * settings.start_rate  # calls per second, per call
        self.last_start = -math.inf
        self.paused_until = -math.inf
        self.starts_since_decrease = 0
        self.decreases = 0

    @property
    def interval(self) -> float:
        """Seconds between call starts at the current rate."""
        return 1.0 / self.rate

    def earliest_start(self, now: float) -> float:
        at = max(now, self.paused_until)
        if self.last_start > -math.inf:
            # nextafter: a rounded-down float sum must not put a start a hair too early
            at = max(at, math.nextafter(self.last_start + self.interval, math.inf))
        return at

    def record(self, start: float) -> Permit:
        """A call starts at ``start``; until told otherwise it met no throttle."""
        self.last_start = start
        self.starts_since_decrease += 1
        self.rate = min(self.settings.max_rate, self.rate + self.step)
        return Permit(start)

    def throttled(self, now: float, seconds: float) -> None:
        """The vendor throttled a call: no start for ``seconds`` from ``now``; slow down."""
        self.paused_until = max(self.paused_until, now + sane_pause(seconds))
        if self.starts_since_decrease > 0:
            self.step = self.settings.increase_share * self.rate  # the climb back is scaled to this rate
            self.rate = max(self.settings.min_rate, self.rate * self.settings.decrease)
            self.starts_since_decrease = 0
            self.decreases += 1


class AdaptiveRateLimiter:
    """A :class:`~unenroll.limits.window.CallLimiter` that learns the rate from throttles (AIMD).

    See the module docstring for the invariant. Give it to an endpoint with
    ``EndpointSpec(limiter_factory=lambda spec: AdaptiveRate(...).limiter())``.
    """

    __slots__ = ("_clock", "_schedule", "pauses")

    def __init__(self, settings: AdaptiveRate | None = None, *,
                 clock: Callable[[], float] = anyio.current_time) -> None:
        self._schedule = AimdSchedule(settings or AdaptiveRate())
        self._clock = clock
        self.pauses = 0

    def __repr__(self) -> str:
        s = self._schedule
        return (f"AdaptiveRateLimiter(rate={s.rate:.4g}/s, max_rate={s.settings.max_rate:.4g}/s, "
                f"decreases={s.decreases})")

    @property
    def rate(self) -> float:
        """The current rate in calls per second."""
        return self._schedule.rate

    @property
    def decreases(self) -> int:
        return self._schedule.decreases

    @property
    def paused_until(self) -> float:
        """No call starts before this time (``-inf``: never paused)."""
        return self._schedule.paused_until

    async def acquire(self) -> Permit:
        return await start_when_allowed(self._schedule, self._clock)

    def done(self, permit: Permit) -> None:
        permit.end = self._clock()  # spacing is by starts: nothing to learn from the end

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._schedule.throttled(self._clock(), seconds)

    def seconds_until_free(self) -> float:
        """Seconds until a call may start (0: now), by this limiter's own count: a read for
        the progress display, which counts waits down; it records nothing."""
        now = self._clock()
        return max(0.0, self._schedule.earliest_start(now) - now)
