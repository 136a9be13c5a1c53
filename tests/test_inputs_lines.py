"""Input files are read line by line: every physical line is accounted for, whatever its
line ending (LF, CRLF, a lone CR, mixed), and a stray double quote costs its own row only."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from unenroll import Item
from unenroll.inputs.files import InputError, InputFile, _physical_lines
from unenroll.inputs.shapes import Column, RowShape
from unenroll.model import Unreadable

SHAPE = RowShape(
    "unenroll",
    (Column("course_id"), Column("batch_id"), Column("erecno")),
    lambda v: ((v["course_id"], v["batch_id"]), v["erecno"]),
)
HEADER = "course_id,batch_id,erecno,name"


def read(path: Path, **kw: int) -> list[Item | Unreadable]:
    return list(InputFile(path, SHAPE, **kw).items())  # type: ignore[arg-type]


def rows(n: int) -> list[str]:
    return [f"1,2,{7_000_000_000_000 + i},Learner {i}" for i in range(n)]


def csv_file(tmp_path: Path, lines: list[str], ending: str = "\n") -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes(ending.join([HEADER, *lines]).encode() + ending.encode())
    return path


def test_an_unclosed_quote_on_row_11_of_50000_costs_that_row_only(tmp_path: Path) -> None:
    lines = rows(50_000)
    lines[10] = '1,2,"7000000000010,Learner 10'  # data row 11 is line 12 of the file
    values = read(csv_file(tmp_path, lines))
    assert len(values) == 50_000
    rejected = [v for v in values if isinstance(v, Unreadable)]
    assert len(rejected) == 1
    assert rejected[0].meta == {"row": 12}
    assert rejected[0].reason.startswith("row 12: a double quote opens a cell that is never closed on this line")
    items = [v for v in values if isinstance(v, Item)]
    assert [v.subject for v in items] == [str(7_000_000_000_000 + i) for i in range(50_000) if i != 10]
    assert [v.meta["row"] for v in items if v.meta] == [n for n in range(2, 50_002) if n != 12]


def test_a_stray_quote_closed_later_on_the_line_cannot_make_an_id_of_joined_cells(tmp_path: Path) -> None:
    lines = ['1,2,"7000000000001,' + "Ann " * 100 + '",x', *rows(2)]
    values = read(csv_file(tmp_path, lines))
    assert [type(v).__name__ for v in values] == ["Unreadable", "Item", "Item"]
    bad = values[0]
    assert isinstance(bad, Unreadable) and bad.reason.startswith(
        "row 2: the value in column 'erecno' is 413 characters long, more than an id can be (256)")


def test_an_id_longer_than_the_limit_is_rejected_in_jsonl_too(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"course_id": "1", "batch_id": "2", "erecno": "9" * 300}) + "\n")
    (value,) = read(path)
    assert isinstance(value, Unreadable) and "300 characters long" in value.reason


def test_a_quoted_cell_holding_a_comma_or_a_quote_still_parses(tmp_path: Path) -> None:
    values = read(csv_file(tmp_path, ['"1","2","7000000000001","Smith, ""Ann"""', '1,2,"7000000000002",x']))
    assert [(v.target, v.subject) for v in values if isinstance(v, Item)] == [
        (("1", "2"), "7000000000001"), (("1", "2"), "7000000000002")]


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_a_1000_row_csv_reads_as_1000_items_whatever_its_line_ending(tmp_path: Path, ending: str) -> None:
    values = read(csv_file(tmp_path, rows(1000), ending))
    assert all(isinstance(v, Item) for v in values)
    assert [v.meta["row"] for v in values if v.meta] == list(range(2, 1002))


@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_a_1000_line_jsonl_reads_as_1000_items_whatever_its_line_ending(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "in.jsonl"
    records = [json.dumps({"course_id": "1", "batch_id": "2", "erecno": str(7_000_000_000_000 + i)})
               for i in range(1000)]
    path.write_text(ending.join(records) + ending, newline="")
    values = read(path)
    assert all(isinstance(v, Item) for v in values)
    assert [v.meta["row"] for v in values if v.meta] == list(range(1, 1001))


def test_mixed_line_endings_are_lines_as_an_editor_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\r1,2,11,a\r\n1,2,12,b\n\r1,2,13,c\r\r\n1,2,14,d")
    values = read(path)
    assert [(v.meta["row"] if v.meta else None, v.subject) for v in values if isinstance(v, Item)] == [
        (2, "11"), (3, "12"), (5, "13"), (7, "14")]
    assert len(values) == 4  # lines 4 and 6 are blank: not rows


def test_a_cr_only_header_with_an_unclosed_quote_is_an_error_an_admin_can_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b'course_id,"batch_id,erecno\r1,2,3\r')
    with pytest.raises(InputError) as caught:
        InputFile(path, SHAPE)
    message = str(caught.value)
    assert "header row (line 1)" in message and "never closed" in message
    assert "newline" not in message and "Error" not in message


def test_lines_split_on_every_ending_even_across_reads_and_stay_bounded() -> None:
    data = b"a\r\nbb\rccc\n\r\n" + b"x" * 50 + b"\rlast"
    for block in (1, 2, 3, 7, 64):
        got = [(n, t, o) for n, t, o in _physical_lines(io.BytesIO(data), cap=10, block=block)]
        assert got == [(1, "a", False), (2, "bb", False), (3, "ccc", False), (4, "", False),
                       (5, "", True), (6, "last", False)], block


def test_a_file_changed_while_it_is_read_is_refused(tmp_path: Path) -> None:
    path = csv_file(tmp_path, rows(10), "\r")
    source = InputFile(path, SHAPE)
    values = source.items()
    next(values)
    path.write_bytes(path.read_bytes() + b"1,2,3\r")
    os.utime(path, ns=(1, 1))
    with pytest.raises(InputError, match="changed while it was being read"):
        list(values)


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def test_lines_are_streamed_a_block_at_a_time_not_read_whole() -> None:
    source = CountingReader(b"first\n" + b"1,2,3\r" * 200_000)
    lines = _physical_lines(source, cap=1000, block=4096)
    assert next(lines) == (1, "first", False)
    assert source.taken == 4096
    assert sum(1 for _ in lines) == 200_000
