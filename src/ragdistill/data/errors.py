"""The one error every data loader raises for bad input files.

A user who brings their own corpus should learn from one line which file, which line and
which field to fix, without reading a traceback through the loader.
"""

from __future__ import annotations

import os


class DataValidationError(ValueError):
    """Raise when a data file is missing, unreadable or breaks the documented format.

    ``str(error)`` reads like ``corpus.jsonl line 12: duplicate passage id 'p3' (first seen on
    line 4)``; the file is shown as the caller gave it.

    Args:
        path: The file at fault.
        message: What is wrong and, where it helps, what was expected.
        line: 1-based line number in ``path``, or ``None`` when the fault is not on one line
            (a missing or empty file, a structural problem in a JSON document).

    Attributes:
        path: The file at fault, as a string.
        line: 1-based line number, or ``None``.
        message: The message without the location prefix.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None) -> None:
        # args mirrors __init__ so the error pickles across worker processes (DDP spawn, joblib).
        super().__init__(os.fspath(path), message, line)
        self.path = os.fspath(path)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path} {position_word(self.path)} {self.line}"
        return f"{where}: {self.message}"


class RowSource(str):
    """The name of a source whose records are numbered rows (a ``datasets`` table), not lines of a file.

    Passed where a loader takes a path, it makes every message say ``row 12`` (``dataset[12]``) instead of
    ``line 12``, so the record checks the file loaders use serve tables too.
    """

    position = "row"


def position_word(path: str | os.PathLike[str]) -> str:
    """How a record of ``path`` is numbered in messages: ``line`` in a file, ``row`` in a :class:`RowSource`."""
    return str(getattr(path, "position", "line"))


def check_unique(item_id: str, kind: str, first_line: dict[str, int], path: str | os.PathLike[str], line: int) -> None:
    """Refuse an id seen before in the source, naming where it was first seen."""
    if item_id in first_line:
        where = f"{position_word(path)} {first_line[item_id]}"
        raise DataValidationError(path, f"duplicate {kind} id {item_id!r} (first seen on {where})", line)
    first_line[item_id] = line


def json_type_name(value: object) -> str:
    """Name a parsed JSON value's type as JSON calls it, since users write JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
