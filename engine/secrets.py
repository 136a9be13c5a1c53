"""Secrets that cannot leak by accident.

A :class:`Secret` prints as ``***`` in ``repr``, ``str`` and f-strings; only
:meth:`Secret.reveal` gives the value, and only the code that puts it on the wire calls it.
Every revealed value is also registered so the log processor (``logs.redact_secrets``)
can blank it wherever it appears, even inside a message someone formatted by hand.
"""

from __future__ import annotations

_KNOWN_VALUES: set[str] = set()
MASK = "***"
# shorter values are not blanked in free text: "admin" would turn "administrators" into
# "***istrators". They are still Secrets, so never printed by repr, str or format.
SCRUB_MIN_LENGTH = 8


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value
        if len(value) >= SCRUB_MIN_LENGTH:
            _KNOWN_VALUES.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str:  # pickling would write the value to disk
        raise TypeError("a Secret cannot be pickled")


def scrub(text: str) -> str:
    """``text`` with every known secret value replaced by ``***``."""
    for value in _KNOWN_VALUES:
        if value in text:
            text = text.replace(value, MASK)
    return text
