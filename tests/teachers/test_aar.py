"""AAR: LM-preferred positives (with or without human ones), and ANCE re-mining during training."""

from __future__ import annotations

import numpy as np
import pytest

from ragdistill.candidates.hard_negatives import remine
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.teachers.aar import AARTeacher
from ragdistill.teachers.base import Teacher


class FixedScores(Teacher):
    """A source teacher whose scores are given per question."""

    def __init__(self, scores: dict[str, list[float]]):
        self.scores = scores

    def score(self, questions, candidates, data):
        return [TeacherSignal(q.id, candidates[q.id].ids, np.array(self.scores[q.id])) for q in questions]


@pytest.fixture
def setting():
    corpus = [Passage(f"p{i}", f"text {i}") for i in range(6)]
    questions = [Question("q1", "?", ("a",), ("p5",)), Question("q2", "?", ("a",), ("p1",))]
    data = RetrievalData("toy", corpus, questions, [])
    candidates = {"q1": RankedList(["p0", "p1", "p2"], np.zeros(3)), "q2": RankedList(["p0", "p1", "p2"], np.zeros(3))}
    source = FixedScores({"q1": [-3.0, -1.0, -2.0], "q2": [-1.0, -np.inf, -2.0]})
    return data, questions, candidates, source


def test_positives_are_lm_top_n_and_human(setting):
    data, questions, candidates, source = setting
    q1, q2 = AARTeacher(source, top_n=1).score(questions, candidates, data)
    assert q1.positive_ids == ("p1", "p5")  # LM's best + the gold paragraph outside the pool (joins it)
    assert q1.candidate_ids == ["p0", "p1", "p2", "p5"]
    assert q1.scores[3] == -np.inf  # a human positive the LM did not judge gets no invented score
    assert q1.diagnostics["lm_positive_is_gold"] == 0.0
    assert q2.positive_ids == ("p0", "p1")  # p1 had no LM opinion: it is a positive through the human label only
    assert q2.scores[1] == -np.inf


def test_without_human_positives_only_the_lm_decides(setting):
    data, questions, candidates, source = setting
    q1, q2 = AARTeacher(source, top_n=2, use_human_positives=False).score(questions, candidates, data)
    assert q1.positive_ids == ("p1", "p2") and q1.candidate_ids == ["p0", "p1", "p2"]
    assert q2.positive_ids == ("p0", "p2")  # never the unjudged candidate


def test_remine_keeps_positives_and_swaps_negatives():
    signal = TeacherSignal("q", ["p0", "p1", "p2"], np.array([0.5, -1.0, -2.0]), positive_ids=("p0",))
    fresh = remine(signal, ["p0", "p7", "p8", "p9"], keep=2, exclude={"p8"})
    assert fresh.candidate_ids == ["p0", "p7", "p9"]
    assert fresh.positive_ids == ("p0",)
    np.testing.assert_allclose(fresh.scores, [0.5, -2.0, -2.0])


def test_bad_options_raise(setting):
    _, _, _, source = setting
    with pytest.raises(ValueError, match="top_n"):
        AARTeacher(source, top_n=0)
    with pytest.raises(ValueError, match="refresh_every_n_steps"):
        AARTeacher(source, refresh_every_n_steps=-1)


def test_the_source_teachers_diagnostics_are_kept(setting):
    data, questions, candidates, _ = setting

    class WithIndicators(FixedScores):
        def score(self, questions, candidates, data):
            signals = super().score(questions, candidates, data)
            for signal in signals:
                signal.diagnostics["attention_on_answer_tokens"] = 0.25
            return signals

    source = WithIndicators({"q1": [-3.0, -1.0, -2.0], "q2": [-1.0, -np.inf, -2.0]})
    for signal in AARTeacher(source, top_n=1).score(questions, candidates, data):
        assert signal.diagnostics["attention_on_answer_tokens"] == 0.25 and "lm_positive_is_gold" in signal.diagnostics
