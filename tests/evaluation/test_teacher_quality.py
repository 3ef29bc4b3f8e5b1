import numpy as np
import pytest

from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.teachers.signal import TeacherSignal


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
    assert quality["teacher/lm_positive_is_gold"] == 1.0  # diagnostics are averaged where reported
    assert teacher_quality([], questions, data) == {}
