"""RAG evaluation: a run's top-k go to the reader in rank order; EM/F1 and the answers file follow."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.evaluation.rag import evaluate_reader, top_passages
from ragdistill.pipeline import evaluate


class FirstWordReader:
    """Answers with the first word of the best passage: a reader whose EM is known from the runs alone."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def answer(self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]) -> list[str]:
        self.seen = [[p.id for p in ps] for ps in passages]
        return [ps[0].text.split()[0] if ps else "" for ps in passages]


@pytest.fixture
def data() -> RetrievalData:
    corpus = [Passage("p1", "Paris is the capital"), Passage("p2", "Lyon is a city"), Passage("p3", "The Loire")]
    questions = [
        Question("q1", "capital of France?", ("Paris",), ("p1",)),
        Question("q2", "a river?", ("the Loire river",), ("p3",)),
    ]
    return RetrievalData("toy", corpus, [], questions)


def test_reader_reads_each_runs_top_k_in_rank_order_and_is_scored(tmp_path, data):
    runs = {
        "test": {"q1": {"p1": 0.9, "p2": 0.5, "p3": 0.1}, "q2": {"p2": 0.8, "p3": 0.7}},
        "test_bm25": {"q1": {"p2": 2.0, "p1": 1.0}, "q2": {"p3": 3.0}},
    }
    reader = FirstWordReader()
    metrics = evaluate_reader(reader, runs, data, top_k=2, run_dir=tmp_path)
    assert reader.seen == [["p2", "p1"], ["p3"]]  # the last run read; top-2, best first
    assert metrics["test/rag/em"] == 0.5  # "Paris" right; "Lyon" wrong
    assert metrics["test_bm25/rag/em"] == 0.0  # "Lyon"; "The" is not "the Loire river"
    assert metrics["test_bm25/rag/f1"] == pytest.approx(0.0)  # "The" normalises to nothing
    assert metrics["test/rag/questions"] == 2
    records = [json.loads(line) for line in (tmp_path / "answers_test.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in records] == ["Paris", "Lyon"]
    assert records[0]["retrieved_ids"] == ["p1", "p2"] and records[0]["hit"] is True


def test_top_passages_rejects_a_zero_k(data):
    with pytest.raises(ValueError, match="reader_top_k"):
        top_passages({}, ["q1"], data, 0)


def test_data_without_answers_is_a_clear_error(tmp_path):
    data = RetrievalData("noanswers", [Passage("p1", "x")], [], [Question("q1", "?", (), ("p1",))])
    with pytest.raises(ValueError, match="no gold answers"):
        evaluate_reader(FirstWordReader(), {"test": {"q1": {"p1": 1.0}}}, data, 1, tmp_path)


def test_eval_cli_config_reports_reader_em_f1_with_a_tiny_lm(tmp_path, compose_at, tiny_lm_dir, tiny_encoder_dir):
    overrides = [
        "data=fixture",
        "reader=lm",
        "lm=hf",
        f"lm.path={tiny_lm_dir}",
        f"retriever.path={tiny_encoder_dir}",
        "reader.max_new_tokens=4",
        "reader.max_passage_tokens=32",
        "evaluation.reader_top_k=2",
        "evaluation.reader_runs=[test,test_bm25]",
    ]
    cfg = compose_at("eval", overrides, tmp_path / "run")
    metrics, objects = evaluate(cfg)
    n_eval = len(objects["data"].eval)
    for prefix in ("test", "test_bm25"):
        assert 0.0 <= metrics[f"{prefix}/rag/em"] <= metrics[f"{prefix}/rag/f1"] <= 1.0
        lines = (tmp_path / "run" / f"answers_{prefix}.jsonl").read_text().splitlines()
        assert len(lines) == n_eval


def test_reader_runs_naming_a_run_the_evaluation_does_not_make_fails_before_work(tmp_path, compose_at):
    cfg = compose_at(
        "eval", ["data=fixture", "evaluation.fusion=none", "evaluation.reader_runs=[test_fusion_rrf]"], tmp_path
    )
    with pytest.raises(ValueError, match=r"reader_runs.*test_fusion_rrf"):
        evaluate(cfg)
