"""The errors file: just the input rows that need attention, as the admin gave them, with
why, readable as an input file as it is (fix the rows, run it, done).

A row needs attention when it ended ``rejected``, ``failed``, ``gave_up`` or ``not_sent``.
The file holds the input's header and those rows in input order, every original cell as it
was, then ``unenroll_outcome``, ``unenroll_code``, ``unenroll_message`` (named so they
never clash with a column of the input; a later run reads only the columns it needs).
JSON-lines input gives a JSON-lines errors file (each original object with those three
keys added); CSV and workbooks give CSV. Every CSV cell is spreadsheet-safe.

Memory: one entry per row that needs attention (read from the results file), never one per
input row; the input is streamed once more to copy those rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unenroll.accounts.results import spreadsheet_safe
from unenroll.inputs.files import InputFile

NEEDS_ATTENTION = frozenset({"rejected", "failed", "gave_up", "not_sent"})
EXTRA_COLUMNS = ("unenroll_outcome", "unenroll_code", "unenroll_message")


def errors_path(results: Path, input_format: str) -> Path:
    """``in.results.csv`` -> ``in.results.errors.csv`` (``.jsonl`` for JSON-lines input)."""
    suffix = ".jsonl" if input_format == "jsonl" else ".csv"
    return results.with_name(results.name.rsplit(".", 1)[0] + ".errors" + suffix)


def _records(results: Path) -> Iterator[dict[str, Any]]:
    with results.open(encoding="utf-8", newline="") as f:
        if results.suffix.lower() == ".csv":
            for row in csv.DictReader(f):
                meta = row.get("meta") or ""
                row["meta"] = json.loads(meta) if meta.startswith("{") else {}
                yield row
        else:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def rows_needing_attention(results: Path) -> dict[int, tuple[str, str, str]]:
    """Input row number -> (outcome, code, message), for the rows that need attention."""
    attention: dict[int, tuple[str, str, str]] = {}
    for record in _records(results):
        meta = record.get("meta") or {}
        row = meta.get("row") if isinstance(meta, dict) else None
        outcome = str(record.get("outcome") or "")
        if isinstance(row, int) and outcome in NEEDS_ATTENTION:
            attention[row] = (outcome, str(record.get("code") or ""), str(record.get("message") or ""))
    return attention


def write_errors_file(input_file: InputFile, results: Path) -> tuple[Path, int]:
    """Write the errors file beside ``results`` (an earlier one is replaced, or removed when no
    row needs attention); returns its path and how many rows it holds."""
    path = errors_path(results, input_file.format)
    attention = rows_needing_attention(results)
    if not attention:
        path.unlink(missing_ok=True)
        return path, 0
    written = 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        writer = None if input_file.format == "jsonl" else csv.writer(out)
        if writer is not None:
            writer.writerow([spreadsheet_safe(h) for h in [*input_file.header, *EXTRA_COLUMNS]])
        for number, raw in input_file.raw_rows():
            why = attention.get(number)
            if why is None:
                continue
            written += 1
            if writer is not None:
                cells = raw if isinstance(raw, list) else [raw]
                writer.writerow([spreadsheet_safe(c) for c in [*cells, *why]])
            else:
                try:
                    record = json.loads(raw) if isinstance(raw, str) else None
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    record = {"unenroll_line": raw}
                out.write(json.dumps({**record, **dict(zip(EXTRA_COLUMNS, why, strict=True))},
                                     ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path, written
