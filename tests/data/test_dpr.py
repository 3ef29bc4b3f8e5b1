"""The DPR loader: psgs_w100.tsv passages, training JSON, evaluation JSON or qa.csv by answer strings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragdistill.data.dpr import load_dpr
from ragdistill.data.errors import DataValidationError
from ragdistill.evaluation.metrics import evaluate_run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dpr"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "dpr"))


def test_loads_passages_and_json_questions() -> None:
    data = load_dpr(FIXTURE / "psgs_w100.tsv", FIXTURE / "train.json", FIXTURE / "dev.json")
    assert [p.id for p in data.corpus] == [str(i) for i in range(1, 13)]  # DPR's 1-based ids, as written
    assert data.corpus[1].title == "Normans" and data.corpus[1].text.startswith("Bethencourt took the title")
    assert [q.id for q in data.train][:2] == ["train-0", "train-1"] and len(data.eval) == 6
    first = data.eval[0]
    assert first.id == "eval-0" and first.answers == ("Maciot de Bethencourt",)
    assert first.gold_ids == ("2",) and "Maciot de Bethencourt" in data.passage("2").text
    raw = json.loads((FIXTURE / "dev.json").read_text())[0]
    hard = tuple(str(ctx["passage_id"]) for ctx in raw["hard_negative_ctxs"])
    assert hard and first.negative_ids == hard  # the gold teacher trains on these (teacher=gold mines none)


def test_qa_csv_evaluates_by_answer_strings() -> None:
    data = load_dpr(FIXTURE / "psgs_w100.tsv", None, FIXTURE / "test.qa.csv")
    assert data.train == [] and [q.id for q in data.eval] == [f"eval-{i}" for i in range(6)]
    assert data.eval[0].gold_ids == () and data.eval[0].answers == ("Maciot de Bethencourt",)
    run = {"eval-0": {"2": 2.0, "1": 1.0}, "eval-1": {"1": 1.0}}  # eval-0's answer at rank 1, eval-1 missed
    m = evaluate_run(run, data.eval, data.corpus, ks=(1,))
    assert "gold/recall@1" not in m
    assert m["answer/recall@1"] == pytest.approx(1 / 6)


def test_quoted_passage_text_is_unquoted(folder: Path) -> None:
    (folder / "psgs_w100.tsv").write_text('id\ttext\ttitle\n1\t"say ""hi"" now"\tT\n')
    (folder / "q.qa.csv").write_text("q?\t['hi']\n")
    assert load_dpr(folder / "psgs_w100.tsv", None, folder / "q.qa.csv").corpus[0].text == 'say "hi" now'


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            [{"question": "q?", "answers": ["a"], "positive_ctxs": [{"passage_id": "99"}]}],
            "[0].positive_ctxs[0]: passage_id '99'",
        ),
        ([{"question": "", "answers": ["a"]}], "[0]: field 'question' must be a non-empty string"),
        ([{"question": "q?", "answers": "a"}], "[0].answers: expected an array of non-empty strings"),
        ([{"question": "q?", "positive_ctxs": [{"title": "t"}]}], "[0].positive_ctxs[0]: missing field 'passage_id'"),
        ({"question": "q?"}, "expected a non-empty JSON array"),
    ],
)
def test_bad_json_names_the_location(folder: Path, content: object, fragment: str) -> None:
    (folder / "dev.json").write_text(json.dumps(content))
    with pytest.raises(DataValidationError) as info:
        load_dpr(folder / "psgs_w100.tsv", None, folder / "dev.json")
    assert info.value.path == str(folder / "dev.json") and fragment in str(info.value)


@pytest.mark.parametrize(
    ("file", "content", "line", "fragment"),
    [
        ("psgs_w100.tsv", "id\ttext\ttitle\n1\tx\tT\n1\ty\tT\n", 3, "duplicate passage id '1' (first seen on line 2)"),
        ("psgs_w100.tsv", "id\ttext\ttitle\n1\tx\n", 2, "expected 3 tab-separated fields (id, text, title), got 2"),
        ("psgs_w100.tsv", "id\ttext\ttitle\n", None, "file is empty"),
        ("test.qa.csv", "q?\t['a']\nq2?\tnot a list\n", 2, "are not a list of strings"),
        ("test.qa.csv", "q?\t[]\n", 1, "answers must be a non-empty list"),
        ("dev.json", '[{"question": "q?",\n "answers": [}]', 2, "invalid JSON"),
    ],
)
def test_bad_lines_name_file_and_line(folder: Path, file: str, content: str, line: int | None, fragment: str) -> None:
    (folder / file).write_text(content)
    eval_file = folder / (file if file != "psgs_w100.tsv" else "test.qa.csv")
    with pytest.raises(DataValidationError) as info:
        load_dpr(folder / "psgs_w100.tsv", None, eval_file)
    assert info.value.path == str(folder / file) and info.value.line == line
    assert fragment in str(info.value)
