"""What a vendor's rate-limit headers say, whoever the vendor.

Two families are read:

- ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (GitHub,
  Twitter, many others); ``Reset`` is seconds from now, or an epoch time when it is larger
  than a year of seconds;
- the IETF ``RateLimit`` field (``limit=5, remaining=0, reset=1``, or the newer
  ``"policy";r=0;t=1``) and ``RateLimit-Policy`` (``5;w=1`` or ``"policy";q=5;w=1``), plus
  the older split ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset``.

Invariant (pinned by ``tests/test_learned_limit.py``): a value that is not a plain finite
number is ignored (never a pause of garbage, never an exception); a reset is at most
:data:`~unenroll.limits.window.LONGEST_PAUSE` seconds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from unenroll.limits.window import LONGEST_PAUSE

_EPOCH_AFTER = 365 * 86400.0  # a reset larger than this is an epoch time, not seconds
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")


@dataclass(frozen=True, slots=True)
class RateLimitWord:
    """What the headers said: each part None when not said (or not readable)."""

    limit: int | None = None  # calls per window
    remaining: int | None = None
    reset: float | None = None  # seconds until the window resets
    window: float | None = None  # the window's length, when a policy says it

    @property
    def spent(self) -> bool:
        """Nothing remains until ``reset``: the next call would be refused."""
        return self.remaining == 0 and self.reset is not None


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _seconds_from_now(value: float | None, now: Callable[[], float]) -> float | None:
    if value is None:
        return None
    if value > _EPOCH_AFTER:
        value = value - now()
    return min(max(value, 0.0), LONGEST_PAUSE)


def _params(field: str) -> dict[str, str]:
    """``limit=5, remaining=0`` or ``"p";q=5;w=1`` as a dict of the first policy's parameters."""
    first = field.split(",")[0] if ";" in field else field
    out: dict[str, str] = {}
    for part in re.split(r"[;,]", first):
        if "=" in part:
            name, _, value = part.partition("=")
            out.setdefault(name.strip().lower(), value.strip().strip('"'))
        elif _NUMBER.fullmatch(part) and "q" not in out:
            out["q"] = part.strip()  # "5;w=1": the quota first
    return out


def read_rate_limit(header: Callable[[str], str | None], now: Callable[[], float] = time.time) -> RateLimitWord:
    """The rate-limit word of an answer; ``header(name)`` returns a header's value or None."""
    limit = _number(header("X-RateLimit-Limit")) or _number(header("RateLimit-Limit"))
    remaining = _number(header("X-RateLimit-Remaining"))
    if remaining is None:
        remaining = _number(header("RateLimit-Remaining"))
    reset = _number(header("X-RateLimit-Reset"))
    if reset is None:
        reset = _number(header("RateLimit-Reset"))
    window = None
    if (field := header("RateLimit")) is not None:
        p = _params(field)
        limit = limit or _number(p.get("limit"))
        remaining = remaining if remaining is not None else _number(p.get("remaining") or p.get("r"))
        reset = reset if reset is not None else _number(p.get("reset") or p.get("t"))
    if (policy := header("RateLimit-Policy")) is not None:
        p = _params(policy)
        limit = limit or _number(p.get("q"))
        window = _number(p.get("w"))
    return RateLimitWord(
        limit=int(limit) if limit is not None and limit >= 1 else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=_seconds_from_now(reset, now),
        window=window if window is not None and window > 0 else None,
    )
