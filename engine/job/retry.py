"""Retry policy as a value: how many sends an item gets, for how long, and the backoff
between them. Jobs and backups ask it and keep no retry logic of their own
(its owner: ``JobSettings``, see ``settings.py``).

Invariant: an item is sent at most ``max_attempts`` times counting the first, and is
not re-sent once ``deadline`` seconds have passed since its first send. Re-sends that
fix the *request* rather than wait out a fault (bisecting a refused chunk, halving an
oversized one, the one re-send after refreshing a token) spend no attempt; they are
bounded on their own. A call refused again right after a refresh spends one, so
credentials that keep failing end ``gave_up`` within this budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    deadline: float | None = None
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5  # share of each delay that is random: 0 none, 1 "full jitter"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays cannot be negative and multiplier must be at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive (or None)")

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait before the send that follows the ``failures``-th failure."""
        try:
            ceiling = min(self.max_delay, self.base_delay * self.multiplier ** max(0, failures - 1))
        except OverflowError:  # a huge multiplier: the cap applies
            ceiling = self.max_delay
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * rng.random()

    def may_retry(self, attempts: int, first_sent_at: float, now: float) -> bool:
        """Whether an item sent ``attempts`` times, first at ``first_sent_at``, may go again."""
        if attempts >= self.max_attempts:
            return False
        return self.deadline is None or now - first_sent_at < self.deadline

    def delay_before_next_send(self, failures: int, first_sent_at: float, now: float,
                               rng: random.Random) -> float | None:
        """After the ``failures``-th failure of a unit first sent at ``first_sent_at``: the
        backoff before its next send, or ``None`` when the policy allows it none (its
        attempts are spent, or the send would leave after the deadline)."""
        delay = self.backoff(failures, rng)
        return delay if self.may_retry(failures, first_sent_at, now + delay) else None

    def scaled(self, time_scale: float) -> RetryPolicy:
        """The same policy with every duration multiplied by ``time_scale``."""
        return replace(
            self,
            base_delay=self.base_delay * time_scale,
            max_delay=self.max_delay * time_scale,
            deadline=None if self.deadline is None else self.deadline * time_scale,
        )
