"""Input files: every row yields exactly one Item or one Unreadable naming the row and why;
problems with the whole file are an InputError before any item."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from unenroll import Item
from unenroll.inputs.files import InputError, InputFile, parse_column_mapping
from unenroll.inputs.shapes import Column, RowShape
from unenroll.model import Unreadable

SHAPE = RowShape(
    "unenroll",
    (Column("course_id"), Column("batch_id"), Column("erecno", aliases=("erecNo",))),
    lambda v: ((v["course_id"], v["batch_id"]), v["erecno"]),
)


def read(path: Path, mapping: Mapping[str, str] | None = None, **kw: int) -> list[Item | Unreadable]:
    return list(InputFile(path, SHAPE, mapping, **kw).items())  # type: ignore[arg-type]


def rows_of(values: list[Item | Unreadable]) -> list[int]:
    return [v.meta["row"] for v in values if v.meta is not None]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_messy_csv_gives_one_value_per_row_in_order_with_its_line_number(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfcourse_id, batch_id ,erecno,name\r\n"  # BOM, CRLF, spaces around a header name
        b"1,2,11,Ann\r\n"
        b"1,2,,Nobody\r\n"  # no value
        b"1,2,  ,Blank\r\n"  # only spaces
        b"1,2,1\xe92,Jose\r\n"  # Latin-1 byte in the id
        b"\r\n"  # a blank line is not a row
        b'"1","2","13","Quoted, with a comma"\r\n'
        b"1,2,14," + b"x" * 70_000 + b"\r\n"  # longer than the cap
        b"1,2\r\n"  # short row
        b'1,2,15,"two\nlines"\r\n'  # a cell with a line break: each line is a row of its own
        b"1,2,16,Last"  # no newline at the end
    )
    values = read(write(tmp_path, "in.csv", data))
    assert rows_of(values) == [2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    kinds = [(type(v).__name__, v.subject if isinstance(v, Item) else v.reason) for v in values]
    assert kinds == [
        ("Item", "11"),
        ("Unreadable", "row 3: no value in column 'erecno'"),
        ("Unreadable", "row 4: no value in column 'erecno'"),
        ("Unreadable", "row 5: not UTF-8 text (byte 0xe9 in column 'erecno'): save the file as UTF-8"),
        ("Item", "13"),
        ("Unreadable", "row 8: the line is longer than 65536 bytes"),
        ("Unreadable", "row 9: no value in column 'erecno'"),
        ("Unreadable", "row 10: a double quote opens a cell that is never closed on this line (a stray quote, or a "
                       "cell with a line break in it): the row is not read, and the next line is read as the next row"),
        ("Unreadable", "row 11: no value in column 'batch_id'"),
        ("Item", "16"),
    ]
    first = values[0]
    assert isinstance(first, Item) and first.target == ("1", "2") and first.operation == "unenroll"
    latin = values[3]
    assert isinstance(latin, Unreadable) and isinstance(latin.text, str)
    assert "1\\xe92" in latin.text  # shown, never a lone surrogate
    latin.text.encode("utf-8")


def test_a_bad_byte_in_an_id_column_is_named(tmp_path: Path) -> None:
    values = read(write(tmp_path, "in.csv", b"course_id,batch_id,erecno\n1,2,7\xff\n"))
    assert isinstance(values[0], Unreadable)
    assert values[0].reason == "row 2: not UTF-8 text (byte 0xff in column 'erecno'): save the file as UTF-8"


def test_memory_stays_bounded_by_the_line_cap_and_the_next_row_is_read(tmp_path: Path) -> None:
    data = b"course_id,batch_id,erecno\n" + b"9" * 5000 + b"\n1,2,3\n"
    values = read(write(tmp_path, "in.csv", data), max_line_bytes=1000)
    assert [type(v).__name__ for v in values] == ["Unreadable", "Item"]
    assert rows_of(values) == [2, 3]


def test_a_missing_column_is_an_error_naming_it_and_the_headers_found(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        InputFile(write(tmp_path, "in.csv", b"course_id,batch,erecno\n1,2,3\n"), SHAPE)
    message = str(caught.value)
    assert "no column 'batch_id'" in message and "'batch'" in message and "--column" in message


def test_columns_are_found_by_mapping_alias_or_case(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"Course_ID,Batch,ErecNo\n1,2,3\n")
    values = read(path, {"batch_id": "Batch"})
    assert isinstance(values[0], Item) and values[0].target == ("1", "2") and values[0].subject == "3"
    assert InputFile(path, SHAPE, {"batch_id": "Batch"}).columns == {
        "course_id": "Course_ID", "batch_id": "Batch", "erecno": "ErecNo"}


def test_a_header_naming_a_column_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="twice"):
        InputFile(write(tmp_path, "in.csv", b"course_id,batch_id,erecno,erecno\n"), SHAPE)


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"\xff\xfec\x00o\x00", "UTF-16"),
    (b"course_id,batch_id,erecno\xe9\n", "not UTF-8"),
    (b"x" * 70_000 + b"\n", "longer than"),
])
def test_a_file_that_cannot_be_read_at_all_is_an_error(tmp_path: Path, data: bytes, words: str) -> None:
    with pytest.raises(InputError, match=words):
        InputFile(write(tmp_path, "in.csv", data), SHAPE)


def test_a_header_only_file_has_no_items(tmp_path: Path) -> None:
    assert read(write(tmp_path, "in.csv", b"course_id,batch_id,erecno\n")) == []


def test_a_file_that_changes_between_passes_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"course_id,batch_id,erecno\n1,2,3\n")
    source = InputFile(path, SHAPE)
    assert len(list(source.items())) == 1
    path.write_bytes(b"course_id,batch_id,erecno\n1,2,3\n1,2,4\n")
    os.utime(path, ns=(1, 1))
    with pytest.raises(InputError, match="changed"):
        list(source.items())


def test_jsonl_gives_one_value_per_non_blank_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"course_id": "1", "batch_id": 2, "employee": 7000000000001}),
        "",
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps({"course_id": "1", "batch_id": "2"}),
        json.dumps({"course_id": "1", "batch_id": "2", "employee": 1.5}),
        json.dumps({"course_id": "1", "batch_id": "2", "employee": "\udce9"}),
        json.dumps({"course_id": "1", "batch_id": "2", "employee": True}),
        json.dumps({"course_id": "1", "batch_id": "2", "employee": "x" * 70_000}),
        json.dumps({"course_id": "1", "batch_id": "2", "employee": "5"}),
    ]
    path = write(tmp_path, "in.jsonl", b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n" + b'{"x": "\xe9"}\n')
    values = read(path, {"erecno": "employee"})
    assert rows_of(values) == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    reasons = [v.reason if isinstance(v, Unreadable) else f"item {v.target} {v.subject}" for v in values]
    assert reasons[0] == "item ('1', '2') 7000000000001"
    assert reasons[1].startswith("row 3: not a JSON object (")
    assert reasons[2] == "row 4: not a JSON object (a list)"
    assert reasons[3] == "row 5: no value for 'employee'"
    assert reasons[4] == "row 6: 'employee' must be a string or an integer, not float"
    assert reasons[5] == "row 7: 'employee' holds a character that is not valid text (a lone surrogate)"
    assert reasons[6] == "row 8: 'employee' must be a string or an integer, not bool"
    assert reasons[7] == "row 9: the line is longer than 65536 bytes"
    assert reasons[8] == "item ('1', '2') 5"
    assert reasons[9] == "row 11: not UTF-8 text (byte 0xe9): save the file as UTF-8"


def test_column_mappings_are_checked() -> None:
    assert parse_column_mapping(["erecno=Employee ID"], SHAPE) == {"erecno": "Employee ID"}
    with pytest.raises(InputError, match="NAME=HEADER"):
        parse_column_mapping(["erecno"], SHAPE)
    with pytest.raises(InputError, match="not a column"):
        parse_column_mapping(["learner=Employee"], SHAPE)


def test_a_stray_byte_in_a_column_the_run_does_not_read_costs_nothing_and_ids_are_trimmed(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"course_id,batch_id,erecno,name\r\n1,2, 12 ,Jos\xe9\r\n")
    (item,) = read(source)
    assert isinstance(item, Item) and item.subject == "12" and item.target == ("1", "2")


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolons"), ("\t", "tabs"), ("|", "'|'")])
def test_a_european_excel_export_is_read_by_the_delimiter_of_its_header(
        tmp_path: Path, delimiter: str, name: str) -> None:
    rows = ["course_id", "batch_id", "erecno", "name"], ["1", "2", "3", "Doe, Jane"], ["1", "2", "4", "Roe"]
    path = write(tmp_path, "in.csv", "\r\n".join(delimiter.join(r) for r in rows).encode())
    source = InputFile(path, SHAPE)
    assert source.delimiter == delimiter
    assert source.notices == [f"in.csv is read with {name} between cells, as its header row is "
                              "(--delimiter chooses another)"]
    assert [(v.target, v.subject) for v in source.items() if isinstance(v, Item)] == [(("1", "2"), "3"),
                                                                                      (("1", "2"), "4")]


def test_a_one_column_header_is_read_with_commas(tmp_path: Path) -> None:
    shape = RowShape("unenroll", (Column("enrollment_id"),), lambda v: ((), v["enrollment_id"]))
    source = InputFile(write(tmp_path, "in.csv", b"enrollment_id\n101\n102;x\n"), shape)
    assert source.delimiter == "," and source.notices == []
    assert [v.subject for v in source.items() if isinstance(v, Item)] == ["101", "102;x"]


def test_a_delimiter_given_overrides_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"course_id,batch_id,erecno,a|b|c|d|e\n1,2,3,x|y\n")  # more cells split by '|'
    with pytest.raises(InputError, match="no column"):
        InputFile(path, SHAPE)
    source = InputFile(path, SHAPE, delimiter="comma")
    assert source.notices == []
    (item,) = list(source.items())
    assert isinstance(item, Item) and item.subject == "3"
    with pytest.raises(InputError, match="one character"):
        InputFile(path, SHAPE, delimiter=";;")


def test_report_headers_match_ignoring_case_spaces_and_underscores(tmp_path: Path) -> None:
    source = InputFile(write(tmp_path, "in.csv", b"Name,Course ID,BATCH-ID,Erec No\nAnn,1,2,3\n"), SHAPE)
    assert source.column_mapping == {"course_id": "Course ID", "batch_id": "BATCH-ID", "erecno": "Erec No"}
    (item,) = list(source.items())
    assert isinstance(item, Item) and item.target == ("1", "2") and item.subject == "3"


def test_an_exact_name_wins_over_a_loose_one_and_two_loose_ones_are_an_error(tmp_path: Path) -> None:
    exact = InputFile(write(tmp_path, "a.csv", b"Course ID,course_id,batch_id,erecno\n"), SHAPE)
    assert exact.column_mapping["course_id"] == "course_id"
    with pytest.raises(InputError, match="'Course ID' and 'COURSE ID': which one is 'course_id'"):
        InputFile(write(tmp_path, "b.csv", b"Course ID,COURSE ID,batch_id,erecno\n"), SHAPE)


def test_the_vendors_report_headers_map_without_flags(tmp_path: Path) -> None:
    from unenroll.adapters.docebo import plugin as docebo
    from unenroll.adapters.smarteru import plugin as smarteru
    from unenroll.adapters.zoho import plugin as zoho

    cases = [
        (zoho.operations["unenroll"].shape, b"Course ID,Batch ID,Employee ID\n1,2,3\n",
         {"course_id": "Course ID", "batch_id": "Batch ID", "erecno": "Employee ID"}),
        (zoho.operations["remove_learner"].shape, b"Course ID,Batch ID,Learner ID\n1,2,3\n",
         {"course_id": "Course ID", "batch_id": "Batch ID", "learner_id": "Learner ID"}),
        (docebo.operations["unenroll"].shape, b"Username,User ID,Course ID\nann,3,1\n",
         {"course_id": "Course ID", "user_id": "User ID"}),
        (docebo.operations["unenroll"].shape, b"User Unique ID,Course Unique ID\n3,1\n",
         {"course_id": "Course Unique ID", "user_id": "User Unique ID"}),
        (docebo.operations["unenroll_learningplan"].shape, b"User ID;Learning Plan ID\n3;1\n",
         {"learningplan_id": "Learning Plan ID", "user_id": "User ID"}),
        (smarteru.operations["unenroll"].shape, b"Enrollment ID\n3\n", {"enrollment_id": "Enrollment ID"}),
    ]
    for shape, data, mapping in cases:
        source = InputFile(write(tmp_path, "in.csv", data), shape)
        assert source.column_mapping == mapping
        assert all(isinstance(v, Item) for v in source.items())


@pytest.mark.parametrize("value", ["7.000000000983E+12", "7.00E+12", "7e12", "7000000000983.0", "7000000000983,00"])
def test_an_id_excel_turned_into_a_number_is_rejected_with_a_hint(tmp_path: Path, value: str) -> None:
    (row,) = read(write(tmp_path, "in.csv", f"course_id;batch_id;erecno\n1;2;{value}\n".encode()))
    assert isinstance(row, Unreadable)
    assert row.reason == (f"row 2: the value in column 'erecno' looks like a number Excel reformatted ({value}): "
                          "format the column as Text in Excel and export again")


def test_an_id_excel_turned_into_a_number_is_rejected_in_jsonl_too(tmp_path: Path) -> None:
    (row,) = read(write(tmp_path, "in.jsonl", b'{"course_id": "1", "batch_id": "7.0E+3", "erecno": "3"}\n'))
    assert isinstance(row, Unreadable) and "looks like a number Excel reformatted (7.0E+3)" in row.reason
