"""The circuit breaker: a job whose calls all fail the same way stops early, with one line.

A wrong batch id or a missing permission fails every item the same way; sending the other
2,000 to fail one by one costs hours at a vendor's pace and buries the one thing to fix.
:class:`CircuitBreaker` is a sink of the job's ledger; it looks only at items the vendor
answered for (rejected rows, duplicates and items not sent say nothing of the vendor), and
counts an item *failed permanently* when it ended ``failed`` (not ``gave_up``: that is the
network or the vendor's load, which retries were for).

Invariant (pinned by ``tests/test_breaker.py``): it trips, once, exactly when

1. the first ``first_items`` answered items all failed permanently with one code; or
2. of the last ``window`` answered items, at least ``share`` failed permanently with one
   code (only once ``window`` items were answered);

and never otherwise. Tripping calls ``on_trip`` with the reason in words; the job stops
as on any stop: the items not sent end ``not_sent`` and ``--resume`` sends them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from unenroll.model import ItemOutcome, Outcome

_SAYS_NOTHING = frozenset({Outcome.REJECTED, Outcome.DUPLICATE, Outcome.NOT_SENT, Outcome.GAVE_UP})


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """``first_items`` 0 switches rule 1 off; ``share`` 0 switches rule 2 off."""

    first_items: int = 200
    window: int = 1000
    share: float = 0.5

    def __post_init__(self) -> None:
        if self.first_items < 0 or self.window < 1 or not 0.0 <= self.share <= 1.0:
            raise ValueError("breaker: first_items >= 0, window >= 1 and share between 0 and 1")

    def describe(self) -> dict[str, object]:
        return {"first_items": self.first_items, "window": self.window, "share": self.share}


class CircuitBreaker:
    """A ledger sink that trips on a run of one permanent failure (module docstring)."""

    def __init__(self, settings: BreakerSettings, on_trip: Callable[[str], None]) -> None:
        self.settings = settings
        self._on_trip = on_trip
        self._answered = 0
        self._first_failure: tuple[str, str] | None = None  # (code, message) of the first answered item
        self._first_all_same = True  # every answered item so far failed with the first one's failure
        self._recent: deque[tuple[str, str] | None] = deque(maxlen=settings.window)
        self._recent_codes: Counter[tuple[str, str]] = Counter()
        self.tripped: str | None = None

    def __call__(self, outcome: ItemOutcome) -> None:
        if self.tripped is not None or outcome.outcome in _SAYS_NOTHING:
            return
        self._answered += 1
        failure = ((outcome.code or "?"), (outcome.message or "")[:200]) if outcome.outcome is Outcome.FAILED \
            else None
        s = self.settings
        if self._answered <= s.first_items:
            if self._first_failure is None and self._answered == 1:
                self._first_failure = failure
            if failure is None or failure != self._first_failure:
                self._first_all_same = False
            if self._answered == s.first_items and self._first_all_same and failure is not None:
                self._trip(f"the first {s.first_items:,} items all failed with {_words(failure)}")
                return
        if len(self._recent) == s.window and (oldest := self._recent[0]) is not None:
            self._recent_codes[oldest] -= 1
        self._recent.append(failure)
        if failure is not None:
            self._recent_codes[failure] += 1
        if s.share > 0 and len(self._recent) == s.window and failure is not None \
                and self._recent_codes[failure] >= s.share * s.window:
            self._trip(f"{self._recent_codes[failure]:,} of the last {s.window:,} items failed with {_words(failure)}")

    def _trip(self, reason: str) -> None:
        self.tripped = f"circuit breaker: {reason}; the rest was not sent"
        self._on_trip(self.tripped)


def _words(failure: tuple[str, str]) -> str:
    code, message = failure
    return f"{code} {message}".strip()
