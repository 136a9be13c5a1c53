"""Matching the ids a vendor's answer echoes against the ids that were sent.

Invariant (pinned by ``tests/test_hostile_answers.py``): an echoed id denotes a sent id only
when it is exactly that id: the same digits as a string (leading zeros aside), or a JSON
number whose value is exactly that integer: an int, or an integral float below 2**53 (the
range where every integer is a float; above it ``7000000000000001.0`` may be another id
rounded). ``None``, booleans, fractions, NaN, infinities, negative numbers, larger floats,
strings that are not digits and every other JSON value denote no id: a reader that meets
one treats the whole answer as unreadable, never as "this id was absent".
"""

from __future__ import annotations

import math
from typing import Any

EXACT_FLOAT_LIMIT = 2**53  # every integer below it is a float exactly; above, floats skip integers
MAX_ID_DIGITS = 20  # longer digit strings are no vendor's id (and int() of a huge string is costly)


def exact_id(value: Any) -> str | None:
    """The canonical decimal digits ``value`` denotes exactly, or ``None`` if it denotes no id."""
    if isinstance(value, bool):  # a bool is an int to Python, never an id to a vendor
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and 0 <= value < EXACT_FLOAT_LIMIT:
            return str(int(value))
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS:
        return str(int(value))
    return None
