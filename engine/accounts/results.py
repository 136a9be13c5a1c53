"""Results as outcomes happen (the library's sink), and what makes a cell spreadsheet-safe.

The command line writes its results file in input order at the end instead, from the
journal (``row_files.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from unenroll.model import ItemOutcome

CSV_COLUMNS = ("index", "operation", "target", "subject", "outcome", "code", "message", "attempts", "meta")
RESULTS_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}
# a cell starting with one of these is a formula to a spreadsheet (CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """``value`` as a CSV cell no spreadsheet executes: text that starts like a formula gets a
    leading ``'`` (shown as text by Excel, LibreOffice and Sheets); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def results_format(path: Path, fmt: str | None = None, formats: tuple[str, ...] = ("csv", "jsonl", "xlsx")) -> str:
    """One of ``formats``: ``fmt`` if given, else from the suffix; ``ValueError`` naming the
    formats for anything else (no name may quietly get another format)."""
    chosen = fmt or RESULTS_SUFFIXES.get(path.suffix.lower())
    if chosen not in formats:
        listed = ", ".join(f".{f}" for f in formats[:-1]) + f" or .{formats[-1]}"
        raise ValueError(f"results file {path.name}: the results are written as {listed} "
                         f"(not {fmt or path.suffix or 'a name without a suffix'})")
    return chosen


class ResultsWriter:
    """Writes each :class:`ItemOutcome` to a JSONL or CSV file (by suffix or ``fmt``).

    Every CSV cell is :func:`spreadsheet_safe`. Use as a context manager; pass the instance
    as a sink to the job. Lines are flushed in the file's own buffer; closing flushes the rest.
    """

    def __init__(self, path: str | Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        self.fmt = results_format(self.path, fmt, formats=("csv", "jsonl"))
        self._file: IO[str] | None = None
        self._csv: Any = None
        self.written = 0

    def __enter__(self) -> ResultsWriter:
        self._file = self.path.open("w", encoding="utf-8", newline="")
        if self.fmt == "csv":
            self._csv = csv.writer(self._file)
            self._csv.writerow(CSV_COLUMNS)
        return self

    def __call__(self, outcome: ItemOutcome) -> None:
        assert self._file is not None, "use ResultsWriter as a context manager"
        record = outcome.as_record()
        if self._csv is not None:
            meta = record["meta"]
            record["meta"] = json.dumps(meta, ensure_ascii=False) if meta else ""
            self._csv.writerow(["" if record[c] is None else spreadsheet_safe(record[c]) for c in CSV_COLUMNS])
        else:
            self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.written += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
