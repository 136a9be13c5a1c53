"""Input files, streamed: CSV with a header row, an Excel workbook (``.xlsx``, its first
sheet, row 1 the header), or JSONL, one item per row.

Invariant: **every non-blank physical line after the header yields exactly one value**, an
:class:`~unenroll.Item` (the row could be read; the engine still validates it) or an
:class:`~unenroll.Unreadable` naming the row and why it could not be read (the engine ends
it ``rejected`` with that reason). A line ends with LF, CRLF or a lone CR (old Mac Excel),
mixed in one file if need be, as an editor counts lines. So the results file's ``index``
is the row order, and ``meta["row"]`` is the row's 1-based line number in the file (the
header is line 1 of a CSV), as an editor or a spreadsheet shows it; in a workbook it is the
sheet's row number. Nothing is lost and nothing raises for a bad row:

- each CSV line is parsed on its own, so a double quote never closed on its line (a stray
  quote, or a cell with a line break in it: ids never hold one) makes that row unreadable
  and the next line is the next row: a quote can never swallow the rows after it;
- a value in an operation's column longer than ``max_id_chars`` (256) is unreadable: no
  id is that long, cells joined by a stray quote are;
- bytes that are not UTF-8 (a file saved as Latin-1) make that row unreadable, and only
  that row: lines are read as bytes and decoded one by one;
- a line longer than ``max_line_bytes`` (64 KiB) makes its row unreadable; memory stays
  bounded whatever the line length;
- a row without a value in one of the operation's columns is unreadable, naming the
  column;
- a JSONL line that is not a JSON object is unreadable;
- an id Excel turned into a number (``7.000000000983E+12``, ``7000000000983.0``) is
  unreadable with a hint to format the column as Text: its digits cannot be trusted.

The format is known by content first (a workbook is a zip file, even one named ``.csv``:
read as a workbook, with a notice), then by suffix. A CSV's delimiter (comma, semicolon,
tab or ``|``) is the one that splits its header row (see :mod:`unenroll.inputs.headers`),
unless given. Header names match loosely ("Course ID" is ``course_id``); the mapping used is
:attr:`InputFile.column_mapping`, and :attr:`InputFile.notices` says what the admin should know.

Problems with the file as a whole (a column missing from the header, an empty file, a
UTF-16 file) raise :class:`InputError` before any item is produced. A UTF-8 byte order
mark is skipped. Blank lines are not rows.

The reader is vendor-neutral: a :class:`RowShape` (from the vendor plugin) names the
columns an operation needs and turns their values into an item's target and subject.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from unenroll.inputs.errors import InputError
from unenroll.inputs.headers import detect_delimiter, match_columns, parse_delimiter
from unenroll.inputs.shapes import RowShape
from unenroll.inputs.sheets import OLE_MAGIC, ZIP_MAGIC, Workbook, excel_reformatted
from unenroll.model import Item, Unreadable

__all__ = ["Format", "InputError", "InputFile", "detect_format", "file_sha256", "parse_column_mapping",
           "parse_delimiter"]

MAX_LINE_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"[\r\n]")
_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|'"}
MAX_ID_CHARS = 256  # an id column's value; longer is a sign of cells joined by a stray quote
Format = Literal["csv", "jsonl", "xlsx"]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
XLSX_SUFFIXES = (".xlsx", ".xlsm")


def detect_format(path: Path) -> Format:
    """By content first (a workbook is a zip file whatever its name), then by suffix."""
    try:
        with path.open("rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError:
        head = b""
    suffix = path.suffix.lower()
    if head == ZIP_MAGIC or suffix in XLSX_SUFFIXES:
        return "xlsx"
    return "jsonl" if suffix in JSONL_SUFFIXES else "csv"


def parse_column_mapping(pairs: Sequence[str], shape: RowShape) -> dict[str, str]:
    """``["user_id=Employee ID", ...]`` -> ``{"user_id": "Employee ID"}``, names checked."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, header = pair.partition("=")
        name, header = name.strip(), header.strip()
        if not sep or not name or not header:
            raise InputError(f"--column {pair!r}: write it as NAME=HEADER, e.g. user_id=\"Employee ID\"")
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


class _Line(NamedTuple):
    number: int  # 1-based, as an editor counts lines
    text: str  # without its line ending; undecodable bytes kept as surrogates (``surrogateescape``)
    overlong: bool  # longer than the cap: ``text`` is empty and the line was skipped


def _physical_lines(file: IO[bytes], cap: int, block: int = 1 << 16) -> Iterator[_Line]:
    """Every physical line of a binary file, in order, ended by LF, CRLF or a lone CR (old
    Mac Excel) alike, as editors count them; a final line without an ending counts too.

    Memory stays below ``cap + block`` bytes whatever the file holds: a line longer than
    ``cap`` bytes is skipped in bounded reads and stands as an empty ``overlong`` line.
    A UTF-8 byte order mark at the start of the file is dropped.
    """
    buf, pos, eof, number = b"", 0, False, 0
    skip_lf = False  # the last line ended with CR: a LF right after it belongs to that ending

    def fill() -> None:
        nonlocal buf, pos, eof
        data = file.read(block)
        eof = not data
        buf, pos = buf[pos:] + data, 0

    fill()
    if buf.startswith(BOM):
        pos = len(BOM)
    while True:
        if skip_lf:
            if pos == len(buf) and not eof:
                fill()
            if buf[pos:pos + 1] == b"\n":
                pos += 1
            skip_lf = False
        end = _find_eol(buf, pos)
        if end < 0 and len(buf) - pos <= cap and not eof:
            fill()
            continue
        if end < 0 and pos == len(buf):  # the end of the file, after a line ending (or none at all)
            return
        number += 1
        if (end < 0 and len(buf) - pos > cap) or end - pos > cap:
            while end < 0 and not eof:  # skip the rest of the line, a block at a time
                buf, pos = b"", 0
                fill()
                end = _find_eol(buf, pos)
            yield _Line(number, "", True)
        else:
            yield _Line(number, buf[pos:len(buf) if end < 0 else end].decode("utf-8", "surrogateescape"), False)
        if end < 0:
            return
        skip_lf = buf[end:end + 1] == b"\r"
        pos = end + 1


def _find_eol(buf: bytes, start: int) -> int:
    """Where the first CR or LF at or after ``start`` is, or -1."""
    found = _EOL.search(buf, start)
    return found.start() if found else -1


class _OneLine:
    """One line served to :func:`csv.reader`, noting whether the reader asked for another:
    it does only when a quoted field is still open at the end of the line."""

    def __init__(self, text: str) -> None:
        self.text: str | None = text
        self.wanted_more = False

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        if self.text is None:
            self.wanted_more = True
            raise StopIteration
        text, self.text = self.text, None
        return text


def _csv_cells(text: str, delimiter: str = ",") -> list[str] | str:
    """One physical line parsed as one CSV row, or why it cannot be: a quote is never
    closed on the line, or a cell is too long. It never reads another line, so a stray
    quote cannot swallow the rows that follow."""
    line = _OneLine(text)
    try:
        cells = next(csv.reader(line, delimiter=delimiter), [])
    except csv.Error:  # in practice only a cell longer than the csv module's field limit
        return f"a cell is longer than {csv.field_size_limit()} characters"
    if line.wanted_more:
        return ("a double quote opens a cell that is never closed on this line (a stray quote, or a cell with "
                "a line break in it): the row is not read, and the next line is read as the next row")
    return cells


class InputFile:
    """An input file checked for use with one :class:`RowShape`; :meth:`items` streams it.

    Opening reads only the header (CSV, workbook) to resolve each column to a header name,
    so a missing column is an :class:`InputError` before anything is sent. :meth:`items`
    can be called more than once (to plan, then to run); it refuses a file that changed
    since it was opened. ``fmt`` and ``delimiter`` left ``None`` are detected; a workbook is
    read as one whatever ``fmt`` says (its bytes are not text).
    """

    def __init__(
        self,
        path: Path,
        shape: RowShape,
        mapping: Mapping[str, str] | None = None,
        *,
        fmt: Format | None = None,
        delimiter: str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_id_chars: int = MAX_ID_CHARS,
    ) -> None:
        self.path = path
        self.shape = shape
        self.format: Format = fmt or detect_format(path)
        self.delimiter = None if delimiter is None else parse_delimiter(delimiter)  # CSV: None is detected
        self.notices: list[str] = []  # what the admin should know about how the file is read
        self._workbook: Workbook | None = None
        self.max_line_bytes = max_line_bytes
        self.max_id_chars = max_id_chars
        self._mapping = dict(mapping or {})
        self.columns: dict[str, str] = {}  # column -> the header name (CSV) or key (JSONL) it is read from
        self._positions: dict[str, int] = {}  # CSV: column -> position in the row
        self._keys: dict[str, list[str]] = {}  # JSONL: column -> keys to try
        self._header_line = 0
        self._header: list[str] = []
        try:
            self._stamp = self._stat()
            with path.open("rb") as f:
                head = f.read(len(OLE_MAGIC))
                if head.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InputError(f"{path} is UTF-16 text: save it as UTF-8 (in Excel: \"CSV UTF-8\")")
                if head == OLE_MAGIC:
                    raise InputError(f"{path} is an old-format (.xls) or password-protected Excel workbook: save it "
                                     "in Excel as .xlsx (Excel Workbook) or as CSV UTF-8")
                self._check_format(head)
                f.seek(0)
                if self.format == "csv":
                    self._read_header(f)
            if self.format == "xlsx":
                self._read_sheet_header()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if self.format == "jsonl":
            for c in shape.columns:
                mapped = self._mapping.get(c.name)
                self._keys[c.name] = [mapped] if mapped else [c.name, *c.aliases]
                self.columns[c.name] = mapped or c.name

    @property
    def column_mapping(self) -> dict[str, str]:
        """Each column -> the header name (CSV, workbook) or key (JSONL) it is read from, to show in the plan."""
        return dict(self.columns)

    def _check_format(self, head: bytes) -> None:
        """A workbook is read as one whatever its name or ``fmt`` says; the admin is told."""
        suffix = self.path.suffix.lower()
        if head.startswith(ZIP_MAGIC) and (self.format != "xlsx" or suffix not in XLSX_SUFFIXES):
            named = f", though its name ends in {suffix}" if suffix else ""
            claimed = (suffix.lstrip(".") or "csv").upper() if self.format == "xlsx" else self.format.upper()
            self.notices.append(f"{self.path.name} is an Excel workbook (.xlsx), not {claimed} text{named}: it is "
                                "read as a workbook (its first sheet)")
            self.format = "xlsx"
        elif self.format == "xlsx" and not head.startswith(ZIP_MAGIC):
            if suffix not in XLSX_SUFFIXES:
                raise InputError(f"{self.path} is not an Excel workbook (.xlsx)")
            self.format = "csv"
            self.notices.append(f"{self.path.name} is named {suffix} but holds text, not an Excel workbook: "
                                "it is read as CSV")

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    # -- CSV header -----------------------------------------------------------------------

    def _read_header(self, f: IO[bytes]) -> None:
        header: list[str] | None = None
        for line in _physical_lines(f, self.max_line_bytes):
            if line.overlong:
                raise InputError(f"{self.path}: line {line.number} is longer than {self.max_line_bytes} bytes; "
                                 "the first line must be the header row")
            if not line.text.strip():
                continue
            if self.delimiter is None:
                self.delimiter = detect_delimiter(line.text)
                if self.delimiter != ",":
                    self.notices.append(f"{self.path.name} is read with {_DELIMITER_NAMES[self.delimiter]} between "
                                        "cells, as its header row is (--delimiter chooses another)")
            cells = _csv_cells(line.text, self.delimiter)
            if isinstance(cells, str):
                raise InputError(f"{self.path}: the header row (line {line.number}) cannot be read: {cells}")
            header, self._header_line = cells, line.number
            break
        if header is None:
            raise InputError(f"{self.path} is empty: it needs a header row naming the columns "
                             f"({', '.join(self.shape.column_names)})")
        names = self._header = [h.strip() for h in header]
        if any(_first_bad_byte(n) is not None for n in names):
            raise InputError(f"{self.path}: the header row is not UTF-8 text: save the file as UTF-8")
        self._match(names)

    def _read_sheet_header(self) -> None:
        self._workbook = book = Workbook(self.path)
        if book.sheet_count > 1:
            self.notices.append(f"{self.path.name} has {book.sheet_count} sheets: the first, {book.sheet_title!r}, "
                                "is read")
        for number, cells in book.rows():
            if any(c.strip() for c in cells):
                self._header_line = number
                self._match([c.strip() for c in cells])
                return
        raise InputError(f"{self.path}: the sheet {book.sheet_title!r} is empty: it needs a header row naming the "
                         f"columns ({', '.join(self.shape.column_names)})")

    def _match(self, names: list[str]) -> None:
        self._header = names
        self._positions = match_columns(names, self.shape, self._mapping, str(self.path))
        self.columns = {name: names[position] for name, position in self._positions.items()}

    # -- items ----------------------------------------------------------------------------

    def items(self) -> Iterator[Item | Unreadable]:
        """One value per row, in file order (see the module's invariant)."""
        if self._stat() != self._stamp:
            raise InputError(f"{self.path} changed since it was checked: run the command again")
        if self._workbook is not None:
            yield from self._sheet_items(self._workbook)
        else:
            with self.path.open("rb") as f:
                yield from (self._csv_items(f) if self.format == "csv" else self._jsonl_items(f))
        if self._stat() != self._stamp:
            raise InputError(f"{self.path} changed while it was being read")

    @property
    def header(self) -> list[str]:
        """The header row's names (CSV, workbook); empty for JSON lines."""
        return list(self._header)

    def raw_rows(self) -> Iterator[tuple[int, list[str] | str]]:
        """Every row as it is in the file, numbered as :meth:`items` numbers it: its cells (CSV,
        workbook) or its line (JSON lines, or a CSV line that cannot be split). Refused
        (:class:`InputError`) if the file changed since it was checked: its rows would not be
        the rows the job read."""
        if self._stat() != self._stamp:
            raise InputError(f"{self.path} changed since it was checked")
        if self._workbook is not None:
            for number, cells in self._workbook.rows():
                if number > self._header_line and any(cell.strip() for cell in cells):
                    yield number, cells
            return
        with self.path.open("rb") as f:
            for number, line, overlong in _physical_lines(f, self.max_line_bytes):
                if number <= self._header_line or overlong or not line.strip():
                    continue
                if self.format == "jsonl":
                    yield number, line
                else:
                    yield number, _csv_cells(line, self.delimiter or ",")

    def _item(self, values: Mapping[str, str], row: int) -> Item:
        target, subject = self.shape.to_item(values)
        return Item(self.shape.operation, target, subject, {"row": row})

    def _unreadable(self, row: int, reason: str, text: str) -> Unreadable:
        return Unreadable(f"row {row}: {reason}", _shown(text), {"row": row})

    def _csv_items(self, f: IO[bytes]) -> Iterator[Item | Unreadable]:
        """One value per non-blank line after the header: each physical line is parsed on its
        own, so a quote left open is that row's problem and the next line is the next row."""
        for number, line, overlong in _physical_lines(f, self.max_line_bytes):
            if number <= self._header_line:
                continue
            if overlong:
                yield self._unreadable(number, f"the line is longer than {self.max_line_bytes} bytes", "")
                continue
            if not line.strip():
                continue  # a blank line is not a row
            row = _csv_cells(line, self.delimiter or ",")
            if isinstance(row, str):
                yield self._unreadable(number, row, line)
                continue
            yield self._from_cells(number, row)

    def _sheet_items(self, book: Workbook) -> Iterator[Item | Unreadable]:
        """One value per non-empty row after the header, numbered as the sheet numbers it."""
        for number, row in book.rows():
            if number > self._header_line and any(cell.strip() for cell in row):
                yield self._from_cells(number, row)

    def _from_cells(self, number: int, row: list[str]) -> Item | Unreadable:
        """A row's cells as an item, or as unreadable naming the first column that cannot be read."""
        positions = self._positions
        text = (self.delimiter or ",").join(row)
        values: dict[str, str] = {}
        problem: str | None = None
        for position in sorted(positions.values()):  # only the columns this run reads
            value = row[position] if position < len(row) else ""
            if (bad := _first_bad_byte(value)) is not None:
                problem = f"not UTF-8 text (byte 0x{bad:02x}{self._column_at(position)}): save the file as UTF-8"
                break
        else:
            for name, position in positions.items():
                value = row[position].strip() if position < len(row) else ""  # " 7000000000130 " too
                problem = self._id_problem(value, repr(self.columns[name]), f"column {self.columns[name]!r}")
                if problem is not None:
                    break
                values[name] = value
        if problem is not None:
            return self._unreadable(number, problem, text)
        return self._item(values, number)

    def _id_problem(self, value: str, name: str, where: str) -> str | None:
        """Why ``value`` cannot be an id, if it cannot (empty, too long to be one, or a number Excel reformatted)."""
        if not value:
            return f"no value in {where}"
        if excel_reformatted(value):
            return (f"the value in {where} looks like a number Excel reformatted ({value}): format the column as "
                    "Text in Excel and export again")
        if len(value) > self.max_id_chars:
            return (f"the value in {where} is {len(value)} characters long, more than an id can be "
                    f"({self.max_id_chars}): a stray double quote may have joined cells")
        return None

    def _column_at(self, position: int) -> str:
        if position < len(self._header):
            return f" in column {self._header[position]!r}"
        return f" in column {position + 1}"

    def _jsonl_items(self, f: IO[bytes]) -> Iterator[Item | Unreadable]:
        for number, line, overlong in _physical_lines(f, self.max_line_bytes):
            if overlong:
                yield self._unreadable(number, f"the line is longer than {self.max_line_bytes} bytes", "")
                continue
            if not line.strip():
                continue
            if (bad := _first_bad_byte(line)) is not None:
                yield self._unreadable(number, f"not UTF-8 text (byte 0x{bad:02x}): save the file as UTF-8", line)
                continue
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                yield self._unreadable(number, f"not a JSON object ({exc.msg} at character {exc.pos + 1})", line)
                continue
            except ValueError:  # a number too long to convert
                yield self._unreadable(number, "not a JSON object (a value cannot be read)", line)
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
                if (problem := self._id_problem(value, key, repr(key))) is not None:
                    break
                values[name] = value
            if problem is not None:
                yield self._unreadable(number, problem, line)
            else:
                yield self._item(values, number)
