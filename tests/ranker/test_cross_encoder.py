"""The cross-encoder ranker: one score per (question, passage) pair, saved and loaded with its head."""

from __future__ import annotations

import pytest
import torch

from ragdistill.losses.listmle import ListMLELoss
from ragdistill.ranker.cross_encoder_module import CrossEncoderRanker


def test_scores_are_per_group_and_survive_save_and_load(tmp_path, tiny_encoder_dir):
    torch.manual_seed(0)
    ranker = CrossEncoderRanker(str(tiny_encoder_dir), max_length=32).eval()
    questions = ["who?", "where is it?"]
    passages = ["a b c", "d e", "f", "g h i j"]
    with torch.no_grad():
        scores = ranker.score(questions, passages)
    assert scores.shape == (2, 2) and scores.dtype == torch.float32
    ranker.save(tmp_path / "ranker")
    loaded = CrossEncoderRanker(str(tmp_path / "ranker"), max_length=32).eval()
    with torch.no_grad():
        assert torch.allclose(loaded.score(questions, passages), scores, atol=1e-6)  # the head came back too
    with pytest.raises(ValueError, match="do not split into groups"):
        ranker.score(questions, passages[:3])


def test_listmle_steps_move_the_ranker_toward_the_teacher_order(tiny_encoder_dir):
    torch.manual_seed(0)
    ranker = CrossEncoderRanker(str(tiny_encoder_dir), max_length=32, loss=ListMLELoss(temperature=1.0), lr=1e-3)
    batch = {
        "queries": ["q one", "q two"],
        "passages": ["alpha", "beta", "gamma", "alpha", "beta", "gamma"],
        "teacher_scores": torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]),
        "group_mask": torch.ones(2, 3, dtype=torch.bool),
    }
    optimizer = ranker.configure_optimizers()
    ranker.log = lambda *args, **kwargs: None  # no trainer attached
    losses = []
    for _ in range(20):
        loss = ranker.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5  # log 3! ≈ 1.79 at random; learnt orders approach 0
