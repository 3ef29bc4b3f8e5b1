"""Load a data set in the BEIR folder layout (BEIR, MTEB retrieval and most recent papers use it).

``<path>/corpus.jsonl`` holds ``{"_id", "title", "text"}`` per passage, ``<path>/queries.jsonl``
``{"_id", "text"}`` per query (every split's queries in one file), and ``<path>/qrels/<split>.tsv``
the judgements ``query-id  corpus-id  score`` under a header line. Grades are kept as they are
(``Question.graded``), so ``gold/ndcg@10`` is BEIR's headline nDCG@10 on graded relevance; rows of
score 0 (or below) are judgements of non-relevance and make no passage relevant.

Faults raise :class:`DataValidationError` naming the file and line, as for ``data=jsonl``: a
converted folder most often breaks by ids that do not match across the three files, which is
checked on every qrels row.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping
from pathlib import Path

from ragdistill.data.errors import DataValidationError, check_unique
from ragdistill.data.jsonl import (
    PathArg,
    non_empty_string,
    optional_string,
    read_jsonl_records,
    warn_on_shared_ids,
)
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.tsv import Judgements, add_judgement, is_integer, iter_rows, non_empty, parse_int
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

QRELS_FIELDS = ("query-id", "corpus-id", "score")


def load_beir(
    path: PathArg,
    eval_split: str = "test",
    train_split: str | None = "train",
    name: str | None = None,
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load a BEIR folder: the corpus, and the questions of the eval (and train) split with their grades.

    Args:
        path: The folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        eval_split: Qrels file of the evaluation questions: ``qrels/<eval_split>.tsv``.
        train_split: Qrels file of the training questions, read when it exists (most BEIR sets ship
            none: they are for zero-shot evaluation); ``None`` never reads one.
        name: Name in logs and reports; ``None`` = the folder's name (``scifact``).
        n_train: Keep this many training questions (``None`` = all).
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Returns:
        The data: corpus in file order, questions in ``queries.jsonl`` order, only those with at least
        one passage of score >= 1 in the split (the others cannot be scored).

    Raises:
        DataValidationError: On any fault in the files, naming file and line.
    """
    folder = Path(path)
    corpus = read_beir_corpus(folder / "corpus.jsonl")
    corpus_ids = {p.id for p in corpus}
    queries = read_beir_queries(folder / "queries.jsonl")
    eval_qrels = folder / "qrels" / f"{eval_split}.tsv"
    evaluation = graded_questions(read_qrels(eval_qrels, queries, corpus_ids), queries, eval_qrels)
    train: list[Question] = []
    if train_split is not None and (folder / "qrels" / f"{train_split}.tsv").exists():
        train_qrels = folder / "qrels" / f"{train_split}.tsv"
        train = graded_questions(read_qrels(train_qrels, queries, corpus_ids), queries, train_qrels)
    else:
        logger.info("No qrels/%s.tsv in %s: no training questions (evaluation only)", train_split, folder)
    warn_on_shared_ids(train, evaluation)
    return assemble_data(name or folder.resolve().name, corpus, train, evaluation, n_train, n_eval, seed)


def read_beir_corpus(path: PathArg) -> list[Passage]:
    """Read ``corpus.jsonl``: unique ``_id``, ``text`` (or at least a ``title``), optional ``title``.

    Some BEIR corpora (TREC-COVID) hold documents with a title and an empty text; the title then
    becomes the text, since the retriever encodes the text alone and an empty passage matches nothing.

    Raises:
        DataValidationError: On any fault, naming file and line.
    """
    passages: list[Passage] = []
    first_line: dict[str, int] = {}
    for line, record in read_jsonl_records(path):
        pid = non_empty_string(record, "_id", path, line)
        title = optional_string(record, "title", path, line) or ""
        if "text" not in record:
            raise DataValidationError(path, "missing required field 'text' (string)", line)
        text = optional_string(record, "text", path, line) or ""
        if not text.strip():
            if not title.strip():
                raise DataValidationError(path, "fields 'text' and 'title' are both empty", line)
            text = title
        check_unique(pid, "passage", first_line, path, line)
        passages.append(Passage(id=pid, text=text, title=title))
    return passages


def read_beir_queries(path: PathArg) -> dict[str, str]:
    """Read ``queries.jsonl``: unique ``_id`` -> non-empty ``text``, in file order (other fields ignored).

    Raises:
        DataValidationError: On any fault, naming file and line.
    """
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, record in read_jsonl_records(path):
        qid = non_empty_string(record, "_id", path, line)
        text = non_empty_string(record, "text", path, line)
        check_unique(qid, "query", first_line, path, line)
        queries[qid] = text
    return queries


def read_qrels(path: PathArg, query_ids: Container[str], corpus_ids: Container[str]) -> Judgements:
    """Read ``qrels/<split>.tsv``: every row's grade, ids checked against the queries and the corpus.

    The header line is optional: a first row whose score is not an integer is taken for one.

    Raises:
        DataValidationError: On a row without three tab-separated fields, a score that is not an
            integer, an id the queries or corpus lack, or a pair judged twice, naming file and line.
    """
    judgements: Judgements = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, (raw_qid, raw_pid, raw_score) in iter_rows(
        path, QRELS_FIELDS, is_header=lambda row: len(row) == 3 and not is_integer(row[2])
    ):
        qid = non_empty(raw_qid, "query-id", path, line)
        pid = non_empty(raw_pid, "corpus-id", path, line)
        grade = parse_int(raw_score, "score", path, line)
        if qid not in query_ids:
            raise DataValidationError(path, f"query-id {qid!r} is not an _id of queries.jsonl", line)
        if pid not in corpus_ids:
            raise DataValidationError(path, f"corpus-id {pid!r} is not an _id of corpus.jsonl", line)
        add_judgement(judgements, first_line, qid, pid, grade, path, line)
    return judgements


def graded_questions(judgements: Judgements, queries: Mapping[str, str], path: PathArg) -> list[Question]:
    """One question per judged query with a relevant passage, its grades >= 1 kept as ``graded``.

    Args:
        judgements: Every row of the split's qrels.
        queries: Query id -> text; its order is the questions' order.
        path: The qrels file, for the message when no query has a relevant passage.

    Raises:
        DataValidationError: If no row of the file has a score >= 1 (nothing could be scored).
    """
    questions: list[Question] = []
    for qid, text in queries.items():
        relevant = tuple((pid, grade) for pid, grade in judgements.get(qid, {}).items() if grade >= 1)
        if relevant:
            questions.append(Question(id=qid, text=text, gold_ids=tuple(p for p, _ in relevant), graded=relevant))
    if not questions:
        raise DataValidationError(path, "no row has a score >= 1: no query has a relevant passage to evaluate on")
    kept = {q.id for q in questions}
    unscorable = sum(1 for qid in judgements if qid not in kept)
    if unscorable:
        logger.warning("%s: %d judged queries have only score-0 rows and are left out", path, unscorable)
    return questions
