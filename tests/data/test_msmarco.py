"""The MS MARCO passage loader: ids kept as the files hold them, TREC qrels checked line by line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragdistill.data.errors import DataValidationError
from ragdistill.data.msmarco import load_msmarco
from ragdistill.evaluation.metrics import evaluate_run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "msmarco"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "msmarco"))


def test_loads_the_fixture_ids_as_written() -> None:
    data = load_msmarco(FIXTURE)
    assert [p.id for p in data.corpus] == [str(i) for i in range(12)]  # 0-based pids, never re-numbered
    assert len(data.eval) == 6 and len(data.train) == 6
    first = data.eval[0]
    assert first.id == "9001" and first.text == "Who sold the rights?"
    assert first.gold_ids == ("1",) and first.graded == (("1", 1),)
    assert "Maciot de Bethencourt" in data.passage("1").text  # qrels pid 1 is collection line 2


def test_mrr_at_10_headline() -> None:
    data = load_msmarco(FIXTURE, train_split=None)
    assert data.train == []
    run = {q.id: {q.gold_ids[0]: 1.0, "10": 2.0} for q in data.eval}  # gold at rank 2 (10 is no dev gold)
    assert evaluate_run(run, data.eval, corpus=None, ks=(1,))["gold/mrr@10"] == pytest.approx(0.5)


def test_graded_trec_qrels_and_unjudged_queries(folder: Path) -> None:
    (folder / "qrels.dev.tsv").write_text("9001 0 1 3\n9001 0 0 1\n9002 0 2 0\n")
    data = load_msmarco(folder)
    assert [q.id for q in data.eval] == ["9001"]  # 9002 only judged non-relevant; the others unjudged
    assert data.eval[0].graded == (("1", 3), ("0", 1))


@pytest.mark.parametrize(
    ("file", "content", "line", "fragment"),
    [
        ("qrels.dev.tsv", "9001 0 1\n", 1, "expected 4 whitespace-separated fields"),
        ("qrels.dev.tsv", "9001 0 1 1\n9001 0 12 1\n", 2, "pid '12' is not in collection.tsv"),
        ("qrels.dev.tsv", "9999 0 1 1\n", 1, "qid '9999' is not in the queries file"),
        ("qrels.dev.tsv", "9001 0 1 yes\n", 1, "field 'relevance' must be an integer"),
        ("qrels.dev.tsv", "9001 0 1 1\n9001 0 1 1\n", 2, "judged twice (first on line 1)"),
        ("collection.tsv", "0\ta\n0\tb\n", 2, "duplicate passage id '0' (first seen on line 1)"),
        ("collection.tsv", "0\ta\n1 b\n", 2, "expected 2 tab-separated fields (pid, text), got 1"),
        ("collection.tsv", "", None, "file is empty"),
        ("queries.dev.tsv", "9001\t \n", 1, "field 'text' is empty"),
    ],
)
def test_bad_files_name_file_and_line(folder: Path, file: str, content: str, line: int | None, fragment: str) -> None:
    (folder / file).write_text(content)
    with pytest.raises(DataValidationError) as info:
        load_msmarco(folder)
    assert info.value.path == str(folder / file) and info.value.line == line
    assert fragment in str(info.value)
