"""The one error an input file raises: it cannot be used as asked (no such column, empty,
not text an editor or Excel would call a table). Its message is for the admin."""

from __future__ import annotations


class InputError(Exception):
    """The input file cannot be used as asked (no such column, empty, not UTF-8 text)."""
