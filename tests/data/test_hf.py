"""The ``datasets`` loader (``data=hf``): tables read as published, the same data as other formats, located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from hydra.utils import instantiate

from ragdistill.config_check import check_config
from ragdistill.data.beir import load_beir
from ragdistill.data.errors import DataValidationError
from ragdistill.data.fixture import load_fixture
from ragdistill.data.hf import load_hf

BEIR = Path(__file__).resolve().parents[1] / "fixtures" / "beir"


def _passages(data: Any) -> list[dict[str, Any]]:
    return [{"id": p.id, "text": p.text, "title": p.title} for p in data.corpus]


def _questions(questions: Any, squad_answers: bool = False) -> list[dict[str, Any]]:
    rows = []
    for q in questions:
        answers: Any = list(q.answers)
        if squad_answers:  # SQuAD on the hub: {"text": [...], "answer_start": [...]}
            answers = {"text": list(q.answers), "answer_start": [0] * len(q.answers)}
        rows.append({"id": q.id, "question": q.text, "answers": answers, "gold_ids": list(q.gold_ids)})
    return rows


@pytest.fixture(scope="module")
def fixture_tables(tmp_path_factory) -> dict[str, Path]:
    """The shipped fixture as a save_to_disk corpus, parquet eval questions (SQuAD answers) and JSON train questions."""
    root = tmp_path_factory.mktemp("hf")
    data = load_fixture()
    datasets.Dataset.from_list(_passages(data)).save_to_disk(str(root / "corpus"))
    datasets.Dataset.from_list(_questions(data.eval, squad_answers=True)).to_parquet(str(root / "eval.parquet"))
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in _questions(data.train)))
    return {"root": root}


def _load(root: Path, **changes: Any) -> Any:
    settings: dict[str, Any] = {
        "corpus": str(root / "corpus"),
        "eval_questions": {"path": "parquet", "data_files": str(root / "eval.parquet")},
        "train_questions": {"path": "json", "data_files": str(root / "train.jsonl")},
    }
    return load_hf(**(settings | changes))


def test_the_fixture_through_datasets_tables_is_the_fixture(fixture_tables) -> None:
    loaded, original = _load(fixture_tables["root"]), load_fixture()
    assert loaded.corpus == original.corpus
    assert loaded.eval == original.eval  # SQuAD's answers struct read as its texts
    assert loaded.train == original.train
    assert loaded.name == "corpus"


def test_beir_as_published_on_the_hub_equals_the_beir_folder(tmp_path: Path) -> None:
    """``mteb/<set>`` layout: ``_id`` columns, queries without gold ids, a judgements table with grades."""
    corpus = [json.loads(line) for line in (BEIR / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (BEIR / "queries.jsonl").read_text().splitlines()]
    rows = [line.split("\t") for line in (BEIR / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qrels = [{"query-id": q, "corpus-id": c, "score": int(s)} for q, c, s in rows]
    datasets.Dataset.from_list(corpus).save_to_disk(str(tmp_path / "corpus"))
    datasets.DatasetDict({"queries": datasets.Dataset.from_list(queries)}).save_to_disk(str(tmp_path / "queries"))
    datasets.Dataset.from_list(qrels).to_parquet(str(tmp_path / "test.parquet"))
    loaded = load_hf(
        corpus={"path": str(tmp_path / "corpus"), "columns": {"id": "_id"}},
        eval_questions={
            "path": str(tmp_path / "queries"),
            "split": "queries",
            "columns": {"id": "_id", "question": "text"},
            "qrels": {"path": "parquet", "data_files": str(tmp_path / "test.parquet")},
        },
    )
    folder = load_beir(BEIR, train_split=None)
    assert loaded.corpus == folder.corpus
    assert loaded.eval == folder.eval  # grades kept, score-0 rows non-relevant, the same questions in order


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    datasets.Dataset.from_list([{"id": 7, "text": "seven"}, {"id": 8, "text": "eight"}]).to_parquet(
        str(tmp_path / "c.pq")
    )
    questions = [{"id": 1, "question": "which?", "gold_ids": [8]}]
    datasets.Dataset.from_list(questions).to_parquet(str(tmp_path / "q.pq"))
    data = load_hf(
        corpus={"path": "parquet", "data_files": str(tmp_path / "c.pq")},
        eval_questions={"path": "parquet", "data_files": str(tmp_path / "q.pq")},
    )
    assert [p.id for p in data.corpus] == ["7", "8"] and data.eval[0].gold_ids == ("8",) and data.eval[0].id == "1"


def _table(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / f"{name}.parquet"))
    return {"path": "parquet", "data_files": str(tmp_path / f"{name}.parquet")}


GOOD_CORPUS = [{"id": "p1", "text": "one"}, {"id": "p2", "text": "two"}]
GOOD_QUESTIONS = [{"id": "q1", "question": "first?", "gold_ids": ["p1"]}]


@pytest.mark.parametrize(
    ("corpus", "questions", "message"),
    [
        ([{"id": "p1", "text": "one"}, {"id": "p2", "text": " "}], GOOD_QUESTIONS, r"row 1: field 'text' is empty"),
        (
            [{"id": "p1", "text": "a"}, {"id": "p1", "text": "b"}],
            GOOD_QUESTIONS,
            r"row 1: duplicate passage id 'p1' \(first seen on row 0\)",
        ),
        (
            [{"pid": "p1", "text": "a"}],
            GOOD_QUESTIONS,
            r"no column 'id' \(field 'id'\); the table has \['pid', 'text'\]",
        ),
        (
            GOOD_CORPUS,
            [{"id": "q1", "question": "x?", "gold_ids": ["p9"]}],
            r"questions .* row 0: gold id 'p9' is not a passage id",
        ),
        (
            GOOD_CORPUS,
            [{"id": "q1", "question": "x?", "answers": [""]}],
            r"row 0: field 'answers' item 0 is an empty string",
        ),
        (GOOD_CORPUS, [{"id": "q1", "question": 3}], r"row 0: field 'question' must be a string, got number"),
    ],
)
def test_bad_rows_are_named_by_table_and_row(tmp_path: Path, corpus, questions, message) -> None:
    with pytest.raises(DataValidationError, match=message):
        load_hf(corpus=_table(tmp_path, "c", corpus), eval_questions=_table(tmp_path, "q", questions))


def test_bad_judgements_are_named_by_row(tmp_path: Path) -> None:
    def load(qrels: list[dict[str, Any]]) -> Any:
        questions = _table(tmp_path, "q", [{"id": "q1", "question": "first?"}])
        return load_hf(
            corpus=_table(tmp_path, "c", GOOD_CORPUS),
            eval_questions=questions | {"qrels": _table(tmp_path, "r", qrels)},
        )

    assert load([{"query-id": "q1", "corpus-id": "p2", "score": 1}]).eval[0].graded == (("p2", 1),)
    with pytest.raises(DataValidationError, match=r"qrels .* row 0: corpus id 'p9' is not an id of the corpus"):
        load([{"query-id": "q1", "corpus-id": "p9", "score": 1}])
    with pytest.raises(
        DataValidationError, match=r"row 1: query 'q1' and passage 'p1' judged twice \(first on row 0\)"
    ):
        load([{"query-id": "q1", "corpus-id": "p1", "score": 1}, {"query-id": "q1", "corpus-id": "p1", "score": 2}])
    with pytest.raises(DataValidationError, match=r"no row has a score >= 1"):
        load([{"query-id": "q1", "corpus-id": "p1", "score": 0}])


def test_a_hub_id_offline_fails_in_one_line_saying_how_to_bring_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataValidationError) as caught:
        load_hf(corpus="someone/some-corpus", eval_questions="someone/some-questions")
    message = str(caught.value)
    assert message.startswith("corpus someone/some-corpus (split train): ")
    assert "hub cannot be reached" in message and "save_to_disk" in message and "\n" not in message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"corpus": {"path": "x", "splt": "a"}}, r"data\.corpus: unknown key\(s\) \['splt'\]"),
        ({"corpus": {"split": "a"}}, r"data\.corpus: no 'path'"),
        ({"corpus": {"path": "x", "qrels": "y"}}, r"data\.corpus: unknown key\(s\) \['qrels'\]"),
    ],
)
def test_bad_table_settings_are_named(tmp_path: Path, changes, message) -> None:
    with pytest.raises(DataValidationError, match=message):
        load_hf(**({"eval_questions": "q"} | changes))


def test_a_missing_split_or_path_is_named(fixture_tables, tmp_path: Path) -> None:
    root = fixture_tables["root"]
    datasets.DatasetDict({"corpus": datasets.Dataset.from_list(GOOD_CORPUS)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataValidationError, match=r"no split 'train'; the folder has \['corpus'\]"):
        _load(root, corpus=str(tmp_path / "dd"))
    with pytest.raises(DataValidationError, match=r"cannot open 'parquet' as a data files"):
        _load(root, corpus={"path": "parquet", "data_files": str(tmp_path / "none.parquet")})
    with pytest.raises(DataValidationError, match=r"columns maps unknown field\(s\) \['txt'\]"):
        _load(root, corpus={"path": str(root / "corpus"), "columns": {"txt": "text"}})


def test_the_config_composes_checks_and_loads(fixture_tables, compose_cfg) -> None:
    root = fixture_tables["root"]
    cfg = compose_cfg(
        "config",
        [
            "data=hf",
            f"data.corpus.path={root / 'corpus'}",
            "data.eval_questions.path=parquet",
            f"data.eval_questions.data_files={root / 'eval.parquet'}",
            "data.n_eval=10",
        ],
    )
    check_config(cfg, ("data",))
    data = instantiate(cfg.data)
    assert len(data.corpus) == 211 and len(data.eval) == 10 and not data.train
