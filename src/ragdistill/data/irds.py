"""Load a data set by its ``ir_datasets`` id (``beir/scifact/test``, ``msmarco-passage/dev/small``).

``ir_datasets`` knows hundreds of IR collections by id, with their documents, queries and judgements, and
keeps each where it downloaded it (``~/.ir_datasets``, or ``IR_DATASETS_HOME``). An id names one split's
queries and judgements over a collection; the training questions come from a second id over the same
collection (``data.train_id``). Judgements keep their grades, as ``data=beir`` does.

Documents and queries get the record checks of ``data=jsonl``, named by the id and the position of the
record (``beir/scifact/test docs row 12: field 'text' is empty``). Offline, an id whose files are not on
disk fails in one line that says where ``ir_datasets`` looks for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragdistill.data.beir import graded_questions
from ragdistill.data.errors import DataValidationError, RowSource
from ragdistill.data.jsonl import Record, corpus_from_records, questions_from_records, warn_on_shared_ids
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.tsv import collect_judgements
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)


def load_ir_datasets(
    id: str,
    train_id: str | None = None,
    name: str | None = None,
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load the documents, queries and judgements of ``id`` (and the training questions of ``train_id``).

    Args:
        id: The evaluation split's ``ir_datasets`` id; its documents are the corpus.
        train_id: An id over the same documents whose queries and judgements are the training questions
            (``msmarco-passage/train``), or ``None`` for evaluation only.
        name: Name in logs and reports; ``None`` = ``id``.
        n_train: Keep this many training questions (``None`` = all).
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Raises:
        DataValidationError: An unknown id, files that are not on disk and cannot be fetched, an id without
            documents, queries or judgements, or a record that breaks the format.
    """
    dataset = open_dataset(id)
    where = RowSource(f"{id} docs")
    corpus = corpus_from_records(_records(id, "docs", dataset, _doc_record), where)
    corpus_ids = {passage.id for passage in corpus}
    evaluation = read_questions(id, dataset, corpus_ids)
    train: list[Question] = []
    if train_id is not None:
        train = read_questions(train_id, open_dataset(train_id), corpus_ids)
    warn_on_shared_ids(train, evaluation)
    return assemble_data(name or id, corpus, train, evaluation, n_train, n_eval, seed)


def register_msmarco_layout(dataset_id: str, folder: Path, split: str = "dev", collection: Path | None = None) -> str:
    """Register local files in the MS MARCO layout as an ``ir_datasets`` id (once per process); return the id.

    How a collection ``ir_datasets`` does not know (one's own, or a converted one) becomes loadable by id:
    ``collection.tsv``, ``queries.<split>.tsv`` and ``qrels.<split>.tsv`` (TREC qrels) in ``folder``.

    Args:
        dataset_id: The id to register (``my-org/my-collection/dev``).
        folder: The folder holding the files.
        split: Which queries and qrels files.
        collection: Another passages file than ``folder/collection.tsv``.
    """
    import ir_datasets
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    if dataset_id not in ir_datasets.registry._registered:
        parts = (
            TsvDocs(LocalDownload(collection or folder / "collection.tsv")),
            TsvQueries(LocalDownload(folder / f"queries.{split}.tsv")),
            TrecQrels(LocalDownload(folder / f"qrels.{split}.tsv"), {0: "not relevant", 1: "relevant"}),
        )
        ir_datasets.registry.register(dataset_id, ir_datasets.Dataset(*parts))
    return dataset_id


def open_dataset(dataset_id: str) -> Any:
    """The ``ir_datasets`` data set of ``dataset_id``; an unknown id fails naming it."""
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise DataValidationError(
            dataset_id, "not an ir_datasets id (the catalogue: https://ir-datasets.com)"
        ) from None


def read_questions(dataset_id: str, dataset: Any, corpus_ids: set[str]) -> list[Question]:
    """The judged queries of ``dataset``, each with its relevant documents and grades (score >= 1)."""
    where = RowSource(f"{dataset_id} queries")
    questions = questions_from_records(_records(dataset_id, "queries", dataset, _query_record), where, corpus_ids)
    qrels_where = RowSource(f"{dataset_id} qrels")
    rows = (
        (row, qrel.query_id, qrel.doc_id, qrel.relevance)
        for row, qrel in _enumerate(dataset_id, "qrels", dataset.qrels_iter() if dataset.has_qrels() else None)
    )
    judgements = collect_judgements(rows, {q.id for q in questions}, corpus_ids, qrels_where)
    return graded_questions(judgements, {q.id: q.text for q in questions}, qrels_where)


def _doc_record(doc: Any) -> Record:
    text = getattr(doc, "text", None)
    if not isinstance(text, str):
        text = doc.default_text()  # documents with a body or several fields
    return {"id": doc.doc_id, "text": text, "title": getattr(doc, "title", None)}


def _query_record(query: Any) -> Record:
    text = getattr(query, "text", None)
    return {"id": query.query_id, "question": text if isinstance(text, str) else query.default_text()}


def _records(dataset_id: str, kind: str, dataset: Any, to_record: Any) -> Iterator[tuple[int, Record]]:
    has = getattr(dataset, f"has_{kind}")()
    items = getattr(dataset, f"{kind}_iter")() if has else None
    for row, item in _enumerate(dataset_id, kind, items):
        yield row, to_record(item)


def _enumerate(dataset_id: str, kind: str, items: Any) -> Iterator[tuple[int, Any]]:
    """Number ``items`` from 0; a missing part or a failed download becomes one located line."""
    if items is None:
        raise DataValidationError(dataset_id, f"the data set has no {kind}")
    try:
        yield from enumerate(items)
    except OSError as error:  # requests' ConnectionError is an OSError; so are missing files
        raise DataValidationError(
            dataset_id,
            f"its {kind} are not on disk and could not be fetched ({type(error).__name__}); ir_datasets looks in "
            "IR_DATASETS_HOME (default ~/.ir_datasets): put the files there where you are online, or copy that folder",
        ) from None
