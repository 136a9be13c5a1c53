"""What a row of an input file means for one operation: its columns, and how their values
make an item. A vendor plugin declares one per operation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


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
