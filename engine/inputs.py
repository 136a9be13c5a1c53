"""Input files, streamed: CSV with a header row, or JSONL, one item per row.

Invariant: **every input row yields exactly one value**, an :class:`~unenroll.Item` (the
row could be read; the engine still validates it) or an :class:`~unenroll.Unreadable`
naming the row and why it could not be read (the engine ends it ``rejected`` with that
reason). So the results file's ``index`` is the row order, and ``meta["row"]`` is the
row's 1-based line number in the file (the header is line 1 of a CSV), as an editor or a
spreadsheet shows it. Nothing is lost and nothing raises for a bad row:

- bytes that are not UTF-8 (a file saved as Latin-1) make that row unreadable, and only
  that row: lines are read as bytes and decoded one by one;
- a line longer than ``max_line_bytes`` (64 KiB) makes its row unreadable; memory stays
  bounded whatever the line length;
- a row without a value in one of the operation's columns is unreadable, naming the
  column;
- a JSONL line that is not a JSON object is unreadable.

Problems with the file as a whole (a column missing from the header, an empty file, a
UTF-16 file) raise :class:`InputError` before any item is produced. A UTF-8 byte order
mark is skipped. Blank lines are not rows.

The reader is vendor-neutral: a :class:`RowShape` (from the vendor registry) names the
columns an operation needs and turns their values into an item's target and subject.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .model import Item, Unreadable

MAX_LINE_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
Format = Literal["csv", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class InputError(Exception):
    """The input file cannot be used as asked (no such column, empty, not UTF-8 text)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One value an operation needs from each row. ``aliases`` are other header names
    that mean the same (the vendor's own name for it, say), tried after ``name``."""

    name: str
    help: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowShape:
    """What a row means for one operation: its columns, and how their values make an
    item's target and subject (``to_item(values) -> (target, subject)``; it is only
    given rows with a value in every column)."""

    operation: str  # the adapter's operation name
    columns: tuple[Column, ...]
    to_item: Callable[[Mapping[str, str]], tuple[tuple[str, ...], str]]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def detect_format(path: Path) -> Format:
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "csv"


def parse_column_mapping(pairs: Sequence[str], shape: RowShape) -> dict[str, str]:
    """``["erecno=Employee ID", ...]`` -> ``{"erecno": "Employee ID"}``, names checked."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, header = pair.partition("=")
        name, header = name.strip(), header.strip()
        if not sep or not name or not header:
            raise InputError(f"--column {pair!r}: write it as NAME=HEADER, e.g. erecno=\"Employee ID\"")
        if name not in shape.column_names:
            raise InputError(f"--column {pair!r}: {name!r} is not a column of this operation "
                             f"(its columns: {', '.join(shape.column_names)})")
        mapping[name] = header
    return mapping


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _shown(text: str, limit: int = 200) -> str:
    """``text`` made safe to show: undecodable bytes as ``\\xNN``, cut to ``limit``."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_value(value: object, key: str) -> tuple[str | None, str | None]:
    """A JSONL value as an id (strings, and integers written as digits), or why not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, f"no value for {key!r}"
    if not isinstance(value, str):
        return None, f"{key!r} must be a string or an integer, not {type(value).__name__}"
    if _first_bad_byte(value) is not None:
        return None, f"{key!r} holds a character that is not valid text (a lone surrogate)"
    return value.strip(), None


def _first_bad_byte(text: str) -> int | None:
    """The first byte that was not UTF-8 (decoded with ``surrogateescape``), if any."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return ord(text[exc.start]) - 0xDC00
    return None


@dataclass(slots=True)
class _Lines:
    """Physical lines of a binary file, decoded one by one (``surrogateescape``), none
    held longer than ``cap`` bytes: a longer line is skipped in bounded reads, its number
    remembered in ``overlong``, and an empty line stands in for it."""

    file: IO[bytes]
    cap: int
    number: int = 0
    overlong: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.file.readline(self.cap + 1)
            if not raw:
                return
            self.number += 1
            if self.number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if len(raw) > self.cap and not raw.endswith(b"\n"):
                while (rest := self.file.readline(self.cap)) and not rest.endswith(b"\n"):
                    pass
                self.overlong.add(self.number)
                yield "\n"
                continue
            yield raw.decode("utf-8", "surrogateescape")


class InputFile:
    """An input file checked for use with one :class:`RowShape`; :meth:`items` streams it.

    Opening reads only the header (CSV) to resolve each column to a header name, so a
    missing column is an :class:`InputError` before anything is sent. :meth:`items` can
    be called more than once (to plan, then to run); it refuses a file that changed
    since it was opened.
    """

    def __init__(
        self,
        path: Path,
        shape: RowShape,
        mapping: Mapping[str, str] | None = None,
        *,
        fmt: Format | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.shape = shape
        self.format: Format = fmt or detect_format(path)
        self.max_line_bytes = max_line_bytes
        self._mapping = dict(mapping or {})
        self.columns: dict[str, str] = {}  # column -> the header name (CSV) or key (JSONL) it is read from
        self._positions: dict[str, int] = {}  # CSV: column -> position in the row
        self._keys: dict[str, list[str]] = {}  # JSONL: column -> keys to try
        self._header_line = 0
        self._header: list[str] = []
        try:
            self._stamp = self._stat()
            with path.open("rb") as f:
                if f.read(4).startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InputError(f"{path} is UTF-16 text: save it as UTF-8 (in Excel: \"CSV UTF-8\")")
                f.seek(0)
                if self.format == "csv":
                    self._read_header(f)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if self.format == "jsonl":
            for c in shape.columns:
                mapped = self._mapping.get(c.name)
                self._keys[c.name] = [mapped] if mapped else [c.name, *c.aliases]
                self.columns[c.name] = mapped or c.name

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    # -- CSV header -----------------------------------------------------------------------

    def _read_header(self, f: IO[bytes]) -> None:
        lines = _Lines(f, self.max_line_bytes)
        reader = csv.reader(iter(lines))
        header: list[str] | None = None
        try:
            for row in reader:
                if row:
                    header = row
                    break
        except csv.Error as exc:
            raise InputError(f"{self.path}: the header row cannot be read as CSV: {exc}") from None
        if lines.overlong:
            raise InputError(f"{self.path}: line {min(lines.overlong)} is longer than {self.max_line_bytes} bytes; "
                             "the first line must be the header row")
        if header is None:
            raise InputError(f"{self.path} is empty: it needs a header row naming the columns "
                             f"({', '.join(self.shape.column_names)})")
        self._header_line = reader.line_num
        names = self._header = [h.strip() for h in header]
        if any(_first_bad_byte(n) is not None for n in names):
            raise InputError(f"{self.path}: the header row is not UTF-8 text: save the file as UTF-8")
        missing = []
        for column in self.shape.columns:
            wanted = self._mapping.get(column.name)
            candidates = [wanted] if wanted is not None else [column.name, *column.aliases]
            position = self._find(names, candidates, column.name)
            if position is None:
                missing.append(f"{column.name!r}" + (f" (mapped to {wanted!r})" if wanted else ""))
            else:
                self._positions[column.name] = position
                self.columns[column.name] = names[position]
        if missing:
            found = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
            raise InputError(
                f"{self.path}: the header has no column {' or '.join(missing)} (found {found}); "
                f"the {self.shape.operation} rows need {', '.join(self.shape.column_names)}; "
                "map another header name with --column NAME=HEADER"
            )

    def _find(self, names: list[str], candidates: Sequence[str], column: str) -> int | None:
        for exact in (True, False):
            for candidate in candidates:
                hits = [i for i, n in enumerate(names)
                        if (n == candidate if exact else n.casefold() == candidate.casefold())]
                if len(hits) > 1:
                    raise InputError(f"{self.path}: the header names {names[hits[0]]!r} twice: "
                                     f"which one is {column!r}?")
                if hits:
                    return hits[0]
        return None

    # -- items ----------------------------------------------------------------------------

    def items(self) -> Iterator[Item | Unreadable]:
        """One value per row, in file order (see the module's invariant)."""
        if self._stat() != self._stamp:
            raise InputError(f"{self.path} changed since it was checked: run the command again")
        with self.path.open("rb") as f:
            yield from (self._csv_items(f) if self.format == "csv" else self._jsonl_items(f))
        if self._stat() != self._stamp:
            raise InputError(f"{self.path} changed while it was being read")

    def _item(self, values: Mapping[str, str], row: int) -> Item:
        target, subject = self.shape.to_item(values)
        return Item(self.shape.operation, target, subject, {"row": row})

    def _unreadable(self, row: int, reason: str, text: str) -> Unreadable:
        return Unreadable(f"row {row}: {reason}", _shown(text), {"row": row})

    def _csv_items(self, f: IO[bytes]) -> Iterator[Item | Unreadable]:
        lines = _Lines(f, self.max_line_bytes)
        reader = csv.reader(iter(lines))
        positions = self._positions
        last_line = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                first, last_line = last_line + 1, reader.line_num
                if first > self._header_line:
                    yield self._unreadable(first, f"not readable as CSV ({exc})", "")
                continue
            first, last_line = last_line + 1, reader.line_num
            if last_line <= self._header_line:
                continue
            overlong = [n for n in lines.overlong if first <= n <= last_line]
            if overlong:
                lines.overlong.difference_update(overlong)
                yield self._unreadable(first, f"the line is longer than {self.max_line_bytes} bytes", "")
                continue
            if not row:
                continue  # a blank line is not a row
            text = ",".join(row)
            for position in sorted(positions.values()):  # only the columns this run reads
                value = row[position] if position < len(row) else ""
                if (bad := _first_bad_byte(value)) is not None:
                    where = self._column_at(position)
                    yield self._unreadable(first, f"not UTF-8 text (byte 0x{bad:02x}{where}): save the file as UTF-8",
                                           text)
                    break
            else:
                values: dict[str, str] = {}
                for name, position in positions.items():
                    value = row[position] if position < len(row) else ""
                    if not value.strip():
                        yield self._unreadable(first, f"no value in column {self.columns[name]!r}", text)
                        break
                    values[name] = value.strip()  # spreadsheets export " 7000000000130 " too
                else:
                    yield self._item(values, first)

    def _column_at(self, position: int) -> str:
        if position < len(self._header):
            return f" in column {self._header[position]!r}"
        return f" in column {position + 1}"

    def _jsonl_items(self, f: IO[bytes]) -> Iterator[Item | Unreadable]:
        lines = _Lines(f, self.max_line_bytes)
        for line in lines:
            number = lines.number
            if number in lines.overlong:
                lines.overlong.discard(number)
                yield self._unreadable(number, f"the line is longer than {self.max_line_bytes} bytes", "")
                continue
            if not line.strip():
                continue
            if (bad := _first_bad_byte(line)) is not None:
                yield self._unreadable(number, f"not UTF-8 text (byte 0x{bad:02x}): save the file as UTF-8", line)
                continue
            try:
                record: Any = json.loads(line)
            except ValueError as exc:
                yield self._unreadable(number, f"not a JSON object ({exc})", line)
                continue
            if not isinstance(record, dict):
                yield self._unreadable(number, f"not a JSON object (a {type(record).__name__})", line)
                continue
            values: dict[str, str] = {}
            problem: str | None = None
            for name, keys in self._keys.items():
                key = next((k for k in keys if k in record), keys[0])
                value, problem = _json_value(record.get(key), key)
                if value is None:
                    break
                values[name] = value
            if problem is not None:
                yield self._unreadable(number, problem, line.rstrip("\r\n"))
            else:
                yield self._item(values, number)
