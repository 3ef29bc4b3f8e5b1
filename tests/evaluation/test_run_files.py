"""TREC run and qrels files: the project's metrics agree with an independent implementation (ir_measures)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path

import pytest

from ragdistill.data.schemas import Question
from ragdistill.evaluation.metrics import QrelsDict, RunDict, evaluate_run, gold_qrels
from ragdistill.evaluation.run_files import trec_order, write_run_files

ir_measures = pytest.importorskip("ir_measures")

KS = (1, 3, 5, 20)


def _graded_question(qid: str, graded: dict[str, int]) -> Question:
    return Question(id=qid, text=f"{qid}?", gold_ids=tuple(graded), graded=tuple(graded.items()))


def _independent(run_file: Path, qrels_file: Path, qids: list[str]) -> dict[str, float]:
    """The project's gold/* figures computed by ir_measures from the written files alone.

    Averaged over every judged question with a missing one as 0 (``trec_eval -c``), as the project does.
    """
    measures = {f"recall@{k}": ir_measures.parse_measure(f"R@{k}") for k in KS}
    measures |= {"mrr@10": ir_measures.parse_measure("RR@10"), "ndcg@10": ir_measures.parse_measure("nDCG@10")}
    by_measure = {measure: name for name, measure in measures.items()}
    qrels = list(ir_measures.read_trec_qrels(str(qrels_file)))
    run = list(ir_measures.read_trec_run(str(run_file)))
    per_query: dict[str, dict[str, float]] = defaultdict(dict)
    for row in ir_measures.iter_calc(list(measures.values()), qrels, run):
        per_query[by_measure[row.measure]][row.query_id] = row.value
    return {name: sum(per_query[name].get(q, 0.0) for q in qids) / len(qids) for name in measures}


def _random_case(seed: int) -> tuple[list[Question], RunDict]:
    """Graded 1/2 judgements, rankings without ties, some relevant passages beyond the cut-offs."""
    rng = random.Random(seed)
    pool = [f"d{i}" for i in range(60)]
    questions, run = [], {}
    for i in range(40):
        judged = rng.sample(pool, rng.randint(1, 6))
        questions.append(_graded_question(f"q{i}", {pid: rng.choice((1, 2)) for pid in judged}))
        ranked = rng.sample(pool, 25)
        run[f"q{i}"] = {pid: 100.0 - rank - rng.random() * 0.5 for rank, pid in enumerate(ranked)}
    del run["q7"]  # a question nothing was retrieved for scores 0
    run["q9"] = {}
    return questions, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_ir_measures_on_the_written_files(tmp_path: Path, seed: int) -> None:
    questions, run = _random_case(seed)
    ours = evaluate_run(run, questions, corpus=None, ks=KS)
    written = write_run_files(tmp_path, {"test": run}, {"gold": gold_qrels(questions)})
    assert [p.name for p in written] == ["test.run", "gold.qrels"]

    theirs = _independent(tmp_path / "test.run", tmp_path / "gold.qrels", [q.id for q in questions])
    for name, value in theirs.items():
        assert ours[f"gold/{name}"] == pytest.approx(value, abs=1e-6), name
    # the grades matter here: the same run against flattened qrels scores a different nDCG
    flat = [Question(id=q.id, text=q.text, gold_ids=q.gold_ids) for q in questions]
    assert evaluate_run(run, flat, corpus=None, ks=KS)["gold/ndcg@10"] != pytest.approx(ours["gold/ndcg@10"])


def test_hand_case_agrees_with_ir_measures(tmp_path: Path) -> None:
    """Grade 2 at rank 2, grade 1 at rank 1: nDCG = (1 + 2/log2 3) / (2 + 1/log2 3)."""
    questions = [_graded_question("q1", {"a": 1, "b": 2}), _graded_question("q2", {"c": 1})]
    run = {"q1": {"a": 3.0, "b": 2.0, "x": 1.0}, "q2": {"x": 2.0, "y": 1.0}}
    ours = evaluate_run(run, questions, corpus=None, ks=KS)
    write_run_files(tmp_path, {"test": run}, {"gold": gold_qrels(questions)})
    theirs = _independent(tmp_path / "test.run", tmp_path / "gold.qrels", ["q1", "q2"])
    expected_ndcg = (1 + 2 / 1.5849625007211562) / (2 + 1 / 1.5849625007211562) / 2
    assert ours["gold/ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-9)
    assert theirs["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-6)
    assert ours["gold/mrr@10"] == pytest.approx(0.5) == theirs["mrr@10"]


def test_files_hold_trec_lines(tmp_path: Path) -> None:
    run = {"q1": {"b": 0.5, "a": 0.5, "c": 0.25}}
    qrels: QrelsDict = {"q1": {"a": 2, "c": 1}}
    write_run_files(tmp_path, {"test_bm25": run}, {"gold": qrels, "answer": {}})
    assert (tmp_path / "test_bm25.run").read_text().splitlines() == [
        # ties by id descending, as trec_eval breaks them; the rank column says so
        "q1 Q0 b 1 0.5 test_bm25",
        "q1 Q0 a 2 0.5 test_bm25",
        "q1 Q0 c 3 0.25 test_bm25",
    ]
    assert (tmp_path / "gold.qrels").read_text().splitlines() == ["q1 0 a 2", "q1 0 c 1"]
    assert not (tmp_path / "answer.qrels").exists()  # no judgements: no file


def test_scores_are_written_without_rounding(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.1 + 1e-12, "b": 0.1}}
    write_run_files(tmp_path, {"test": run}, {})
    scores = [float(line.split()[4]) for line in (tmp_path / "test.run").read_text().splitlines()]
    assert scores == [0.1 + 1e-12, 0.1]


def test_trec_order_is_score_then_id_descending() -> None:
    assert [pid for pid, _ in trec_order({"a": 1.0, "c": 2.0, "b": 1.0})] == ["c", "b", "a"]


def test_ids_with_whitespace_write_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        written = write_run_files(tmp_path / "runs", {"test": {"q1": {"doc 1": 1.0}}}, {})
    assert written == [] and not (tmp_path / "runs").exists()
    assert "'doc 1'" in caplog.text
