"""How a header row is read: which delimiter separates its cells, and which cell each of an
operation's columns is read from.

Invariants:

- the delimiter is the one of ``, ; TAB |`` that splits the header into the most cells (a
  comma when none splits it: a one-column header), so a semicolon- or tab-separated export
  from a European Excel is read as it is;
- a column is found by its name or one of its aliases, trying exact spelling first, then
  case, then ignoring case, spaces, underscores and hyphens ("Course ID" is ``course_id``);
  the first level that finds one header cell wins, and two cells found at one level is an
  error (which one is meant?), never a guess.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence

from unenroll.inputs.errors import InputError
from unenroll.inputs.shapes import RowShape

DELIMITERS = (",", ";", "\t", "|")  # in order of preference when two split a header alike
_DELIMITER_WORDS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
_IGNORED = re.compile(r"[\s_\-]+")


def header_key(name: str) -> str:
    """A header name as matched loosely: ``"Course ID"``, ``"course_id"``, ``"COURSE-ID"`` alike."""
    return _IGNORED.sub("", name.casefold())


def detect_delimiter(header_line: str) -> str:
    """The delimiter that splits ``header_line`` into the most cells; a comma if none splits it."""
    def cells(delimiter: str) -> int:
        try:
            return len(next(csv.reader([header_line], delimiter=delimiter), []))
        except csv.Error:
            return 0
    return max(DELIMITERS, key=lambda d: (cells(d), -DELIMITERS.index(d)))


def parse_delimiter(text: str) -> str:
    """``--delimiter``'s value as one character: ``";"``, ``"tab"`` or ``"\\t"``, ``"comma"`` ..."""
    delimiter = _DELIMITER_WORDS.get(text.strip().casefold(), text)
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise InputError(f"--delimiter {text!r}: give one character, e.g. ';' or 'tab'")
    return delimiter


_LEVELS: tuple[Callable[[str], str], ...] = (lambda n: n, str.casefold, header_key)


def match_columns(names: Sequence[str], shape: RowShape, mapping: Mapping[str, str], where: str) -> dict[str, int]:
    """Each of ``shape``'s columns -> the position of the header cell it is read from.

    ``mapping`` (``--column NAME=HEADER``) replaces a column's own name and aliases. Raises
    :class:`InputError` naming every column not found and the header names that were.
    """
    positions: dict[str, int] = {}
    missing = []
    for column in shape.columns:
        wanted = mapping.get(column.name)
        candidates = [wanted] if wanted is not None else [column.name, *column.aliases]
        position = _find(names, candidates, column.name, where)
        if position is None:
            missing.append(f"{column.name!r}" + (f" (mapped to {wanted!r})" if wanted else ""))
        else:
            positions[column.name] = position
    if missing:
        found = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
        raise InputError(
            f"{where}: the header has no column {' or '.join(missing)} (found {found}); "
            f"the {shape.operation} rows need {', '.join(shape.column_names)}; "
            "map another header name with --column NAME=HEADER"
        )
    return positions


def _find(names: Sequence[str], candidates: Sequence[str], column: str, where: str) -> int | None:
    for level in _LEVELS:
        for candidate in candidates:
            hits = [i for i, n in enumerate(names) if n and level(n) == level(candidate)]
            if len(hits) > 1:
                same = len({names[i] for i in hits}) == 1
                shown = f"{names[hits[0]]!r} twice" if same else " and ".join(repr(names[i]) for i in hits[:3])
                raise InputError(f"{where}: the header names {shown}: which one is {column!r}? "
                                 "Rename one, or choose with --column NAME=HEADER")
            if hits:
                return hits[0]
    return None
