"""Load a user's own corpus and questions from JSON Lines files (the format of docs/data_format.md).

Corpus line: ``{"id": str, "text": str, "title": str (optional)}``.
Question line: ``{"id": str, "question": str, "answers": [str] (optional), "gold_ids": [str] (optional)}``;
for dialogue data ``"turns": [str]`` (the context, oldest first) instead of ``"question"``, the responses
being the corpus.

Every fault in the files raises :class:`DataValidationError` naming the file, the line and,
where it applies, the field and the expected type, because a user's first run with their own
data should fail on the first bad line with a message they can act on, not deep in training.
Unknown fields are ignored so files can carry the user's own metadata.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any

from ragdistill.data.errors import DataValidationError, check_unique, json_type_name
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

PathArg = str | os.PathLike[str]

Record = dict[str, Any]


def load_jsonl_data(
    corpus_path: PathArg,
    train_path: PathArg | None,
    eval_path: PathArg,
    name: str = "jsonl",
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load a corpus and its train and eval questions from JSONL files, validating every line.

    Args:
        corpus_path: Corpus file, one passage per line.
        train_path: Training questions, or ``None`` for evaluation-only data (empty train).
        eval_path: Evaluation questions.
        name: Name of the data set in logs and reports.
        n_train: Keep this many training questions (``None`` = all); see
            :func:`~ragdistill.data.sampling.sample_questions`.
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Returns:
        The data; the corpus keeps file order, questions keep file order.

    Raises:
        DataValidationError: On any fault listed in docs/data_format.md, naming file and line.
    """
    corpus = read_corpus(corpus_path)
    corpus_ids = {p.id for p in corpus}
    train = read_questions(train_path, corpus_ids) if train_path is not None else []
    evaluation = read_questions(eval_path, corpus_ids)
    warn_on_shared_ids(train, evaluation)
    return assemble_data(name, corpus, train, evaluation, n_train, n_eval, seed)


def read_corpus(path: PathArg) -> list[Passage]:
    """Read and validate a corpus file: unique non-empty ids, non-empty text, optional title.

    Args:
        path: The corpus JSONL file.

    Returns:
        The passages in file order.

    Raises:
        DataValidationError: On any fault, naming the file and line.
    """
    return corpus_from_records(read_jsonl_records(path), path)


def corpus_from_records(records: Iterable[tuple[int, Record]], path: PathArg) -> list[Passage]:
    """Validate corpus records (``id``, ``text``, optional ``title``) numbered by line or row, from any source.

    The JSONL reader and the ``datasets`` loader share it, so every format gets the same checks and messages.
    """
    passages: list[Passage] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        passage = Passage(
            id=non_empty_string(record, "id", path, line),
            text=non_empty_string(record, "text", path, line),
            title=optional_string(record, "title", path, line) or "",
        )
        check_unique(passage.id, "passage", first_line, path, line)
        passages.append(passage)
    return passages


def read_questions(path: PathArg, corpus_ids: Container[str]) -> list[Question]:
    """Read and validate a question file; every gold id must be a passage of the corpus.

    Args:
        path: The questions JSONL file.
        corpus_ids: Ids of the corpus the gold ids must refer to.

    Returns:
        The questions in file order; repeated answers or gold ids are kept once, in order.

    Raises:
        DataValidationError: On any fault, naming the file and line.
    """
    return questions_from_records(read_jsonl_records(path), path, corpus_ids)


def questions_from_records(
    records: Iterable[tuple[int, Record]], path: PathArg, corpus_ids: Container[str]
) -> list[Question]:
    """Validate question records (``id``, ``question`` or ``turns``, ``answers``, ``gold_ids``) from any source."""
    questions: list[Question] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        question = Question(
            id=non_empty_string(record, "id", path, line),
            text=_question_text(record, path, line),
            answers=_string_list(record, "answers", path, line),
            gold_ids=_string_list(record, "gold_ids", path, line),
        )
        check_unique(question.id, "question", first_line, path, line)
        for gold_id in question.gold_ids:
            if gold_id not in corpus_ids:
                raise DataValidationError(path, f"gold id {gold_id!r} is not a passage id of the corpus", line)
        questions.append(question)
    return questions


def _question_text(record: Record, path: PathArg, line: int) -> str:
    """The ``question``, or a dialogue context's ``turns`` joined one per line (exactly one of the two)."""
    if "turns" not in record:
        return non_empty_string(record, "question", path, line)
    if "question" in record:
        raise DataValidationError(path, "give one of 'question' (a string) and 'turns' (dialogue), not both", line)
    turns = _string_list(record, "turns", path, line, unique=False)  # a dialogue may repeat a turn ("ok")
    if not turns:
        raise DataValidationError(path, "field 'turns' must be a non-empty list of non-empty strings", line)
    return DIALOGUE_TURN_SEPARATOR.join(turns)


DIALOGUE_TURN_SEPARATOR = "\n"
"""How a dialogue context's turns are joined into the text the retriever and the LM read."""


def read_jsonl_records(path: PathArg) -> list[tuple[int, Record]]:
    """Read a JSONL file as (1-based line number, object) pairs, skipping blank lines.

    Lines are decoded one by one so that a bad byte is reported on its own line; a UTF-8
    byte-order mark on the first line is tolerated because common editors write one.

    Args:
        path: The file.

    Returns:
        One pair per non-blank line.

    Raises:
        DataValidationError: If the file is missing or unreadable, holds no record, or a line is
            not UTF-8, not valid JSON, or not a JSON object.
    """
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(path, "file not found" if not file.exists() else "not a regular file")
    records: list[tuple[int, Record]] = []
    try:
        with file.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                text = decode(raw, path, line)
                if text.strip():
                    records.append((line, _parse_object(text, path, line, ends_file=not raw.endswith(b"\n"))))
    except OSError as exc:  # permissions, a file that vanished, an I/O error: no line to blame
        raise DataValidationError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if not records:
        raise DataValidationError(path, "file is empty (expected one JSON object per line)")
    return records


def decode(raw: bytes, path: PathArg, line: int) -> str:
    """Decode one line as UTF-8, accepting a byte-order mark only where editors put one: the file's start.

    The mark is cut off by hand rather than by the ``utf-8-sig`` codec so that a bad byte is reported
    with its own value, at the character column an editor shows (the mark is invisible there, and
    JSON errors count columns in characters too). A mark on a later line is almost always two files
    joined with ``cat``; JSON would only call it an "unexpected BOM".
    """
    body = raw[len(codecs.BOM_UTF8) :] if line == 1 and raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(body[: exc.start].decode("utf-8")) + 1  # exc.start is where the bad sequence begins
        raise DataValidationError(
            path,
            f"not valid UTF-8 (byte {body[exc.start]:#04x} at column {column}); save the file as UTF-8",
            line,
        ) from None
    if text.startswith("\ufeff"):
        raise DataValidationError(
            path,
            "unexpected byte-order mark (U+FEFF) at the start of the line; only the file's first bytes may be one "
            "(were files concatenated? save each as UTF-8 without BOM)",
            line,
        )
    return text


def _parse_object(text: str, path: PathArg, line: int, ends_file: bool = False) -> Record:
    """Parse one line as a JSON object; every way ``json.loads`` can fail becomes a located error.

    Besides :class:`json.JSONDecodeError`, ``json.loads`` raises ``RecursionError`` on deeply
    nested arrays and a plain ``ValueError`` on an integer longer than
    :func:`sys.get_int_max_str_digits` (4300 digits by default); neither names the line.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = _unclosed_hint(text, ends_file)
        raise DataValidationError(path, f"invalid JSON: {exc.msg} (column {exc.colno}){hint}", line) from None
    except RecursionError:
        raise DataValidationError(path, "invalid JSON: arrays or objects nested too deeply to read", line) from None
    except ValueError as exc:
        reason = str(exc).split(":")[0]  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise DataValidationError(path, f"invalid JSON: a number is too long to read ({reason})", line) from None
    if not isinstance(value, dict):
        raise DataValidationError(path, f"expected a JSON object, got {json_type_name(value)}", line)
    return value


def _unclosed_hint(text: str, ends_file: bool) -> str:
    """Explain the two common causes of a line whose JSON stops inside a string, array or object.

    On the file's last line without a newline that is a cut-off write or download; elsewhere it is
    a record spread over several lines (pretty-printed JSON), which JSONL does not allow.
    """
    if not _is_unclosed(text):
        return ""
    if ends_file:
        return "; the file ends inside this record: was it cut short?"
    return "; the record is not closed on this line: JSONL needs each object on one line (pretty-printed JSON?)"


def _is_unclosed(text: str) -> bool:
    """Whether ``text`` ends inside a JSON string, array or object (brackets counted outside strings)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def non_empty_string(record: Record, field: str, path: PathArg, line: int) -> str:
    """Return ``record[field]``, a string with text in it; otherwise raise naming the file, line and field."""
    if field not in record:
        raise DataValidationError(path, f"missing required field {field!r} (string)", line)
    value = record[field]
    if not isinstance(value, str):
        raise DataValidationError(path, f"field {field!r} must be a string, got {json_type_name(value)}", line)
    if not value.strip():
        raise DataValidationError(path, f"field {field!r} is empty", line)
    _check_text(value, f"field {field!r}", path, line)
    return value


def optional_string(record: Record, field: str, path: PathArg, line: int) -> str | None:
    """Return ``record[field]`` when it is a string, ``None`` when absent or null; raise on any other type."""
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataValidationError(path, f"field {field!r} must be a string, got {json_type_name(value)}", line)
    _check_text(value, f"field {field!r}", path, line)
    return value


def _string_list(record: Record, field: str, path: PathArg, line: int, unique: bool = True) -> tuple[str, ...]:
    value = record.get(field)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataValidationError(
            path, f"field {field!r} must be an array of strings, got {json_type_name(value)}", line
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise DataValidationError(
                path, f"field {field!r} must be an array of strings, item {index} is {json_type_name(item)}", line
            )
        if not item.strip():
            # An empty answer would be "contained" in every passage and count as a hit.
            raise DataValidationError(path, f"field {field!r} item {index} is an empty string", line)
        _check_text(item, f"field {field!r} item {index}", path, line)
    return tuple(dict.fromkeys(value)) if unique else tuple(value)


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _check_text(value: str, what: str, path: PathArg, line: int) -> None:
    r"""Refuse a lone surrogate: JSON lets an escape like ``"\ud800"`` through, but it is not text.

    Python keeps such a string, and it would only fail when first encoded (by a tokenizer, the
    teacher cache or a report writer), deep in a run and far from the line that holds it.

    Args:
        value: The string read from the file.
        what: How the message names it: ``field 'text'`` or ``field 'answers' item 2``.
        path: The file, for the message.
        line: The line, for the message.
    """
    found = _LONE_SURROGATE.search(value)
    if found:
        raise DataValidationError(
            path,
            f"{what} holds an unpaired surrogate \\u{ord(found.group()):04x} at character {found.start() + 1}"
            " (half of a \\uXXXX escape pair; not valid Unicode text)",
            line,
        )


def warn_on_shared_ids(train: list[Question], evaluation: list[Question]) -> None:
    """Warn when a question id is in both splits: usually a leak of eval questions into training."""
    shared = {q.id for q in train} & {q.id for q in evaluation}
    if shared:
        logger.warning(
            "%d question ids are in both train and eval (e.g. %r); evaluation may be optimistic",
            len(shared),
            min(shared),
        )
