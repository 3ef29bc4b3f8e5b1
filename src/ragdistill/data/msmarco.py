"""Load MS MARCO passage ranking files: ``collection.tsv``, ``queries.<split>.tsv``, ``qrels.<split>.tsv``.

``collection.tsv`` is ``pid<TAB>text``, a queries file ``qid<TAB>text`` (neither has a header), and a
qrels file TREC's ``qid 0 pid relevance``. The passage and query ids are kept as the strings the
files hold (never turned into row numbers, which is how ids go off by one). MS MARCO's judgements
are binary; TREC Deep Learning's graded ones (0-3, same layout) are kept as grades, so the same
loader serves both. The headline metric is ``gold/mrr@10`` (MRR@10 on the judged relevant passages).
"""

from __future__ import annotations

import logging
from collections.abc import Container
from pathlib import Path

from ragdistill.data.beir import graded_questions
from ragdistill.data.errors import DataValidationError, check_unique
from ragdistill.data.jsonl import PathArg, warn_on_shared_ids
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.tsv import Judgements, add_judgement, iter_rows, non_empty, parse_int
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)


def load_msmarco(
    path: PathArg,
    eval_split: str = "dev",
    train_split: str | None = "train",
    name: str = "msmarco",
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load the collection and the judged questions of the eval (and train) split.

    Args:
        path: The folder holding ``collection.tsv`` and the split files.
        eval_split: Reads ``queries.<eval_split>.tsv`` and ``qrels.<eval_split>.tsv`` (``dev``,
            ``dev.small``, ``dl19``...).
        train_split: The training split, read when both its files exist; ``None`` never reads one.
        name: Name in logs and reports.
        n_train: Keep this many training questions (``None`` = all).
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Returns:
        The data: collection in file order, questions in queries-file order, only those with a passage
        judged relevant (MS MARCO's queries files also hold unjudged queries).

    Raises:
        DataValidationError: On any fault in the files, naming file and line.
    """
    folder = Path(path)
    corpus = read_id_text(folder / "collection.tsv", "pid", "passage")
    corpus_ids = {p.id for p in corpus}
    evaluation = _split(folder, eval_split, corpus_ids)
    train: list[Question] = []
    if train_split is not None and all(
        (folder / f"{kind}.{train_split}.tsv").exists() for kind in ("queries", "qrels")
    ):
        train = _split(folder, train_split, corpus_ids)
    else:
        logger.info("No queries/qrels.%s.tsv in %s: no training questions (evaluation only)", train_split, folder)
    warn_on_shared_ids(train, evaluation)
    return assemble_data(name, corpus, train, evaluation, n_train, n_eval, seed)


def _split(folder: Path, split: str, corpus_ids: Container[str]) -> list[Question]:
    """The judged questions of one split, with their grades."""
    queries = {p.id: p.text for p in read_id_text(folder / f"queries.{split}.tsv", "qid", "query")}
    qrels_path = folder / f"qrels.{split}.tsv"
    return graded_questions(read_trec_qrels(qrels_path, queries, corpus_ids), queries, qrels_path)


def read_id_text(path: PathArg, id_field: str, kind: str) -> list[Passage]:
    """Read ``id<TAB>text`` lines (the collection, or a queries file) as passages, ids unique.

    Raises:
        DataValidationError: On a line without exactly two tab-separated fields, an empty field or a
            repeated id, naming file and line.
    """
    rows: list[Passage] = []
    first_line: dict[str, int] = {}
    for line, (raw_id, raw_text) in iter_rows(path, (id_field, "text")):
        item_id = non_empty(raw_id, id_field, path, line)
        text = non_empty(raw_text, "text", path, line)
        check_unique(item_id, kind, first_line, path, line)
        rows.append(Passage(id=item_id, text=text))
    return rows


def read_trec_qrels(path: PathArg, query_ids: Container[str], corpus_ids: Container[str]) -> Judgements:
    """Read TREC qrels (``qid iteration pid relevance``, whitespace-separated), checking every id.

    Raises:
        DataValidationError: On a row without four fields, a relevance that is not an integer, an id
            the queries or the collection lack, or a pair judged twice, naming file and line.
    """
    judgements: Judgements = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, (qid, _, pid, raw) in iter_rows(path, ("qid", "iteration", "pid", "relevance"), separator=None):
        grade = parse_int(raw, "relevance", path, line)
        if qid not in query_ids:
            raise DataValidationError(path, f"qid {qid!r} is not in the queries file", line)
        if pid not in corpus_ids:
            raise DataValidationError(path, f"pid {pid!r} is not in collection.tsv", line)
        add_judgement(judgements, first_line, qid, pid, grade, path, line)
    return judgements
