"""Load DPR's files: the ``psgs_w100.tsv`` passages and its question JSON (or ``*.qa.csv``) files.

``psgs_w100.tsv`` is ``id<TAB>text<TAB>title`` under a header, the text quoted as a CSV field when it
holds a quote (wrapped in quotes, inner quotes doubled). A question file is either DPR's training/dev JSON, an array of
``{"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}`` whose contexts carry
``passage_id``/``title``/``text``, or DPR's evaluation ``*.qa.csv``: ``question<TAB>answers`` with the
answers a Python-style list (``['Paris']``). Positive contexts become ``gold_ids``; evaluation is DPR's
top-k accuracy, ``answer/recall@k`` (a passage holding an answer string).

DPR's questions have no ids; each gets ``<split>-<index>`` (``train-0``, ``eval-17``: 0-based position
in its file), so a question id says where to find it.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Container
from pathlib import Path
from typing import Any

from ragdistill.data.errors import DataValidationError, check_unique, json_type_name
from ragdistill.data.jsonl import PathArg
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.tsv import iter_rows, non_empty
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

PASSAGE_FIELDS = ("id", "text", "title")


def load_dpr(
    passages_path: PathArg,
    train_path: PathArg | None,
    eval_path: PathArg,
    name: str = "dpr",
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load DPR passages and questions.

    Args:
        passages_path: ``psgs_w100.tsv`` (or a slice of it with the same header).
        train_path: DPR training JSON, or ``None`` for evaluation only.
        eval_path: DPR JSON (``nq-dev.json``) or ``*.qa.csv`` (``nq-test.qa.csv``, answers only).
        name: Name in logs and reports.
        n_train: Keep this many training questions (``None`` = all).
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Raises:
        DataValidationError: On any fault, naming the file and the line (TSV, CSV) or JSON location.
    """
    corpus = read_passages(passages_path)
    ids = {p.id for p in corpus}
    train = read_dpr_questions(train_path, ids, "train") if train_path is not None else []
    evaluation = read_dpr_questions(eval_path, ids, "eval")
    return assemble_data(name, corpus, train, evaluation, n_train, n_eval, seed)


def read_passages(path: PathArg) -> list[Passage]:
    """Read ``psgs_w100.tsv``: unique ids, non-empty text, title (the header line is skipped).

    Raises:
        DataValidationError: On a line without three tab-separated fields, an empty id or text, or a
            repeated id, naming file and line.
    """
    passages: list[Passage] = []
    first_line: dict[str, int] = {}
    for line, (raw_id, raw_text, title) in iter_rows(path, PASSAGE_FIELDS, is_header=lambda row: row[0] == "id"):
        pid = non_empty(raw_id, "id", path, line)
        text = non_empty(_unquote(raw_text), "text", path, line)
        check_unique(pid, "passage", first_line, path, line)
        passages.append(Passage(id=pid, text=text, title=_unquote(title)))
    return passages


def _unquote(field: str) -> str:
    """Undo CSV quoting (outer quotes dropped, inner ones halved): DPR's writer quotes fields holding a quote."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def read_dpr_questions(path: PathArg, corpus_ids: Container[str], split: str) -> list[Question]:
    """Read a DPR question file: JSON (``.json``) or the ``question<TAB>answers`` evaluation CSV (otherwise)."""
    if str(path).endswith(".json"):
        return _read_json(path, corpus_ids, split)
    return _read_qa_csv(path, split)


def _read_json(path: PathArg, corpus_ids: Container[str], split: str) -> list[Question]:
    """Read DPR's JSON array; positive and hard-negative contexts' ``passage_id`` must be passages of the corpus."""
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(path, "file not found" if not file.exists() else "not a regular file")
    try:
        items = json.loads(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataValidationError(path, f"not valid UTF-8 (byte {exc.object[exc.start]:#04x})") from None
    except json.JSONDecodeError as exc:
        raise DataValidationError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    if not isinstance(items, list) or not items:
        raise DataValidationError(path, "expected a non-empty JSON array of questions")
    return [_question(item, f"[{i}]", f"{split}-{i}", corpus_ids, path) for i, item in enumerate(items)]


def _question(item: Any, where: str, qid: str, corpus_ids: Container[str], path: PathArg) -> Question:
    if not isinstance(item, dict):
        raise DataValidationError(path, f"{where}: expected an object, got {json_type_name(item)}")
    text = item.get("question")
    if not isinstance(text, str) or not text.strip():
        raise DataValidationError(path, f"{where}: field 'question' must be a non-empty string")
    answers = _strings(item.get("answers", []), f"{where}.answers", path)
    gold = _context_ids(item, "positive_ctxs", where, corpus_ids, path)
    negatives = [pid for pid in _context_ids(item, "hard_negative_ctxs", where, corpus_ids, path) if pid not in gold]
    return Question(
        id=qid,
        text=text,
        answers=answers,
        gold_ids=tuple(dict.fromkeys(gold)),
        negative_ids=tuple(dict.fromkeys(negatives)),
    )


def _context_ids(item: dict[str, Any], field: str, where: str, corpus_ids: Container[str], path: PathArg) -> list[str]:
    """The ``passage_id`` of each context in ``item[field]``; each must be a passage of the passages file."""
    contexts = item.get(field, [])
    if not isinstance(contexts, list):
        raise DataValidationError(path, f"{where}.{field}: expected an array, got {json_type_name(contexts)}")
    ids = []
    for j, ctx in enumerate(contexts):
        pid = ctx.get("passage_id") if isinstance(ctx, dict) else None
        if not isinstance(pid, str | int) or isinstance(pid, bool) or not str(pid).strip():
            raise DataValidationError(path, f"{where}.{field}[{j}]: missing field 'passage_id'")
        if str(pid) not in corpus_ids:
            raise DataValidationError(
                path, f"{where}.{field}[{j}]: passage_id {str(pid)!r} is not an id of the passages file"
            )
        ids.append(str(pid))
    return ids


def _strings(value: Any, where: str, path: PathArg) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise DataValidationError(path, f"{where}: expected an array of non-empty strings")
    return tuple(dict.fromkeys(value))


def _read_qa_csv(path: PathArg, split: str) -> list[Question]:
    """Read ``question<TAB>answers`` lines (answers a Python or JSON list of strings), ids by position."""
    questions: list[Question] = []
    for index, (line, (text, raw_answers)) in enumerate(iter_rows(path, ("question", "answers"))):
        try:
            answers = ast.literal_eval(raw_answers.strip())
        except (ValueError, SyntaxError):
            raise DataValidationError(path, f"answers {raw_answers[:40]!r} are not a list of strings", line) from None
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise DataValidationError(path, "answers must be a non-empty list of non-empty strings", line)
        if not answers:
            raise DataValidationError(path, "answers must be a non-empty list of non-empty strings", line)
        questions.append(
            Question(
                id=f"{split}-{index}",
                text=non_empty(text, "question", path, line),
                answers=tuple(dict.fromkeys(answers)),
            )
        )
    return questions
