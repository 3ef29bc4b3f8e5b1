"""The attention teacher's score → KL target mapping: the papers' mean (default) against the legacy log-mass.

The reader's per-token attention is replaced by a known vector (``output_attention`` monkeypatched), so the
scores the real teacher emits can be checked against per-passage means and sums computed here by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.teachers import attention
from ragdistill.teachers.attention import AttentionTeacher

FAST: dict[str, Any] = {"precision": "32-true", "accelerator": "cpu", "max_passage_tokens": 96}
CONF = Path(__file__).resolve().parents[2] / "conf"

# per-token attention of each passage: the long one gets little per token but, over ~60 tokens, the most mass
PASSAGES = {
    "long": (" ".join(["river bank water"] * 20), 0.010),
    "short": ("the cat sat", 0.050),
    "mid": ("dogs bark at night in the old town square", 0.020),
}
OUTSIDE = 0.3  # instruction, question and answer tokens: must never enter a passage's score


@pytest.fixture
def setting():
    passages = [Passage(pid, text) for pid, (text, _) in PASSAGES.items()]
    data = RetrievalData("toy", passages, [], [])
    question = Question("q", "who sat?", answers=("the cat",))
    candidates = {"q": RankedList(list(PASSAGES), np.zeros(len(PASSAGES)))}
    return data, question, candidates


@pytest.fixture
def known_attention(monkeypatch):
    """Replace the reader's attention by a known ``[b, T]`` vector; return what each prompt received."""
    seen: list[tuple[torch.Tensor, list[tuple[int, int]]]] = []
    levels = [level for _, level in PASSAGES.values()]

    def fake(model, batch, options, first_token_only):
        values = torch.full(batch["input_ids"].shape, OUTSIDE)
        for row, example in enumerate(batch["examples"]):
            for level, (start, end) in zip(levels, example.passage_spans, strict=True):
                wiggle = 1 + 0.5 * torch.sin(torch.arange(end - start, dtype=torch.float32))  # tokens differ
                values[row, start:end] = level * wiggle
            seen.append((values[row].clone(), list(example.passage_spans)))
        return values

    monkeypatch.setattr(attention, "output_attention", fake)
    return seen


def _by_hand(seen):
    """Each passage's mean and sum of the known attention, in candidate order (no shuffle: prompt order)."""
    (values, spans), *_ = seen
    means = np.array([values[start:end].mean().item() for start, end in spans])
    sums = np.array([values[start:end].sum().item() for start, end in spans])
    return means, sums


def _softmax(x: np.ndarray, tau: float) -> np.ndarray:
    return torch.softmax(torch.as_tensor(x, dtype=torch.float64) / tau, dim=0).numpy()


def test_default_scores_are_passage_means_and_the_target_is_a_softmax_over_them(tiny_llama, setting, known_attention):
    data, question, candidates = setting
    signal = AttentionTeacher(tiny_llama, num_candidates=3, **FAST).score([question], candidates, data)[0]
    means, sums = _by_hand(known_attention)
    assert signal.candidate_ids == list(PASSAGES)
    np.testing.assert_allclose(signal.scores, means, rtol=1e-5)  # the mean: not the sum, no log
    assert not np.allclose(signal.scores, sums) and not np.allclose(signal.scores, np.log(means))
    for tau in (1.0, 0.01):  # the papers' target p ∝ exp(mean / τ_t), whatever the temperature
        target = _softmax(signal.scores, tau)
        np.testing.assert_allclose(target, np.exp(means / tau) / np.exp(means / tau).sum(), rtol=1e-4)
    assert _softmax(signal.scores, 1.0).max() < 0.35  # small α·‖v‖: near-uniform at τ_t = 1, hence Atlas's 0.01


def test_legacy_log_mass_target_is_the_normalised_attention_mass(tiny_llama, setting, known_attention):
    data, question, candidates = setting
    teacher = AttentionTeacher(tiny_llama, num_candidates=3, passage_reduction="sum", log_score=True, **FAST)
    signal = teacher.score([question], candidates, data)[0]
    _, sums = _by_hand(known_attention)
    np.testing.assert_allclose(signal.scores, np.log(sums), rtol=1e-5)
    np.testing.assert_allclose(_softmax(signal.scores, 1.0), sums / sums.sum(), rtol=1e-4)  # p ∝ mass at τ_t = 1


def test_the_two_forms_rank_a_long_low_attention_passage_differently(tiny_llama, setting, known_attention):
    """The long passage takes the most attention mass, the short one the most attention per token."""
    data, question, candidates = setting
    papers = AttentionTeacher(tiny_llama, num_candidates=3, **FAST).score([question], candidates, data)[0]
    legacy = AttentionTeacher(tiny_llama, num_candidates=3, passage_reduction="sum", log_score=True, **FAST)
    legacy_signal = legacy.score([question], candidates, data)[0]
    means, sums = _by_hand(known_attention)
    assert np.argmax(sums) == 0 and np.argmax(means) == 1, "the setting: long = most mass, short = best mean"
    assert papers.candidate_ids[int(np.argmax(papers.scores))] == "short"
    assert legacy_signal.candidate_ids[int(np.argmax(legacy_signal.scores))] == "long"
    assert _softmax(papers.scores, 0.01)[1] > _softmax(papers.scores, 0.01)[0]
    assert _softmax(legacy_signal.scores, 1.0)[0] > _softmax(legacy_signal.scores, 1.0)[1]


def test_a_log_of_pre_softmax_scores_is_refused(tiny_llama):
    with pytest.raises(ValueError, match="log_score"):
        AttentionTeacher(tiny_llama, pre_softmax=True, value_norm=False, log_score=True)


def test_configs_default_to_the_papers_form_at_atlas_temperature():
    teacher = OmegaConf.load(CONF / "teacher" / "attention.yaml")
    assert (teacher.passage_reduction, teacher.log_score) == ("mean", False)
    assert OmegaConf.load(CONF / "experiment" / "atlas_attention.yaml").loss.tau_teacher == 0.01
