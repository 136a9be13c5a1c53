"""The admin's files: the results file and the errors file, row by row in input order, each
row with every original cell first.

**The results file** holds one row per input row, in input order: the row's cells as the
admin gave them (CSV or workbook columns; a JSON line's keys), then ``outcome``, ``code``,
``message``, ``attempts`` and ``row`` (the input's row number). If the input already has a
column of one of those names, all five are written ``unenroll_outcome``... so that none
clashes. ``.csv``, ``.jsonl`` or ``.xlsx``, by the results file's suffix.

**The errors file** (beside it, ``*.errors.csv``; ``.jsonl`` for JSON-lines input) holds
just the rows that need attention (``rejected``, ``failed``, ``gave_up``, ``not_sent``):
the input's header and those rows as they were, then ``unenroll_outcome``,
``unenroll_code``, ``unenroll_message``; it reads as an input file as it is (fix the rows,
run it, done). It is removed when no row needs attention.

Both are written in one pass that streams the input once more beside the journal's
outcomes ordered by row (:meth:`~unenroll.accounts.journal.Journal.outcomes_by_row`), so
memory stays flat whatever the size. A row the job never read (it stopped first) is
``not_sent`` with that reason. Every cell a spreadsheet would execute is made text
(:func:`~unenroll.accounts.results.spreadsheet_safe`), in CSV and XLSX alike. Each file is
written beside its final name and moved into place, so a reader never sees half of one.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from unenroll.accounts.journal import RowOutcome
from unenroll.accounts.results import results_format, spreadsheet_safe
from unenroll.inputs.files import InputError, InputFile

RESULT_COLUMNS = ("outcome", "code", "message", "attempts", "row")
ERRORS_COLUMNS = ("unenroll_outcome", "unenroll_code", "unenroll_message")
NEEDS_ATTENTION = frozenset({"rejected", "failed", "gave_up", "not_sent"})
NOT_READ = RowOutcome(None, "not_sent", "not_read",
                      "the run stopped before this row was read: run the same command with --resume", 0)


def errors_path(results: Path, input_format: str) -> Path:
    """``in.results.csv`` -> ``in.results.errors.csv`` (``.jsonl`` for JSON-lines input)."""
    suffix = ".jsonl" if input_format == "jsonl" else ".csv"
    return results.with_name(results.name.rsplit(".", 1)[0] + ".errors" + suffix)


def result_columns(header: Iterable[str]) -> tuple[str, ...]:
    """The five result columns' names, prefixed ``unenroll_`` if the input has one of them."""
    taken = {h.strip().lower() for h in header}
    if taken & set(RESULT_COLUMNS):
        return tuple(f"unenroll_{c}" for c in RESULT_COLUMNS)
    return RESULT_COLUMNS


@dataclass
class RowFiles:
    """What was written: the results file, the errors file (``errors_rows`` rows; the path
    exists only if there are some), the outcomes counted row by row, and the rows that
    failed or were rejected grouped by (outcome, code), each with its first message."""

    results: Path
    errors: Path
    errors_rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the admin should know about the files


def _open_text(path: Path) -> IO[str]:
    return path.open("w", encoding="utf-8", newline="")


def _readable(value: Any) -> Any:
    """Bytes of the input that were not UTF-8 (read as surrogate escapes) become U+FFFD: every
    file written is valid UTF-8 (the row's message says what was wrong with it)."""
    if isinstance(value, str):
        if value.isascii():  # the common case, and cheap to tell
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_readable(k): _readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(v) for v in value]
    return value


class _CsvTable:
    def __init__(self, path: Path) -> None:
        self._file = _open_text(path)
        self._writer = csv.writer(self._file)

    def add(self, cells: list[Any]) -> None:
        self._writer.writerow([spreadsheet_safe(_readable(c)) for c in cells])

    def close(self) -> None:
        self._file.close()


class _XlsxTable:
    """A workbook written row by row (openpyxl's write-only mode: memory stays flat)."""

    def __init__(self, path: Path) -> None:
        from openpyxl import Workbook

        self._path = path
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet("results")

    def add(self, cells: list[Any]) -> None:
        self._sheet.append([spreadsheet_safe(_xml_text(c)) for c in cells])

    def close(self) -> None:
        self._book.save(self._path)


def _xml_text(value: Any) -> Any:
    """A cell a workbook can hold: :func:`_readable`, without the control characters XML forbids."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", _readable(value))


class _JsonTable:
    """JSON lines: a JSON-lines input's own object, or ``{header: cell}``, then the results."""

    def __init__(self, path: Path) -> None:
        self._file = _open_text(path)

    def add_record(self, original: dict[str, Any], extra: dict[str, Any]) -> None:
        self._file.write(json.dumps(_readable({**original, **extra}), ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


def _original(raw: list[str] | str | None, header: list[str], input_format: str) -> dict[str, Any]:
    """A row's own data as a mapping (for JSON-lines output)."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        if input_format == "jsonl":
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict):
                return record
        return {"unenroll_line": raw}
    return dict(zip(header, raw, strict=False)) if header else {"unenroll_line": ",".join(raw)}


def _cells(raw: list[str] | str | None, width: int) -> list[str]:
    """A row's own cells, padded or cut to the header's width (for CSV and XLSX output)."""
    if raw is None:
        cells: list[str] = []
    elif isinstance(raw, str):
        cells = [raw]
    else:
        cells = list(raw)
    if width:
        cells = (cells + [""] * width)[:width] if len(cells) < width else cells[:width]
    return cells


def _readable_rows(input_file: InputFile, written: RowFiles) -> Iterator[tuple[int, list[str] | str]]:
    """The input's rows, until the file cannot be read again as it was (it changed, or it
    fails): then the rest of the outcomes are written without their cells, and ``written``
    says why."""
    try:
        yield from input_file.raw_rows()
    except (InputError, OSError) as exc:
        written.notes.append(f"the input could not be read again ({exc}): rows from there on are written "
                             "without their own cells")


def _rows_with_outcomes(input_file: InputFile, outcomes: Iterable[RowOutcome], written: RowFiles,
                        ) -> Iterator[tuple[int | None, list[str] | str | None, RowOutcome]]:
    """Input rows merged with their outcomes, by row number; an outcome with no readable
    row (an overlong line) comes with none, a row with no outcome as :data:`NOT_READ`."""
    recorded = iter(outcomes)
    pending = next(recorded, None)
    for number, raw in _readable_rows(input_file, written):
        while pending is not None and pending.row is not None and pending.row < number:
            yield pending.row, None, pending
            pending = next(recorded, None)
        if pending is not None and pending.row == number:
            yield number, raw, pending
            pending = next(recorded, None)
        else:
            yield number, raw, NOT_READ
    while pending is not None:
        yield pending.row, None, pending
        pending = next(recorded, None)


def write_row_files(input_file: InputFile, outcomes: Iterable[RowOutcome], results: Path) -> RowFiles:
    """Write the results file and the errors file (see the module) from ``outcomes``,
    ordered by row as :meth:`Journal.outcomes_by_row` yields them."""
    fmt = results_format(results)
    header = input_file.header if input_file.format != "jsonl" else []
    names = result_columns(header)
    written = RowFiles(results, errors_path(results, input_file.format))
    results_tmp = results.with_name(results.name + ".tmp")
    errors_tmp = written.errors.with_name(written.errors.name + ".tmp")
    table: _CsvTable | _XlsxTable | _JsonTable
    if fmt == "jsonl":
        table = _JsonTable(results_tmp)
    else:
        table = _XlsxTable(results_tmp) if fmt == "xlsx" else _CsvTable(results_tmp)
        table.add([*(header or ["unenroll_line"]), *names])
    errors: _CsvTable | _JsonTable | None = None
    try:
        for number, raw, ended in _rows_with_outcomes(input_file, outcomes, written):
            written.counts[ended.outcome] += 1
            result = [ended.outcome, ended.code, ended.message, ended.attempts, "" if number is None else number]
            if isinstance(table, _JsonTable):
                table.add_record(_original(raw, header, input_file.format), dict(zip(names, result, strict=True)))
            else:
                table.add([*_cells(raw, len(header)), *result])
            if ended.outcome not in NEEDS_ATTENTION:
                continue
            if ended.outcome in ("failed", "rejected"):
                seen = written.problems.setdefault((ended.outcome, ended.code), [0, ended.message])
                seen[0] += 1
            why = [ended.outcome, ended.code, ended.message]
            if errors is None:
                if input_file.format == "jsonl":
                    errors = _JsonTable(errors_tmp)
                else:
                    errors = _CsvTable(errors_tmp)
                    errors.add([*(header or ["unenroll_line"]), *ERRORS_COLUMNS])
            if isinstance(errors, _JsonTable):
                errors.add_record(_original(raw, header, input_file.format),
                                  dict(zip(ERRORS_COLUMNS, why, strict=True)))
            else:
                errors.add([*_cells(raw, len(header)), *why])
            written.errors_rows += 1
    finally:
        table.close()
        if errors is not None:
            errors.close()
    results_tmp.replace(results)
    if errors is not None:
        errors_tmp.replace(written.errors)
    else:
        written.errors.unlink(missing_ok=True)
    return written
