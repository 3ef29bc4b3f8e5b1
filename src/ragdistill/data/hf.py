"""Load a data set held as Hugging Face ``datasets`` tables: a ``save_to_disk`` folder, data files, or a hub id.

Three tables make a data set: the corpus (one passage per row), the evaluation questions and, optionally,
the training questions. Each is any table ``datasets`` can open, with a column mapping from the fields this
project reads to the table's columns, so a data set is read as it is published (``_id`` for BEIR-style ids,
SQuAD's ``answers`` struct, integer MS MARCO ids). A question table may take its gold passages from a
judgements table (``query-id``, ``corpus-id``, ``score``: the layout of BEIR and MTEB on the hub), grades
kept as in ``data=beir``.

Rows are checked by the same record checks as ``data=jsonl`` (:func:`~ragdistill.data.jsonl.corpus_from_records`),
so a fault reads ``corpus (my_corpus, split train) row 12: field 'text' is empty`` with the row as
``dataset[12]`` numbers it. A hub id needs the network: offline, it fails in one line that says how to
bring the data set onto disk.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ragdistill.data.beir import graded_questions
from ragdistill.data.errors import DataValidationError, RowSource
from ragdistill.data.jsonl import Record, corpus_from_records, questions_from_records, warn_on_shared_ids
from ragdistill.data.sampling import assemble_data
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.tsv import Judgements, collect_judgements
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

CORPUS_COLUMNS = {"id": "id", "text": "text", "title": "title"}
"""Corpus fields -> default column names; ``title`` may be absent."""

QUESTION_COLUMNS = {"id": "id", "question": "question", "answers": "answers", "gold_ids": "gold_ids"}
"""Question fields -> default column names; ``answers`` and ``gold_ids`` may be absent."""

QRELS_COLUMNS = {"query_id": "query-id", "corpus_id": "corpus-id", "score": "score"}
"""Judgement fields -> default column names (BEIR's and MTEB's on the hub)."""

REQUIRED = {"id", "text", "question", "query_id", "corpus_id", "score"}
"""Fields whose column must be in the table; the others are read when present."""

DATA_FILE_BUILDERS = ("parquet", "json", "csv", "arrow", "text")
"""``path`` values that name a ``datasets`` builder reading ``data_files`` rather than a folder or hub id."""

_BATCH_ROWS = 4096


@dataclass(frozen=True)
class TableSource:
    """Where one table comes from and which of its columns hold which field.

    Attributes:
        path: A folder written by ``save_to_disk``, a folder of data files, a builder of
            :data:`DATA_FILE_BUILDERS` with ``data_files``, or a hub id (online only).
        name: The data set's configuration on the hub (``mteb/scifact``: ``corpus``, ``queries``, ``default``).
        split: The split to read (a ``save_to_disk`` folder of one split has none to choose).
        data_files: Files for a builder ``path`` (a path, a glob, a list, or split -> files).
        columns: Field -> column, over the defaults of the table's kind.
        qrels: For question tables, a judgements table giving gold passages and grades.
    """

    path: str
    name: str | None = None
    split: str = "train"
    data_files: Any = None
    columns: dict[str, str] = field(default_factory=dict)
    qrels: TableSource | None = None

    @classmethod
    def parse(cls, given: Mapping[str, Any] | str, where: str, *, takes_qrels: bool) -> TableSource:
        """Read a table's settings from the config (a mapping, or just its path); unknown keys are refused."""
        if isinstance(given, str):
            return cls(path=given)
        if not isinstance(given, Mapping):
            raise DataValidationError(where, f"expected a table's settings (path, split, columns, ...), got {given!r}")
        settings = dict(given)
        known = [f.name for f in fields(cls) if takes_qrels or f.name != "qrels"]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise DataValidationError(where, f"unknown key(s) {unknown}; a table takes {known}")
        if not settings.get("path"):
            raise DataValidationError(where, "no 'path': give a save_to_disk folder, data files or a hub id")
        qrels = settings.pop("qrels", None)
        parsed = cls(**{**settings, "path": str(settings["path"]), "columns": dict(settings.get("columns") or {})})
        if qrels is not None:
            parsed = dataclasses.replace(parsed, qrels=cls.parse(qrels, f"{where}.qrels", takes_qrels=False))
        return parsed

    def describe(self) -> str:
        """``mteb/scifact (corpus, split corpus)``: how messages name the table."""
        name = f"{self.name}, " if self.name else ""
        return f"{self.path} ({name}split {self.split})"


def load_hf(
    corpus: Mapping[str, Any] | str,
    eval_questions: Mapping[str, Any] | str,
    train_questions: Mapping[str, Any] | str | None = None,
    name: str | None = None,
    n_train: NonNegativeInt | None = None,
    n_eval: NonNegativeInt | None = None,
    seed: int = 0,
) -> RetrievalData:
    """Load the corpus and the questions from ``datasets`` tables, checking every row.

    Args:
        corpus: The passages' table (:class:`TableSource` settings, or its path).
        eval_questions: The evaluation questions' table.
        train_questions: The training questions' table, or ``None`` for evaluation-only data.
        name: Name in logs and reports; ``None`` = the corpus path's last part.
        n_train: Keep this many training questions (``None`` = all).
        n_eval: Keep this many evaluation questions (``None`` = all).
        seed: Seed of the subsampling.

    Raises:
        DataValidationError: A table that cannot be opened (offline hub id, missing folder, unknown split),
            a missing column, or a row that breaks the format, naming the table and the row.
    """
    corpus_source = TableSource.parse(corpus, "data.corpus", takes_qrels=False)
    passages = read_hf_corpus(corpus_source)
    corpus_ids = {passage.id for passage in passages}
    evaluation = read_hf_questions(
        TableSource.parse(eval_questions, "data.eval_questions", takes_qrels=True), corpus_ids
    )
    train: list[Question] = []
    if train_questions is not None:
        train = read_hf_questions(
            TableSource.parse(train_questions, "data.train_questions", takes_qrels=True), corpus_ids
        )
    warn_on_shared_ids(train, evaluation)
    label = name or Path(corpus_source.path.rstrip("/")).name
    return assemble_data(label, passages, train, evaluation, n_train, n_eval, seed)


def read_hf_corpus(source: TableSource) -> list[Passage]:
    """The passages of a corpus table, each row checked as a ``data=jsonl`` corpus line is."""
    where = RowSource(f"corpus {source.describe()}")
    return corpus_from_records(table_records(source, CORPUS_COLUMNS, where), where)


def read_hf_questions(source: TableSource, corpus_ids: set[str]) -> list[Question]:
    """The questions of a question table; with ``qrels``, only the judged ones, their gold ids and grades from it."""
    where = RowSource(f"questions {source.describe()}")
    questions = questions_from_records(table_records(source, QUESTION_COLUMNS, where), where, corpus_ids)
    if source.qrels is None:
        return questions
    qrels_where = RowSource(f"qrels {source.qrels.describe()}")
    judgements = read_hf_qrels(source.qrels, {q.id for q in questions}, corpus_ids, qrels_where)
    return graded_questions(judgements, {q.id: q.text for q in questions}, qrels_where)


def read_hf_qrels(source: TableSource, query_ids: set[str], corpus_ids: set[str], where: RowSource) -> Judgements:
    """Every judgement row, ids checked against the questions and the corpus, a pair judged twice refused."""
    rows = table_records(source, QRELS_COLUMNS, where)
    return collect_judgements(
        ((row, r["query_id"], r["corpus_id"], r["score"]) for row, r in rows), query_ids, corpus_ids, where
    )


def table_records(source: TableSource, defaults: Mapping[str, str], where: RowSource) -> Iterator[tuple[int, Record]]:
    """Yield ``(row, record)`` with the fields this project reads, renamed from the table's columns.

    Integer ids become strings (MS MARCO's pids are integers on the hub), a SQuAD ``answers`` struct
    becomes its list of texts; everything else is left to the record checks.
    """
    unknown = sorted(set(source.columns) - set(defaults))
    if unknown:
        raise DataValidationError(where, f"columns maps unknown field(s) {unknown}; fields: {sorted(defaults)}")
    mapping = {**defaults, **source.columns}
    table = open_table(source, where)
    columns = table.column_names
    missing = [
        f"{column!r} (field {name!r})" for name, column in mapping.items() if name in REQUIRED and column not in columns
    ]
    if missing:
        raise DataValidationError(
            where, f"no column {', '.join(missing)}; the table has {table.column_names} (map them with columns.<field>)"
        )
    present = {name: column for name, column in mapping.items() if column in table.column_names}
    row = 0
    for batch in table.select_columns(list(dict.fromkeys(present.values()))).iter(batch_size=_BATCH_ROWS):
        for i in range(len(next(iter(batch.values())))):
            yield row, {name: _as_record_value(name, batch[column][i]) for name, column in present.items()}
            row += 1
    if row == 0:
        raise DataValidationError(where, "the table has no rows")


def _as_record_value(name: str, value: Any) -> Any:
    if name in ("id", "query_id", "corpus_id") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name == "gold_ids" and isinstance(value, list):
        return [str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
    if name == "answers" and isinstance(value, dict) and "text" in value:
        return value["text"]  # SQuAD's {"text": [...], "answer_start": [...]}
    return value


def open_table(source: TableSource, where: RowSource) -> Any:
    """Open the table ``source`` names, as a ``datasets.Dataset`` of one split.

    Raises:
        DataValidationError: A hub id while offline, a path that is nothing ``datasets`` can read, or a
            split the data set does not have, in one line.
    """
    import datasets

    folder = Path(source.path).expanduser()
    if folder.is_dir() and any((folder / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            if source.split not in loaded:
                raise DataValidationError(where, f"no split {source.split!r}; the folder has {list(loaded)}")
            return loaded[source.split]
        return loaded
    is_local = folder.exists() or source.path in DATA_FILE_BUILDERS
    try:
        return datasets.load_dataset(source.path, source.name, split=source.split, data_files=source.data_files)
    except ConnectionError as error:
        raise DataValidationError(
            where,
            f"{source.path!r} is not a folder here and the Hugging Face hub cannot be reached ({error}); where you "
            "are online, save it with datasets.load_dataset(...).save_to_disk(<dir>) and give path=<dir>",
        ) from None
    except (FileNotFoundError, ValueError) as error:
        what = "data files" if is_local else "folder, data files or reachable hub id"
        raise DataValidationError(where, f"cannot open {source.path!r} as a {what}: {error}") from None
