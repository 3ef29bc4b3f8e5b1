import numpy as np
import pytest

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.evaluation.teacher_quality import teacher_quality, weak_teacher_warnings


def test_top1_rates_against_the_labels_the_teacher_did_not_use():
    corpus = [Passage("a", "Paris is in France"), Passage("b", "nothing here"), Passage("c", "Paris again")]
    questions = [
        Question("q1", "where?", ("Paris",), ("a",)),
        Question("q2", "where?", ("Paris",), ("a",)),
        Question("q3", "where?", ("Paris",), ("zzz",)),  # gold outside the pool: not counted for top1_gold
    ]
    data = RetrievalData("toy", corpus, questions, [])
    signals = [
        TeacherSignal("q1", ["a", "b"], np.array([0.0, -1.0]), diagnostics={"lm_positive_is_gold": 1.0}),
        TeacherSignal("q2", ["a", "b", "c"], np.array([-2.0, -1.0, -np.inf])),  # wrong; c unjudged
        TeacherSignal("q3", ["b", "c"], np.array([-1.0, 0.0])),  # c holds the answer
    ]
    quality = teacher_quality(signals, questions, data)
    assert quality["teacher/top1_gold"] == 0.5
    assert quality["teacher/gold_in_pool"] == pytest.approx(2 / 3)
    assert quality["teacher/random_top1_gold"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert quality["teacher/top1_answer"] == pytest.approx(2 / 3)  # q1 yes, q2 "b" no, q3 "c" yes
    uniform = np.log(2)
    assert 0 < quality["teacher/entropy"] <= uniform
    assert quality["teacher/uniform_entropy"] == pytest.approx(uniform)  # q2's unjudged c does not count
    assert quality["teacher/lm_positive_is_gold"] == 1.0  # diagnostics are averaged where reported
    assert "teacher/first_stage_top1_gold" not in quality  # only with the first-stage ranking
    assert teacher_quality([], questions, data) == {}


def test_first_stage_rate_is_the_bar_a_teacher_has_to_clear():
    corpus = [Passage(pid, "text") for pid in "abcd"]
    questions = [Question("q1", "?", (), ("a",)), Question("q2", "?", (), ("c",))]
    data = RetrievalData("toy", corpus, questions, [])
    first_stage = {
        "q1": RankedList(["a", "b", "c"], np.array([3.0, 2.0, 1.0])),  # gold first
        "q2": RankedList(["b", "a", "c"], np.array([3.0, 2.0, 1.0])),  # gold third
    }
    signals = [
        TeacherSignal("q1", ["a", "b", "c"], np.array([-3.0, 0.0, -1.0])),  # teacher prefers b: wrong
        # the first stage's best, b, was not judged: the best judged one by first-stage rank is c (gold)
        TeacherSignal("q2", ["b", "c", "d"], np.array([-np.inf, -1.0, 0.0])),
    ]
    quality = teacher_quality(signals, questions, data, first_stage)
    assert quality["teacher/top1_gold"] == 0.0
    assert quality["teacher/first_stage_top1_gold"] == 1.0


def test_a_good_teacher_gets_no_warning():
    figures = {
        "teacher/entropy": 1.58,
        "teacher/uniform_entropy": 2.30,
        "teacher/top1_gold": 0.77,
        "teacher/random_top1_gold": 0.105,
        "teacher/first_stage_top1_gold": 0.755,
    }
    assert weak_teacher_warnings(figures) == []
    assert weak_teacher_warnings({}) == []  # nothing measured, nothing to say


def test_a_flat_teacher_at_chance_is_flagged_for_both_reasons():
    # the intermediate ranker fit on 80 LLM orders (docs/results/intermediate.md): uniform scores, top-1 gold at chance
    figures = {
        "teacher/entropy": 2.301,
        "teacher/uniform_entropy": 2.303,
        "teacher/top1_gold": 0.106,
        "teacher/random_top1_gold": 0.105,
    }
    warnings = weak_teacher_warnings(figures)
    assert len(warnings) == 2
    assert "almost uniform" in warnings[0] and "2.301" in warnings[0]
    assert "10.6%" in warnings[1] and "random" in warnings[1]


def test_a_teacher_below_the_first_stage_order_is_flagged():
    # the raw reader's attention (docs/results/lm_teachers.md): sharp enough, well above chance, below BM25's own order
    figures = {"teacher/top1_gold": 0.417, "teacher/random_top1_gold": 0.105, "teacher/first_stage_top1_gold": 0.755}
    (warning,) = weak_teacher_warnings(figures)
    assert "41.7%" in warning and "75.5%" in warning
    # within the margin of the first stage (G2R's 74.0% vs 75.5%) is not flagged
    assert weak_teacher_warnings(figures | {"teacher/top1_gold": 0.74}) == []


def test_teacher_quality_logs_the_warnings(caplog):
    corpus = [Passage(pid, "text") for pid in "ab"]
    questions = [Question("q1", "?", (), ("a",))]
    data = RetrievalData("toy", corpus, questions, [])
    flat = [TeacherSignal("q1", ["a", "b"], np.array([0.0, 0.0]))]
    with caplog.at_level("WARNING", logger="ragdistill.evaluation.teacher_quality"):
        teacher_quality(flat, questions, data)
    assert "almost uniform" in caplog.text


def _flat_teacher():
    """A gold teacher's signal: the positive scored 1, twenty negatives 0, almost uniform over the pool."""
    corpus = [Passage(f"p{i}", "text") for i in range(21)]
    questions = [Question("q1", "?", (), ("p0",))]
    scores = np.zeros(21)
    scores[0] = 1.0
    signals = [TeacherSignal("q1", [f"p{i}" for i in range(21)], scores, positive_ids=("p0",))]
    return signals, questions, RetrievalData("toy", corpus, questions, [])


def test_the_uniform_warning_fires_only_when_the_loss_reads_the_scores(caplog):
    """A gold teacher with InfoNCE (positives only) used to warn on every default run (issue 29)."""
    signals, questions, data = _flat_teacher()
    with caplog.at_level("WARNING", logger="ragdistill.evaluation.teacher_quality"):
        teacher_quality(signals, questions, data, reads_scores=False)
    assert not any("almost uniform" in r.getMessage() for r in caplog.records)
    with caplog.at_level("WARNING", logger="ragdistill.evaluation.teacher_quality"):
        teacher_quality(signals, questions, data, reads_scores=True)
    assert sum("almost uniform" in r.getMessage() for r in caplog.records) == 1


def test_every_shipped_loss_says_whether_it_reads_the_teacher_scores():
    """The pipeline passes the loss's ``reads_teacher_scores`` on: InfoNCE does not, KL does."""
    from ragdistill.losses.infonce import InfoNCELoss
    from ragdistill.losses.kl import KLDistillLoss

    assert InfoNCELoss.reads_teacher_scores is False and KLDistillLoss.reads_teacher_scores is True
    figures = {"teacher/entropy": 3.0, "teacher/uniform_entropy": 3.0}
    assert weak_teacher_warnings(figures, reads_scores=False) == []
    assert len(weak_teacher_warnings(figures)) == 1
