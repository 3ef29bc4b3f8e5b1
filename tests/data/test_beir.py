"""The BEIR folder loader: graded qrels kept, score-0 rows non-relevant, located errors for bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate

from ragdistill.config_check import check_config
from ragdistill.data.beir import load_beir
from ragdistill.data.errors import DataValidationError
from ragdistill.evaluation.metrics import evaluate_run, gold_qrels
from ragdistill.utils.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "beir"
QID_L = "56e1f10ee3433e1400423222"  # test qrels lines 3-5: dev-0004-040 grade 2, -019 grade 1, -023 grade 0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A writable copy of the fixture, to break one file at a time."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "mybeir"))


def _qrels(folder: Path, *rows: str, split: str = "test") -> None:
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{r}\n" for r in rows))


def test_loads_the_fixture_with_grades_kept() -> None:
    data = load_beir(FIXTURE)
    assert data.name == "beir"
    assert len(data.corpus) == 12 and data.corpus[0].id == "dev-0004-023"
    assert data.corpus[0].title == "Computational complexity theory"
    assert len(data.eval) == 6 and len(data.train) == 6
    by_id = {q.id: q for q in data.eval}
    # grade 2 and grade 1 kept apart; the grade-0 row makes nothing relevant
    assert by_id[QID_L].graded == (("dev-0004-040", 2), ("dev-0004-019", 1))
    assert by_id[QID_L].gold_ids == ("dev-0004-040", "dev-0004-019")
    assert gold_qrels(data.eval)[QID_L] == {"dev-0004-040": 2, "dev-0004-019": 1}
    assert by_id[QID_L].text.startswith("What variable is associated")
    assert by_id[QID_L].answers == ()
    # questions keep queries.jsonl order
    queries = [json.loads(line)["_id"] for line in (FIXTURE / "queries.jsonl").read_text().splitlines()]
    assert [q.id for q in data.eval] == [q for q in queries if q in by_id]


def test_score_zero_is_not_relevant_and_grades_weigh_ndcg() -> None:
    data = load_beir(FIXTURE)
    question = next(q for q in data.eval if q.id == QID_L)
    # ranking the grade-0 passage first, then grade 1, then grade 2
    run = {QID_L: {"dev-0004-023": 3.0, "dev-0004-019": 2.0, "dev-0004-040": 1.0}}
    m = evaluate_run(run, [question], corpus=None, ks=(1, 2))
    assert m["gold/recall@1"] == 0.0  # score-0 passage is not a hit
    assert m["gold/recall@2"] == pytest.approx(0.5)
    assert m["gold/mrr@10"] == pytest.approx(0.5)
    log2 = [1.0, 1.5849625007211562, 2.0]
    assert m["gold/ndcg@10"] == pytest.approx((1 / log2[1] + 2 / log2[2]) / (2 / log2[0] + 1 / log2[1]))


def test_title_only_passage_reads_its_title_and_name_is_the_folder(folder: Path) -> None:
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    record = json.loads(lines[0]) | {"text": ""}
    (folder / "corpus.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    data = load_beir(folder)
    assert data.corpus[0].text == data.corpus[0].title and data.name == "mybeir"


def test_train_split_is_optional(folder: Path) -> None:
    (folder / "qrels" / "train.tsv").unlink()
    assert load_beir(folder).train == []
    assert load_beir(FIXTURE, train_split=None).train == []


def test_header_is_optional_and_subsampling_works(folder: Path) -> None:
    body = (FIXTURE / "qrels" / "test.tsv").read_text().splitlines()[1:]
    (folder / "qrels" / "test.tsv").write_text("\n".join(body) + "\n")
    assert len(load_beir(folder, n_eval=2).eval) == 2


def test_query_with_only_score_zero_rows_is_left_out(folder: Path) -> None:
    _qrels(folder, f"{QID_L}\tdev-0004-040\t0", "56e1b754cd28a01900c67abe\tdev-0004-018\t2")
    assert [q.id for q in load_beir(folder).eval] == ["56e1b754cd28a01900c67abe"]


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        ([f"{QID_L}\tdev-0004-040"], 2, "expected 3 tab-separated fields (query-id, corpus-id, score), got 2"),
        (
            [f"{QID_L}\tdev-0004-040\t2", f"{QID_L}\tdev-0004-019\t1.5"],
            3,
            "field 'score' must be an integer, got '1.5'",
        ),
        ([f"{QID_L}\tdev-0004-040\t2", "q-unknown\tdev-0004-040\t1"], 3, "query-id 'q-unknown' is not an _id of"),
        ([f"{QID_L}\tdev-9999-000\t1"], 2, "corpus-id 'dev-9999-000' is not an _id of corpus.jsonl"),
        ([f"{QID_L}\tdev-0004-040\t2", f"{QID_L}\tdev-0004-040\t1"], 3, "judged twice (first on line 2)"),
        ([f"{QID_L}\tdev-0004-040\t0"], None, "no row has a score >= 1"),
    ],
)
def test_bad_qrels_name_file_and_line(folder: Path, rows: list[str], line: int | None, fragment: str) -> None:
    _qrels(folder, *rows)
    path = folder / "qrels" / "test.tsv"
    with pytest.raises(DataValidationError) as info:
        load_beir(folder)
    assert info.value.path == str(path) and info.value.line == line
    assert fragment in str(info.value) and str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("file", "content", "line", "fragment"),
    [
        ("corpus.jsonl", "", None, "file is empty"),
        ("corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', 2, "duplicate passage id 'a'"),
        ("corpus.jsonl", '{"_id": 7, "text": "x"}\n', 1, "field '_id' must be a string, got number"),
        ("corpus.jsonl", '{"_id": "a", "title": ""}\n', 1, "missing required field 'text'"),
        ("corpus.jsonl", '{"_id": "a", "text": " ", "title": ""}\n', 1, "'text' and 'title' are both empty"),
        ("queries.jsonl", '{"_id": "q1"}\n', 1, "missing required field 'text'"),
        ("queries.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', 2, "duplicate query id 'q1'"),
        ("queries.jsonl", '{"_id": "q1", "text": "a"\n', 1, "invalid JSON"),
    ],
)
def test_bad_corpus_or_queries_name_file_and_line(
    folder: Path, file: str, content: str, line: int | None, fragment: str
) -> None:
    (folder / file).write_text(content)
    with pytest.raises(DataValidationError) as info:
        load_beir(folder)
    assert info.value.path == str(folder / file) and info.value.line == line
    assert fragment in str(info.value)


def test_missing_or_bad_qrels_file(folder: Path) -> None:
    with pytest.raises(DataValidationError, match=r"dev\.tsv: file not found"):
        load_beir(folder, eval_split="dev")
    (folder / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq\xe9\tx\t1\n")
    with pytest.raises(DataValidationError, match=r"test\.tsv line 2: not valid UTF-8"):
        load_beir(folder)
    _qrels(folder)
    with pytest.raises(DataValidationError, match=r"test\.tsv: file is empty"):
        load_beir(folder)


def test_config_loads_the_folder(compose_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = compose_cfg("config", ["data=beir", f"data.path={FIXTURE}", "data.n_eval=3"])
    check_config(cfg)
    assert len(instantiate(cfg.data).eval) == 3
    with pytest.raises(ConfigError, match=r"data\.eval_splt"):
        check_config(compose_cfg("config", ["data=beir", f"data.path={FIXTURE}", "+data.eval_splt=dev"]))
    with pytest.raises(ValueError, match="n_eval must be >= 0"):
        load_beir(FIXTURE, n_eval=-1)
