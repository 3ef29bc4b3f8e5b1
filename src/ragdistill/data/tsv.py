"""Read tab- (or whitespace-) separated files line by line, with the JSONL loader's located errors.

BEIR's qrels, DPR's ``psgs_w100.tsv`` and MS MARCO's collection, queries and qrels are all one record
per line with a fixed number of fields. One reader gives them the same faults as ``data=jsonl``
(missing file, bad UTF-8, a byte-order mark after line 1, an empty file) with the same messages, and
names the line of a row with the wrong number of fields or a score that is not an integer, the
mistakes a hand-converted file most often holds.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from ragdistill.data.errors import DataValidationError, position_word
from ragdistill.data.jsonl import PathArg
from ragdistill.data.jsonl import decode as decode_line

Row = list[str]


def iter_rows(
    path: PathArg,
    fields: tuple[str, ...],
    *,
    separator: str | None = "\t",
    is_header: Callable[[Row], bool] | None = None,
) -> Iterator[tuple[int, Row]]:
    """Yield ``(1-based line, fields)`` for each non-blank line, checking the number of fields.

    A generator, so a corpus of millions of lines is never held twice (once as lines, once as passages).

    Args:
        path: The file.
        fields: Names of the expected fields, in order, for the message of a row that lacks some.
        separator: A tab for files whose text holds spaces; ``None`` splits on any whitespace (TREC qrels).
        is_header: Given the first row, whether it is a header line to skip (headers are optional).

    Raises:
        DataValidationError: If the file is missing, unreadable, not UTF-8, holds no data row, or a row
            does not have exactly ``len(fields)`` fields.
    """
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(path, "file not found" if not file.exists() else "not a regular file")
    expected = f"{len(fields)} {'tab-separated' if separator == chr(9) else 'whitespace-separated'} fields"
    rows = 0
    first = True
    try:
        with file.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                text = decode_line(raw, path, line).rstrip("\r\n")
                if not text.strip():
                    continue
                row = text.split(separator)
                if first and is_header is not None and is_header(row):
                    first = False
                    continue
                first = False
                if len(row) != len(fields):
                    raise DataValidationError(path, f"expected {expected} ({', '.join(fields)}), got {len(row)}", line)
                rows += 1
                yield line, row
    except OSError as exc:
        raise DataValidationError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if not rows:
        raise DataValidationError(path, f"file is empty (expected lines of {expected}: {', '.join(fields)})")


def parse_int(value: str, field: str, path: PathArg, line: int) -> int:
    """Parse a field that must be an integer (a relevance grade), naming the line when it is not.

    ``"1.0"`` is refused rather than rounded: a grade written as a float usually means the file
    holds scores, not judgements.
    """
    try:
        return int(value)
    except ValueError:
        raise DataValidationError(path, f"field {field!r} must be an integer, got {value!r}", line) from None


def non_empty(value: str, field: str, path: PathArg, line: int) -> str:
    """Return ``value`` stripped of surrounding spaces; refuse an empty one, naming the field and line."""
    stripped = value.strip()
    if not stripped:
        raise DataValidationError(path, f"field {field!r} is empty", line)
    return stripped


def is_integer(value: str) -> bool:
    """Whether ``value`` reads as an integer (a header line's score column does not)."""
    try:
        int(value)
    except ValueError:
        return False
    return True


Judgements = dict[str, dict[str, int]]
"""``query id -> passage id -> grade``: every row of a qrels file (grades <= 0 included)."""


def add_judgement(
    judgements: Judgements,
    first_line: dict[tuple[str, str], int],
    qid: str,
    pid: str,
    grade: int,
    path: PathArg,
    line: int,
) -> None:
    """Record one qrels line; a (query, passage) pair judged twice fails naming both lines."""
    if (qid, pid) in first_line:
        first = f"{position_word(path)} {first_line[qid, pid]}"
        raise DataValidationError(path, f"query {qid!r} and passage {pid!r} judged twice (first on {first})", line)
    first_line[qid, pid] = line
    judgements.setdefault(qid, {})[pid] = grade


def collect_judgements(
    rows: Iterable[tuple[int, Any, Any, Any]], query_ids: Container[str], corpus_ids: Container[str], where: PathArg
) -> Judgements:
    """Judgements from ``(line or row, query id, passage id, grade)`` rows of any source, every id checked.

    The table loaders (``data=hf``, ``data=ir_datasets``) share it; integer ids are read as strings.

    Raises:
        DataValidationError: A grade that is not an integer, an id the questions or the corpus lack, or a pair
            judged twice, naming ``where`` and the line or row.
    """
    judgements: Judgements = {}
    first: dict[tuple[str, str], int] = {}
    for position, raw_qid, raw_pid, grade in rows:
        qid, pid = str(raw_qid), str(raw_pid)
        if not isinstance(grade, int) or isinstance(grade, bool):
            raise DataValidationError(where, f"field 'score' must be an integer, got {grade!r}", position)
        if qid not in query_ids:
            raise DataValidationError(where, f"query id {qid!r} is not an id of the questions", position)
        if pid not in corpus_ids:
            raise DataValidationError(where, f"corpus id {pid!r} is not an id of the corpus", position)
        add_judgement(judgements, first, qid, pid, grade, where, position)
    return judgements
