"""Excel workbooks are read directly: streamed rows of the first sheet, numbered as Excel
numbers them, under the same per-row rules as CSV; a workbook named .csv is read as one and
the admin is told; a file that only looks like one is refused in admin words."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from openpyxl import Workbook

from unenroll import Item
from unenroll.inputs.files import InputError, InputFile, detect_format
from unenroll.inputs.shapes import Column, RowShape
from unenroll.inputs.sheets import cell_text
from unenroll.model import Unreadable

SHAPE = RowShape(
    "unenroll",
    (Column("course_id"), Column("batch_id"), Column("erecno", aliases=("Employee ID",))),
    lambda v: ((v["course_id"], v["batch_id"]), v["erecno"]),
)


def workbook(path: Path, *rows: tuple[str | float | None, ...], sheets: int = 1) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(number, column, value)
    for n in range(1, sheets):
        book.create_sheet(f"Other {n}")["A1"] = "not read"
    book.save(path)
    return path


def outcomes(values: list[Item | Unreadable]) -> list[tuple[int, str]]:
    return [(v.meta["row"] if v.meta else 0,
             v.subject if isinstance(v, Item) else v.reason) for v in values]


def test_a_workbook_gives_one_value_per_row_numbered_as_excel_numbers_it(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "report.xlsx",
        ("Course ID", "Batch ID", "Employee ID", "Name"),
        (100, 200, 7000000000001, "whole numbers are their digits"),
        (100, 200, 7000000000002.0, "a whole float too"),
        (None, None, None, None),  # an empty row is not a row, but it keeps its number
        ("100", "200", " 7000000000004 ", "text, trimmed"),
        (100, 200, None, "no value"),
        (100, 200, 478346000000248165, "18 digits: Excel rounded it"),
        (100, 200, "x" * 300, "too long for an id"),
        (100, 200, "7.000000000983E+12", "typed as text by a CSV round trip"),
        (100, 200, 7000000000009, "last"),
    )
    source = InputFile(path, SHAPE)
    assert source.format == "xlsx" and source.notices == []
    assert source.column_mapping == {"course_id": "Course ID", "batch_id": "Batch ID", "erecno": "Employee ID"}
    values = list(source.items())
    assert outcomes(values) == [
        (2, "7000000000001"),
        (3, "7000000000002"),
        (5, "7000000000004"),
        (6, "row 6: no value in column 'Employee ID'"),
        (7, "row 7: the value in column 'Employee ID' looks like a number Excel reformatted "
            "(4.78346000000248E+17): format the column as Text in Excel and export again"),
        (8, "row 8: the value in column 'Employee ID' is 300 characters long, more than an id can be (256): "
            "a stray double quote may have joined cells"),
        (9, "row 9: the value in column 'Employee ID' looks like a number Excel reformatted "
            "(7.000000000983E+12): format the column as Text in Excel and export again"),
        (10, "7000000000009"),
    ]
    first = values[0]
    assert isinstance(first, Item) and first.target == ("100", "200")
    assert list(source.items()) == values  # read again for the run, the same


def test_a_workbook_named_csv_is_read_as_a_workbook_and_the_admin_is_told(tmp_path: Path) -> None:
    path = workbook(tmp_path / "export.csv", ("course_id", "batch_id", "erecno"), (1, 2, 3))
    assert detect_format(path) == "xlsx"
    source = InputFile(path, SHAPE, fmt="csv")  # even when told it is CSV: its bytes are not text
    assert source.format == "xlsx"
    assert source.notices == ["export.csv is an Excel workbook (.xlsx), not CSV text, though its name ends in .csv: "
                              "it is read as a workbook (its first sheet)"]
    assert outcomes(list(source.items())) == [(2, "3")]


def test_only_the_first_sheet_is_read_and_the_admin_is_told(tmp_path: Path) -> None:
    path = workbook(tmp_path / "in.xlsx", ("course_id", "batch_id", "erecno"), (1, 2, 3), sheets=2)
    source = InputFile(path, SHAPE)
    assert source.notices == ["in.xlsx has 2 sheets: the first, 'Sheet', is read"]
    assert outcomes(list(source.items())) == [(2, "3")]


def test_a_workbook_without_a_column_names_what_it_found(tmp_path: Path) -> None:
    path = workbook(tmp_path / "in.xlsx", (None,), ("Course ID", "Batch", "erecno"), (1, 2, 3))
    with pytest.raises(InputError) as caught:
        InputFile(path, SHAPE)
    assert "no column 'batch_id'" in str(caught.value) and "'Batch'" in str(caught.value)


def test_an_empty_sheet_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is empty"):
        InputFile(workbook(tmp_path / "in.xlsx"), SHAPE)


def zipped(path: Path, names: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(("name", "make", "words"), [
    ("zipped.csv", lambda p: zipped(p, {"learners.csv": b"course_id,batch_id,erecno\n"}),
     "is a zip archive, not an Excel workbook: extract the file inside it (learners.csv)"),
    ("in.xlsx", lambda p: zipped(p, {"xl/workbook.bin": b""}), "binary Excel workbook (.xlsb)"),
    ("in.xlsx", lambda p: zipped(p, {"xl/workbook.xml": b"<not a workbook"}), "cannot be read as an Excel workbook"),
    ("in.csv", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "damaged or incomplete zip file"),
    ("in.xls", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40), "old-format (.xls)"),
])
def test_a_file_that_only_looks_like_a_workbook_is_refused_in_admin_words(
        tmp_path: Path, name: str, make: Callable[[Path], object], words: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as caught:
        InputFile(path, SHAPE)
    assert words in str(caught.value)
    assert "Traceback" not in str(caught.value) and "Error" not in str(caught.value)


def test_a_text_file_named_xlsx_is_read_as_csv_and_the_admin_is_told(tmp_path: Path) -> None:
    path = tmp_path / "in.xlsx"
    path.write_bytes(b"course_id,batch_id,erecno\n1,2,3\n")
    source = InputFile(path, SHAPE)
    assert source.format == "csv" and "holds text" in source.notices[0]
    assert outcomes(list(source.items())) == [(2, "3")]


def test_the_format_is_known_by_content_then_by_suffix(tmp_path: Path) -> None:
    text = tmp_path / "a.csv"
    text.write_bytes(b"course_id\n")
    lines = tmp_path / "a.jsonl"
    lines.write_bytes(b"{}\n")
    book = workbook(tmp_path / "a.data", ("course_id",))
    assert [detect_format(p) for p in (text, lines, book, tmp_path / "missing.xlsx")] == ["csv", "jsonl", "xlsx",
                                                                                          "xlsx"]


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), (7, "7"), (7000000000983.0, "7000000000983"), (12.5, "12.5"), (True, "TRUE"),
    (10**15 - 1, "999999999999999"), (10**15 + 1, "1E+15"), (478346000000248165.0, "4.78346000000248E+17"),
])
def test_a_cell_is_the_text_an_admin_sees_in_it(value: object, text: str) -> None:
    assert cell_text(value) == text


def test_rows_are_yielded_as_read_and_a_sheet_damaged_part_way_stops_with_an_admin_message(tmp_path: Path) -> None:
    whole = workbook(tmp_path / "whole.xlsx", ("course_id", "batch_id", "erecno"),
                     *[(1, 2, 7000000000000 + n) for n in range(2000)])
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data[: len(data) // 2] if info.filename == "xl/worksheets/sheet1.xml" else data)
    values = InputFile(damaged, SHAPE).items()
    read = []
    with pytest.raises(InputError) as caught:
        for value in values:
            read.append(value)
    assert 100 < len(read) < 2000 and all(isinstance(v, Item) for v in read)
    assert [v.meta["row"] for v in read if v.meta] == list(range(2, len(read) + 2))
    assert f"cannot be read after row {len(read) + 1} (the workbook may be damaged)" in str(caught.value)
