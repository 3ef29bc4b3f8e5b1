import numpy as np
import pytest

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.teachers.gold import GoldTeacher


def _data():
    corpus = [
        Passage("g", "Paris is the capital of France."),
        Passage("a", "Many visit PARIS  every year."),
        Passage("n1", "Berlin is in Germany."),
        Passage("n2", "Rome is in Italy."),
    ]
    questions = [
        Question("q1", "capital of France?", ("Paris",), ("g",)),
        Question("q2", "unlabelled", ("x",), ()),
    ]
    return RetrievalData("toy", corpus, questions, [])


def test_gold_first_and_answer_bearing_negatives_dropped():
    data = _data()
    ranked = {q.id: RankedList(["a", "g", "n1", "n2"], np.zeros(4)) for q in data.train}
    signals = GoldTeacher(num_candidates=5).score(data.train, ranked, data)
    assert [s.qid for s in signals] == ["q1"]  # the unlabelled question is dropped
    (signal,) = signals
    assert signal.candidate_ids == ["g", "n1", "n2"]
    assert signal.scores.tolist() == [1.0, 0.0, 0.0]
    assert signal.positive_ids == ("g",)


def test_keeping_answer_negatives_and_depth_limit():
    data = _data()
    ranked = {q.id: RankedList(["a", "g", "n1", "n2"], np.zeros(4)) for q in data.train}
    (signal,) = GoldTeacher(num_candidates=2, drop_answer_negatives=False).score(data.train, ranked, data)
    assert signal.candidate_ids == ["g", "a", "n1"]


def test_signal_validates_its_contract():
    with pytest.raises(ValueError, match="one per candidate"):
        TeacherSignal("q", ["a", "b"], np.zeros(3))
    with pytest.raises(ValueError, match="not among the candidates"):
        TeacherSignal("q", ["a"], np.zeros(1), positive_ids=("z",))
    with pytest.raises(ValueError, match="NaN"):
        TeacherSignal("q", ["a"], np.array([np.nan]))
    with pytest.raises(ValueError, match="opinion on none"):
        TeacherSignal("q", ["a"], np.array([-np.inf]))
    with pytest.raises(ValueError, match="opinion on none"):
        TeacherSignal("q", [], np.zeros(0))
    with pytest.raises(ValueError, match="duplicate"):
        TeacherSignal("q", ["a", "a"], np.zeros(2))


def test_labelled_hard_negatives_replace_the_mined_ones():
    """DPR's recipe: the question's labelled hard negatives (even one holding the answer string), mined ones never."""
    data = _data()
    labelled = Question("q1", "capital of France?", ("Paris",), ("g",), negative_ids=("a", "n2"))
    data.train[0] = labelled
    ranked = {q.id: RankedList(["n1", "g", "a", "n2"], np.zeros(4)) for q in data.train}
    (signal,) = GoldTeacher(num_candidates=5).score(data.train, ranked, data)
    assert signal.candidate_ids == ["g", "a", "n2"]  # n1 ranks first among the candidates, but is not labelled
    (mined,) = GoldTeacher(num_candidates=5, labelled_negatives=False).score(data.train, ranked, data)
    assert mined.candidate_ids == ["g", "n1", "n2"]  # the candidates without the answer, as before
