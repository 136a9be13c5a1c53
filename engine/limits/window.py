"""Per-endpoint call limiters.

:class:`RollingWindowLimiter` guarantees: **the vendor never sees more than ``max_calls``
calls arrive in any window of ``window`` seconds** (any, not just calendar windows),
whatever the network's delays, and, if ``min_interval`` is set, our call starts are at
least that far apart.

How, without knowing the delays: a call reaches the vendor after we start it and before
its answer reaches us. So each start is checked against the *end* of the call
``max_calls`` starts before it (the moment its answer, or its failure, came back):
``start[k + N] >= end[k] + window`` gives ``arrival[k + N] >= start[k + N] >= end[k] +
window >= arrival[k] + window``. A call still in flight holds the start that depends on
it. The price is one call's latency per window (about 1 % for a one-minute window); ``margin``
adds a fixed amount on top if a vendor counts by a clock that rounds.

That is a stronger promise than a leaky bucket's: ``aiolimiter.AsyncLimiter(30, 60)``
allows a full burst on top of a drained bucket, so up to 59 calls can land in one rolling
minute, which is the call past the limit that can lock an API for minutes.

The schedule itself is a pure object (:class:`WindowSchedule`) so its invariant can be
checked against any sequence of arrivals without clocks (``tests/test_limiter.py``).

A limiter also *pauses*: when a vendor signals a lock or a throttle, every caller of
that endpoint waits until the pause ends; other endpoints have their own limiters. Every
limiter keeps the pause invariant: ``pause`` never moves the end of a pause earlier (a
NaN or negative pause changes nothing) and never puts it more than :data:`LONGEST_PAUSE`
past now (``inf`` included), so no answer can hold an endpoint for ever or lift its pause.
How long to pause for a vendor's word is the caller's rule (``EndpointSpec.pause_for``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio

# a backstop, far above any real vendor's lock: the job's own bound is ``JobSettings.max_pause``
LONGEST_PAUSE = 24 * 3600.0


def sane_pause(seconds: float) -> float:
    """``seconds`` as a pause a limiter can honour: NaN or negative is no pause, and no pause
    is longer than :data:`LONGEST_PAUSE`."""
    if not seconds > 0.0:  # NaN fails every comparison
        return 0.0
    return min(seconds, LONGEST_PAUSE)


class Permit:
    """One call's slot: when it started, and when its answer came back (``inf`` until then)."""

    __slots__ = ("end", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.end = math.inf


class CallLimiter(Protocol):
    """What the pipeline needs of a limiter. A shared backend (several processes drawing
    on one tenant's quota) implements the same three methods."""

    async def acquire(self) -> Permit:
        """Wait until a call may start, and count it as started now."""
        ...

    def done(self, permit: Permit) -> None:
        """The call of ``permit`` ended: its answer (or its failure) is back."""
        ...

    def pause(self, seconds: float) -> None:
        """The vendor said stop: no call starts for ``seconds`` from now. Keeps the pause
        invariant (module docstring): garbage never lifts a pause, nothing pauses for ever."""
        ...


class Schedule(Protocol):
    """When the next call may start (or when to look again), given the calls so far."""

    def earliest_start(self, now: float) -> float: ...

    def record(self, start: float) -> Permit: ...


async def start_when_allowed(schedule: Schedule, clock: Callable[[], float]) -> Permit:
    """Wait until ``schedule`` allows a start, then record it. There is no await between
    the last check and the record, so concurrent callers never share one slot."""
    while True:
        now = clock()
        at = schedule.earliest_start(now)
        if at <= now:
            return schedule.record(now)
        await anyio.sleep(at - now)  # then check again: a pause or an answer may have come


class WindowSchedule:
    """The last ``max_calls`` calls (start, end), and the earliest next start they allow.

    Invariant: if every start is recorded at a time ``>= earliest_start(now)`` and every
    call's end is set when its answer is back, then ``start[i + max_calls] >= end[i] +
    window + margin`` for every ``i``; since a call arrives at the vendor between its start
    and its end, no half-open window of ``window`` seconds holds more than ``max_calls``
    arrivals, however the delays vary. While call ``i`` is in flight, ``earliest_start``
    returns a time to look again, never a time to start.
    """

    __slots__ = ("_starts", "margin", "max_calls", "min_interval", "paused_until", "window")

    def __init__(
        self, max_calls: int, window: float, *, min_interval: float = 0.0, margin: float = 0.0
    ) -> None:
        if max_calls < 1 or window <= 0:
            raise ValueError("max_calls must be >= 1 and window > 0")
        self.max_calls = max_calls
        self.window = window
        self.min_interval = min_interval
        self.margin = margin
        self._starts: deque[Permit] = deque(maxlen=max_calls)
        self.paused_until = -math.inf

    def earliest_start(self, now: float) -> float:
        at = max(now, self.paused_until)
        # nextafter: a rounded-down float sum must not put a start a hair inside the window
        if len(self._starts) == self.max_calls:
            oldest = self._starts[0]
            if oldest.end == math.inf:  # in flight: it may not even have arrived yet
                at = max(at, now + min(self.window, 1.0) / 20)
            else:
                at = max(at, math.nextafter(oldest.end + self.window + self.margin, math.inf))
        if self._starts and self.min_interval > 0:
            at = max(at, math.nextafter(self._starts[-1].start + self.min_interval, math.inf))
        return at

    def record(self, start: float) -> Permit:
        permit = Permit(start)
        self._starts.append(permit)
        return permit

    def pause_until(self, until: float) -> None:
        if until > self.paused_until:  # a NaN is never later
            self.paused_until = until

    def resized(self, max_calls: int, window: float, recent: Sequence[Permit] = ()) -> WindowSchedule:
        """The same schedule for a new limit: the latest ``max_calls`` calls (``recent``, the
        caller's longer record, else this schedule's own; in flight ones too, the same
        permits) and the pause carry over, so the new window counts them."""
        other = WindowSchedule(max_calls, window, min_interval=self.min_interval, margin=self.margin)
        other._starts.extend(recent or self._starts)  # a deque with maxlen keeps the latest
        other.paused_until = self.paused_until
        return other


class RollingWindowLimiter:
    """``max_calls`` starts per rolling ``window`` seconds, paused on the vendor's word.

    See :class:`WindowSchedule` for the invariant.
    """

    __slots__ = ("_clock", "_schedule", "pauses")

    def __init__(
        self,
        max_calls: int,
        window: float,
        *,
        min_interval: float = 0.0,
        margin: float = 0.0,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._schedule = WindowSchedule(max_calls, window, min_interval=min_interval, margin=margin)
        self._clock = clock
        self.pauses = 0

    def __repr__(self) -> str:
        s = self._schedule
        return f"RollingWindowLimiter({s.max_calls}, {s.window}, min_interval={s.min_interval}, margin={s.margin})"

    async def acquire(self) -> Permit:
        return await start_when_allowed(self._schedule, self._clock)

    def done(self, permit: Permit) -> None:
        if permit.end == math.inf:  # the first word counts: the answer's arrival
            permit.end = max(permit.start, self._clock())

    @property
    def paused_until(self) -> float:
        """No call starts before this time (``-inf``: never paused)."""
        return self._schedule.paused_until

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._schedule.pause_until(self._clock() + sane_pause(seconds))

    def seconds_until_free(self) -> float:
        """Seconds until a call may start (0: now), by this limiter's own count: a read for
        the progress display, which counts waits down; it records nothing."""
        now = self._clock()
        return max(0.0, self._schedule.earliest_start(now) - now)


class UnlimitedLimiter:
    """No rate limit, but still honours the vendor's pauses (429 / Retry-After)."""

    __slots__ = ("_clock", "_paused_until", "pauses")

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        self._paused_until = -math.inf
        self._clock = clock
        self.pauses = 0

    async def acquire(self) -> Permit:
        while (wait := self._paused_until - self._clock()) > 0:  # noqa: ASYNC110 (a pause may grow meanwhile)
            await anyio.sleep(wait)
        return Permit(self._clock())

    def done(self, permit: Permit) -> None:
        permit.end = self._clock()

    @property
    def paused_until(self) -> float:
        """No call starts before this time (``-inf``: never paused)."""
        return self._paused_until

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + sane_pause(seconds))

    def seconds_until_free(self) -> float:
        """Seconds until the vendor's pause ends (0: none)."""
        return max(0.0, self._paused_until - self._clock())
