"""The results and errors files: input order, the admin's own cells first, every row once
(rows the job never read included), names that never clash, cells no spreadsheet runs; and
the journal that feeds them, streamed in row order (an older journal gains the column)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from openpyxl import load_workbook

from unenroll.accounts.journal import Journal, RowOutcome
from unenroll.accounts.row_files import ERRORS_COLUMNS, errors_path, result_columns, write_row_files
from unenroll.inputs.files import InputFile
from unenroll.inputs.shapes import Column, RowShape
from unenroll.model import Item, ItemOutcome, Outcome

SHAPE = RowShape("unenroll", (Column("course_id"), Column("user_id")), lambda v: ((v["course_id"],), v["user_id"]))


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def outcome(row: int, result: str, code: str = "", message: str = "", attempts: int = 1) -> RowOutcome:
    return RowOutcome(row, result, code, message, attempts)


def test_results_follow_the_input_order_with_every_cell_first_and_rows_never_read_are_not_sent(
        tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("Name,course_id,user_id\nAnn,c1,1\n\nBob,c1,2\n=evil(),c1,3\nDan,c2,4\n", encoding="utf-8")
    recorded = [outcome(2, "unenrolled", "200"), outcome(4, "failed", "404", "no such course"),
                outcome(5, "rejected", "invalid", "'3' is not an id", 0)]  # row 6 was never read
    files = write_row_files(InputFile(source, SHAPE), recorded, tmp_path / "in.results.csv")
    rows = csv_rows(tmp_path / "in.results.csv")
    assert rows[0] == ["Name", "course_id", "user_id", "outcome", "code", "message", "attempts", "row"]
    assert [r[0] for r in rows[1:]] == ["Ann", "Bob", "'=evil()", "Dan"]  # input order; a formula is text
    assert [(r[3], r[7]) for r in rows[1:]] == [("unenrolled", "2"), ("failed", "4"), ("rejected", "5"),
                                                ("not_sent", "6")]
    assert "--resume" in rows[4][5]
    assert files.counts == {"unenrolled": 1, "failed": 1, "rejected": 1, "not_sent": 1}
    assert files.problems == {("failed", "404"): [1, "no such course"],
                              ("rejected", "invalid"): [1, "'3' is not an id"]}
    errors = csv_rows(errors_path(tmp_path / "in.results.csv", "csv"))
    assert errors[0] == ["Name", "course_id", "user_id", *ERRORS_COLUMNS]
    assert [r[0] for r in errors[1:]] == ["Bob", "'=evil()", "Dan"] and files.errors_rows == 3


def test_an_outcome_whose_row_cannot_be_shown_is_still_written_once(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("course_id,user_id\nc1,1\nc1,2\n", encoding="utf-8")
    recorded = [outcome(2, "unenrolled"), outcome(3, "unenrolled"), RowOutcome(None, "unenrolled", "", "", 1)]
    files = write_row_files(InputFile(source, SHAPE), recorded, tmp_path / "out.csv")
    rows = csv_rows(tmp_path / "out.csv")
    assert [r[-1] for r in rows[1:]] == ["2", "3", ""] and files.counts == {"unenrolled": 3}
    assert not errors_path(tmp_path / "out.csv", "csv").exists()  # nothing needs attention: no errors file


def test_the_result_columns_never_clash_with_the_inputs_own(tmp_path: Path) -> None:
    assert result_columns(["course_id", "user_id"]) == ("outcome", "code", "message", "attempts", "row")
    assert result_columns(["course_id", "Outcome"])[0] == "unenroll_outcome"
    source = tmp_path / "in.csv"
    source.write_text("course_id,user_id,outcome,row\nc1,1,unenrolled,7\n", encoding="utf-8")
    write_row_files(InputFile(source, SHAPE), [outcome(2, "not_enrolled")], tmp_path / "again.csv")
    header, row = csv_rows(tmp_path / "again.csv")
    assert header[4:] == ["unenroll_outcome", "unenroll_code", "unenroll_message", "unenroll_attempts", "unenroll_row"]
    assert row == ["c1", "1", "unenrolled", "7", "not_enrolled", "", "", "1", "2"]


def test_json_lines_keep_each_object_and_add_the_outcome(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"course_id": "c1", "user_id": 1, "note": "x"}) + "\n{oops\n", encoding="utf-8")
    files = write_row_files(InputFile(source, SHAPE), [outcome(1, "unenrolled"),
                                                       outcome(2, "rejected", "invalid", "not a JSON object", 0)],
                            tmp_path / "in.results.jsonl")
    first, second = [json.loads(line) for line in (tmp_path / "in.results.jsonl").read_text().splitlines()]
    assert first == {"course_id": "c1", "user_id": 1, "note": "x", "outcome": "unenrolled", "code": "",
                     "message": "", "attempts": 1, "row": 1}
    assert second["unenroll_line"] == "{oops" and second["outcome"] == "rejected"
    assert files.errors.suffix == ".jsonl"
    (error,) = [json.loads(line) for line in files.errors.read_text().splitlines()]
    assert error == {"unenroll_line": "{oops", "unenroll_outcome": "rejected", "unenroll_code": "invalid",
                     "unenroll_message": "not a JSON object"}


def test_a_workbook_of_results_holds_text_where_a_formula_would_run(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("Name,course_id,user_id\n@SUM(A1),c1,1\nAnn\x07,c1,2\n", encoding="utf-8")
    write_row_files(InputFile(source, SHAPE), [outcome(2, "unenrolled"), outcome(3, "unenrolled")],
                    tmp_path / "out.xlsx")
    sheet = load_workbook(tmp_path / "out.xlsx", read_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert [r[0] for r in rows] == ["Name", "'@SUM(A1)", "Ann"]  # text; a control character XML forbids dropped
    assert [r[-1] for r in rows[1:]] == [2, 3]


def test_the_journal_streams_outcomes_by_row_whatever_order_they_ended_in(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j", "job")
    with journal:
        for index in (3, 0, 2, 1):  # completion order
            item = Item("unenroll", ("c",), str(index), {"row": 10 + index})
            journal(ItemOutcome(index, item, Outcome.UNENROLLED, "200", None, 1))
        journal(ItemOutcome(4, Item("unenroll", ("c",), "4"), Outcome.FAILED, "404", "gone", 2))  # no row known
        got = list(journal.outcomes_by_row())
    assert [r.row for r in got] == [10, 11, 12, 13, None]
    assert got[-1] == RowOutcome(None, "failed", "404", "gone", 2)


def test_a_journal_begun_before_rows_were_kept_gains_the_column_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE items (idx INTEGER PRIMARY KEY, sending INTEGER NOT NULL DEFAULT 0, outcome TEXT, code TEXT,"
        " message TEXT, attempts INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO meta VALUES ('schema', '1'), ('fingerprint', 'job');"
        "INSERT INTO items VALUES (0, 1, 'unenrolled', '200', NULL, 1);")
    conn.commit()
    conn.close()
    with Journal.open(path, "job", resume=True) as journal:
        journal(ItemOutcome(1, Item("unenroll", ("c",), "1", {"row": 3}), Outcome.NOT_ENROLLED, None, None, 1))
        got = list(journal.outcomes_by_row())
    assert [(r.row, r.outcome) for r in got] == [(3, "not_enrolled"), (None, "unenrolled")]


@pytest.mark.parametrize("name", ["out.txt", "out", "out.xls"])
def test_a_results_name_of_another_format_is_refused_naming_the_formats(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in.csv"
    source.write_text("course_id,user_id\nc1,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\.csv, \.jsonl or \.xlsx"):
        write_row_files(InputFile(source, SHAPE), [], tmp_path / name)


def test_an_input_changed_since_the_run_read_it_keeps_every_outcome_without_its_cells(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("Name,course_id,user_id\nAnn,c1,1\nBob,c1,2\n", encoding="utf-8")
    checked = InputFile(source, SHAPE)
    source.write_text("Name,course_id,user_id\nZed,c9,9\n", encoding="utf-8")  # edited during the run
    files = write_row_files(checked, [outcome(2, "unenrolled"), outcome(3, "failed", "404", "gone")],
                            tmp_path / "out.csv")
    rows = csv_rows(tmp_path / "out.csv")
    assert [r[3:] for r in rows[1:]] == [["unenrolled", "", "", "1", "2"], ["failed", "404", "gone", "1", "3"]]
    assert [r[:3] for r in rows[1:]] == [["", "", ""], ["", "", ""]]  # never another file's cells
    assert files.notes and "changed since it was checked" in files.notes[0]
