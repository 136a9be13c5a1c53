"""Hidden limits for the mocks: a vendor's undocumented rate limit, in the shapes real
vendors use, that the client is never told. Each shape answers one question per call
arriving at ``now``: admitted (``None``), or refused with the seconds until a call would
be admitted (the ``Retry-After`` a vendor sends).

- ``rolling:N/Ws``: at most N arrivals in any W seconds (counted on admitted arrivals);
- ``fixed:N/Ws``: at most N arrivals per clock-aligned window of W seconds;
- ``bucket:R/s,burst=B``: a token bucket of B tokens refilled at R per second;
- ``changing:N/Ws->M/Vs@K``: the first shape (rolling) for K admitted calls, then the second.

Invariant (pinned by ``tests/test_hidden_limits.py``): a shape never admits what its rule
forbids, and the retry-after it gives is the exact wait for its next admission. Durations
are multiplied by ``time_scale``; a refused call consumes nothing.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol


class HiddenLimit(Protocol):
    def admit(self, now: float) -> float | None:
        """``None``: admitted (and counted); else the seconds until a call would be."""
        ...

    def describe(self) -> str: ...


@dataclass
class RollingLimit:
    calls: int
    window: float
    _admitted: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> float | None:
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) >= self.calls:
            return self._admitted[0] + self.window - now
        self._admitted.append(now)
        return None

    def describe(self) -> str:
        return f"rolling {self.calls} per {self.window:g} s"


@dataclass
class FixedLimit:
    calls: int
    window: float
    _bucket: tuple[int, int] = (-1, 0)

    def admit(self, now: float) -> float | None:
        number = math.floor(now / self.window)
        used = self._bucket[1] if self._bucket[0] == number else 0
        if used >= self.calls:
            return (number + 1) * self.window - now
        self._bucket = (number, used + 1)
        return None

    def describe(self) -> str:
        return f"fixed {self.calls} per {self.window:g} s"


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: int
    _tokens: float = -1.0
    _at: float = 0.0

    def admit(self, now: float) -> float | None:
        if self._tokens < 0:  # full at the first call
            self._tokens, self._at = float(self.burst), now
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return (1.0 - self._tokens) / self.rate
        self._tokens -= 1.0
        return None

    def describe(self) -> str:
        return f"token bucket {self.rate:g} per s, burst {self.burst}"


@dataclass
class ChangingLimit:
    first: HiddenLimit
    then: HiddenLimit
    after: int  # admitted calls under the first shape
    _admitted: int = 0

    def admit(self, now: float) -> float | None:
        shape = self.first if self._admitted < self.after else self.then
        wait = shape.admit(now)
        if wait is None:
            self._admitted += 1
        return wait

    def describe(self) -> str:
        return f"{self.first.describe()}, then {self.then.describe()} after {self.after} calls"


_RATE = r"(\d+)/(\d+(?:\.\d+)?)s"


def parse_hidden_limit(text: str, time_scale: float = 1.0) -> HiddenLimit:
    """A shape from its text (module docstring); ``ValueError`` saying the forms otherwise."""
    spec = text.strip().lower()
    if m := re.fullmatch(rf"rolling:{_RATE}", spec):
        return RollingLimit(int(m[1]), float(m[2]) * time_scale)
    if m := re.fullmatch(rf"fixed:{_RATE}", spec):
        return FixedLimit(int(m[1]), float(m[2]) * time_scale)
    if m := re.fullmatch(r"bucket:(\d+(?:\.\d+)?)/s,burst=(\d+)", spec):
        return TokenBucket(float(m[1]) / time_scale, int(m[2]))
    if m := re.fullmatch(rf"changing:{_RATE}->{_RATE}@(\d+)", spec):
        return ChangingLimit(RollingLimit(int(m[1]), float(m[2]) * time_scale),
                             RollingLimit(int(m[3]), float(m[4]) * time_scale), int(m[5]))
    raise ValueError(f"hidden limit {text!r}: give rolling:N/Ws, fixed:N/Ws, bucket:R/s,burst=B or "
                     "changing:N/Ws->M/Vs@CALLS")
