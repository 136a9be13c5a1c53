"""Excel workbooks (``.xlsx``) read as rows of text, streamed, numbered as Excel numbers them.

Invariants:

- :meth:`Workbook.rows` yields every row of the first worksheet, in order, with its 1-based
  row number (empty rows too, as ``[]``: the caller skips them as it skips blank CSV lines);
  rows are parsed as they are read (openpyxl's read-only mode), so memory does not grow
  with the number of rows;
- a cell becomes the text Excel shows for it in a Text column: a whole number its digits
  (``7000000000983.0`` -> ``"7000000000983"``), except a number too long for Excel to hold
  exactly (more than 15 digits), which becomes its scientific form so that
  :func:`excel_reformatted` rejects it instead of sending the digits Excel rounded;
- a file that is not a workbook, or a damaged one, raises :class:`InputError` in admin words.
"""

from __future__ import annotations

import datetime
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook as Book

from unenroll.inputs.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"  # every .xlsx is a zip archive
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and any password-protected Excel file
EXACT_DIGITS = 15  # Excel keeps 15 significant digits; a longer number was rounded when typed or imported
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
_WHOLE_FLOAT = re.compile(r"[+-]?\d+[.,]0+")


def excel_reformatted(value: str) -> bool:
    """``value`` looks like an id Excel turned into a number: ``7.000000000983E+12``, ``7000000000983.0``
    (or with a decimal comma). Its digits cannot be trusted: no vendor's id is written so."""
    return bool(_SCIENTIFIC.fullmatch(value) or _WHOLE_FLOAT.fullmatch(value))


def cell_text(value: object) -> str:
    """A cell's value as the text an admin sees in it (see the module's invariant)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value) if len(str(abs(value))) <= EXACT_DIGITS else _scientific(float(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 10**EXACT_DIGITS:
            return str(int(value))
        return _scientific(value) if value.is_integer() else repr(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _scientific(value: float) -> str:
    """``7000000000983.0`` -> ``"7.000000000983E+12"``, as Excel's General format shows a long number."""
    mantissa, exponent = f"{value:.{EXACT_DIGITS - 1}E}".split("E")
    return f"{mantissa.rstrip('0').rstrip('.')}E{exponent}"


class Workbook:
    """An ``.xlsx`` file whose first worksheet is read as a table. Opening checks that it is
    a workbook and notes its sheets; :meth:`rows` streams the first one (as often as asked)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise InputError(f"{path} is a damaged or incomplete zip file (an Excel workbook is one): open it in "
                             "Excel and save it again as .xlsx or as CSV UTF-8") from None
        if "xl/workbook.bin" in names or "mimetype" in names:
            kind = "a binary Excel workbook (.xlsb)" if "mimetype" not in names else "an OpenDocument spreadsheet"
            raise InputError(f"{path} is {kind}: save it in Excel as .xlsx (Excel Workbook) or as CSV UTF-8")
        if "xl/workbook.xml" not in names:
            inside = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            raise InputError(f"{path} is a zip archive, not an Excel workbook: extract the file inside it "
                             f"({inside or 'it is empty'}) and use that")
        with self._open() as book:
            sheets = book.worksheets
            if not sheets:
                raise InputError(f"{path} is an Excel workbook without a worksheet")
            self.sheet_title: str = sheets[0].title
            self.sheet_count = len(sheets)

    @contextmanager
    def _open(self) -> Iterator[Book]:
        """The workbook, read-only, closed on exit. It is given as an open file, not a name:
        openpyxl refuses a name not ending in .xlsx, and a workbook named .csv is still one."""
        from openpyxl import load_workbook  # imported here: only an .xlsx input pays for it

        with self.path.open("rb") as file:
            try:
                with warnings.catch_warnings():  # openpyxl warns of styles and extensions it skips: not the admin's
                    warnings.simplefilter("ignore")
                    book = load_workbook(file, read_only=True, data_only=True, keep_links=False)
            except Exception:  # openpyxl's many ways of failing on a damaged workbook: one admin message
                raise InputError(f"{self.path} cannot be read as an Excel workbook (it may be damaged): open it in "
                                 "Excel and save it again as .xlsx or as CSV UTF-8") from None
            try:
                yield book
            finally:
                book.close()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Every row of the first worksheet as ``(row number, cell texts)``, in order."""
        with self._open() as book:
            sheet = book.worksheets[0]
            sheet.reset_dimensions()  # a wrong stored size must not hide rows: read to the last one there is
            values = sheet.iter_rows(values_only=True)
            number = 0
            while True:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        row = next(values, None)
                except Exception:  # a damaged sheet part way through: name where, in admin words
                    raise InputError(f"{self.path}: the sheet {self.sheet_title!r} cannot be read after row "
                                     f"{number} (the workbook may be damaged): open it in Excel and save it "
                                     "again") from None
                if row is None:
                    return
                number += 1
                yield number, [cell_text(v) for v in row]

