"""arXiv:2402.11794's indicators: token marking, the per-question figures, the weak-reader warning, the teacher."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from ragdistill.data.signal import TeacherSignal
from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.teachers import attention
from ragdistill.teachers.attention import AttentionTeacher
from ragdistill.teachers.attention_indicators import (
    ANSWER_MASS,
    ANSWER_SHARE,
    QUESTION_MASS,
    QUESTION_SHARE,
    TokenMarks,
    answer_patterns,
    attention_indicators,
    mark_tokens,
    prompt_marks,
    question_words,
    reader_indicators,
)

FAST = {"precision": "32-true", "accelerator": "cpu", "max_passage_tokens": 48}
INDICATOR_KEYS = {ANSWER_MASS, ANSWER_SHARE, QUESTION_MASS, QUESTION_SHARE}
WARNING = "too weak to teach"


def _marks(answer: list[int], question: list[int]) -> TokenMarks:
    return TokenMarks(np.array(answer, dtype=bool), np.array(question, dtype=bool))


def _signal(qid: str, diagnostics: dict[str, float]) -> TeacherSignal:
    return TeacherSignal(qid, ["a", "b"], np.array([0.0, -1.0]), diagnostics=diagnostics)


def test_question_words_drop_stop_words_and_case():
    assert question_words("What is the Capital city of FRANCE?") == {"capital", "city", "france"}


def test_marks_cover_whole_word_answer_occurrences_and_question_words():
    text = "Paris, capital of France; Parisians and paris."
    # one "token" per word or punctuation mark, as a tokenizer's offsets would give them
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]
    marks = mark_tokens(text, offsets, answer_patterns(["PARIS", " "]), question_words("Which capital is it?"))
    tokens = [text[s:e] for s, e in offsets]
    assert [t for t, m in zip(tokens, marks.answer, strict=True) if m] == ["Paris", "paris"]  # not "Parisians"
    assert [t for t, m in zip(tokens, marks.question, strict=True) if m] == ["capital"]


def test_prompt_marks_align_with_a_real_tokenizer_and_refuse_other_ids(bert_tokenizer):
    texts = ["[1] The capital of France is Paris.\n", "[2] Lyon is not Paris.\n"]
    ids = [bert_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    marks = prompt_marks(bert_tokenizer, texts, ids, ["Paris"], "capital of France?")
    assert marks is not None
    tokens = [token for row in ids for token in bert_tokenizer.convert_ids_to_tokens(row)]
    assert [t for t, m in zip(tokens, marks.answer, strict=True) if m] == ["paris", "paris"]
    assert [t for t, m in zip(tokens, marks.question, strict=True) if m] == ["capital", "france"]
    truncated = prompt_marks(bert_tokenizer, texts, [ids[0][:4], ids[1]], ["Paris"], "")  # a cut passage
    assert truncated is not None and len(truncated.answer) == 4 + len(ids[1])
    assert truncated.answer.sum() == 1  # the first passage's Paris was cut off
    assert prompt_marks(bert_tokenizer, texts, [ids[0][::-1], ids[1]], ["Paris"], "") is None  # not its tokens


def test_indicators_are_mass_and_share_of_each_token_set():
    attention_row = np.array([0.1, 0.5, 0.1, 0.2, 0.1])  # [N]
    figures = attention_indicators(attention_row, _marks([0, 1, 0, 0, 0], [0, 0, 0, 1, 1]))
    assert figures[ANSWER_MASS] == pytest.approx(0.5) and figures[ANSWER_SHARE] == pytest.approx(0.2)
    assert figures[QUESTION_MASS] == pytest.approx(0.3) and figures[QUESTION_SHARE] == pytest.approx(0.4)
    unnormalised = attention_indicators(attention_row * 7.0, _marks([0, 1, 0, 0, 0], [0, 0, 0, 1, 1]))
    assert unnormalised == pytest.approx(figures)  # α·‖v‖ is not a distribution: shares of it still are


def test_an_empty_token_set_leaves_its_keys_out():
    figures = attention_indicators(np.ones(3), _marks([0, 0, 0], [1, 0, 0]))
    assert set(figures) == {QUESTION_MASS, QUESTION_SHARE}
    assert attention_indicators(np.zeros(3), _marks([1, 0, 0], [1, 0, 0])) == {}  # no attention at all
    assert attention_indicators(np.array([1.0, -2.0, 1.0]), _marks([1, 0, 0], [1, 0, 0])) == {}  # logits
    with pytest.raises(ValueError, match="one mark per passage token"):
        attention_indicators(np.ones(4), _marks([1, 0, 0], [1, 0, 0]))


def test_lift_is_a_ratio_of_means_and_a_strong_reader_draws_no_warning(caplog):
    signals = [
        _signal("q1", {ANSWER_MASS: 0.4, ANSWER_SHARE: 0.1, QUESTION_MASS: 0.3, QUESTION_SHARE: 0.2}),
        _signal("q2", {ANSWER_MASS: 0.2, ANSWER_SHARE: 0.1}),  # no question word in its passages
        _signal("q3", {}),  # no answer occurrence either: not counted
    ]
    with caplog.at_level(logging.WARNING):
        figures = reader_indicators(signals)
    assert figures["teacher/answer_attention_lift"] == pytest.approx(0.3 / 0.1)
    assert figures["teacher/question_attention_lift"] == pytest.approx(0.3 / 0.2)
    assert figures["teacher/answer_indicator_questions"] == 2
    assert WARNING not in caplog.text
    assert reader_indicators([_signal("q", {"lm_positive_is_gold": 1.0})]) == {}  # another teacher: nothing


def test_a_weak_reader_draws_one_warning_naming_its_figures(caplog):
    weak = [
        _signal(f"q{i}", {ANSWER_MASS: 0.05, ANSWER_SHARE: 0.1, QUESTION_MASS: 0.5, QUESTION_SHARE: 0.2})
        for i in range(3)
    ]
    with caplog.at_level(logging.WARNING):
        figures = reader_indicators(weak)
    assert figures["teacher/answer_attention_lift"] == pytest.approx(0.5)
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "answer tokens get 5.0%" in message and "lift 0.50" in message and "lm.path=" in message
    assert "question tokens" not in message  # its question lift (2.5) is fine


def test_a_lift_barely_above_one_is_still_chance(caplog):
    """A random reader's lifts scatter around 1 (0.99-1.02 measured): the margin of WEAK_LIFT catches them."""
    noisy = [_signal("q", {ANSWER_MASS: 0.105, ANSWER_SHARE: 0.1})]  # lift 1.05
    with caplog.at_level(logging.WARNING):
        reader_indicators(noisy, weak_lift=1.0)
        assert WARNING not in caplog.text
        reader_indicators(noisy)
    assert WARNING in caplog.text and "lift 1.05" in caplog.text


@pytest.fixture(scope="module")
def setting(fixture_pools):
    return fixture_pools(6)


def test_attention_signals_carry_the_indicators(tiny_llama, setting):
    data, questions, candidates = setting
    teacher = AttentionTeacher(tiny_llama, num_candidates=5, value_norm=False, **FAST)
    signals = teacher.score(questions, candidates, data)
    with_answers = [s for s in signals if ANSWER_MASS in s.diagnostics]
    assert with_answers, "the fixture's BM25 pools hold answer occurrences"
    for signal in signals:
        assert set(signal.diagnostics) <= INDICATOR_KEYS
        for mass, share in ((ANSWER_MASS, ANSWER_SHARE), (QUESTION_MASS, QUESTION_SHARE)):
            assert (mass in signal.diagnostics) == (share in signal.diagnostics)
            if mass in signal.diagnostics:
                assert 0 <= signal.diagnostics[mass] <= 1 and 0 < signal.diagnostics[share] < 1
    quality = teacher_quality(signals, questions, data) | teacher.quality(signals)
    assert quality[f"teacher/{ANSWER_MASS}"] == pytest.approx(
        np.mean([s.diagnostics[ANSWER_MASS] for s in with_answers])
    )
    assert quality["teacher/answer_attention_lift"] > 0


def test_pre_softmax_scores_carry_no_indicators(tiny_llama, setting):
    data, questions, candidates = setting
    teacher = AttentionTeacher(tiny_llama, num_candidates=3, pre_softmax=True, value_norm=False, **FAST)
    assert all(not s.diagnostics for s in teacher.score(questions[:2], candidates, data))


def test_a_reader_that_attends_uniformly_is_flagged_as_too_weak(tiny_llama, setting, monkeypatch, caplog):
    """Uniform attention puts on answer tokens exactly their share: lift 1, no better than chance."""
    data, questions, candidates = setting

    def uniform(model, batch, options, first_token_only):
        return torch.ones(batch["input_ids"].shape, dtype=torch.float32)  # [b, T]

    monkeypatch.setattr(attention, "output_attention", uniform)
    teacher = AttentionTeacher(tiny_llama, num_candidates=5, **FAST)
    signals = teacher.score(questions, candidates, data)
    with caplog.at_level(logging.WARNING):
        quality = teacher_quality(signals, questions, data) | teacher.quality(signals)
    assert quality["teacher/answer_attention_lift"] == pytest.approx(1.0)
    assert sum(WARNING in r.getMessage() for r in caplog.records) == 1
