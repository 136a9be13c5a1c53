"""A vendor's "N calls per window, then locked for L" rule, counted as the vendor would.

Invariant (``ThresholdCounter``): no more than ``threshold`` calls are accepted within one
window of the chosen kind; the call that would make it N+1 starts the lock and is refused.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

WindowKind = Literal["rolling", "fixed"]


class ThresholdCounter:
    """A vendor's "N calls per window, then locked for L" rule, as the vendor would count.

    ``rolling``: any ``window`` seconds; ``fixed``: calendar windows. The call that makes
    it N+1 starts the lock and is refused; calls during the lock are refused and do not
    extend it unless ``extend_lock_on_call``. ``max_in_window`` is the most calls this
    counter ever saw accepted within one window of the chosen kind.
    """

    def __init__(
        self, threshold: int, window: float, lock_period: float,
        kind: WindowKind = "rolling", extend_lock_on_call: bool = False,
    ) -> None:
        self.threshold, self.window, self.lock_period = threshold, window, lock_period
        self.kind, self.extend_lock_on_call = kind, extend_lock_on_call
        self._recent: deque[float] = deque()
        self._bucket: tuple[int, int] = (-1, 0)  # (window number, calls in it)
        self.locked_until = -math.inf
        self.calls = 0
        self.refused = 0
        self.lock_events = 0
        self.max_in_window = 0
        self.max_in_rolling_window = 0  # always measured, whatever the kind

    def hit(self, now: float) -> bool:
        """Count a call arriving at ``now``; ``False`` if it is refused (locked)."""
        self.calls += 1
        if now < self.locked_until:
            self.refused += 1
            if self.extend_lock_on_call:
                self.locked_until = now + self.lock_period
            return False
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        self.max_in_rolling_window = max(self.max_in_rolling_window, len(self._recent))
        if self.kind == "rolling":
            in_window = len(self._recent)
        else:
            number = int(now // self.window)
            in_window = self._bucket[1] + 1 if self._bucket[0] == number else 1
            self._bucket = (number, in_window)
        if in_window > self.threshold:
            self.refused += 1
            self.lock_events += 1
            self.locked_until = now + self.lock_period
            self._recent.clear()
            self._bucket = (-1, 0)
            return False
        self.max_in_window = max(self.max_in_window, in_window)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "refused": self.refused, "lock_events": self.lock_events,
            "max_in_window": self.max_in_window, "max_in_rolling_window": self.max_in_rolling_window,
        }
