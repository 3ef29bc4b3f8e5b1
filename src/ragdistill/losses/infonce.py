"""InfoNCE: softmax cross-entropy of the one positive against every other column (DPR's loss)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ragdistill.losses.base import LossInputs, TemperatureLoss
from ragdistill.losses.checks import check_positive, check_score_shapes
from ragdistill.losses.masking import resolve_mask


def info_nce(
    student_scores: Tensor, positive_mask: Tensor, mask: Tensor | None = None, *, temperature: float = 0.05
) -> Tensor:
    """Mean over rows of ``-log softmax(s/τ)[pos]`` with masked columns left out of the softmax.

    Formula: ``L = -1/B Σ_b [ s_b,pos(b)/τ - log Σ_{j: mask_bj} exp(s_bj/τ) ]``.

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        positive_mask: True at each row's single positive.
        mask: True where a column takes part (False: padding, or an in-batch passage that is also one of
            the row's positives). ``None`` = all columns.
        temperature: τ; 0.05 (sentence-transformers' scale 20) suits cosine scores in [-1, 1].

    Shapes:
        student_scores, positive_mask, mask: ``[B, N]`` (N = group size, or B·G with in-batch negatives).

    Returns:
        Scalar loss.

    Raises:
        ValueError: Bad shapes, or a row without exactly one positive (use ``multi_positive_infonce``).
    """
    check_score_shapes(student_scores, positive_mask=positive_mask, mask=mask)
    check_positive("temperature", temperature)
    mask = resolve_mask(mask, student_scores)
    positives = positive_mask.bool() & mask
    per_row = positives.sum(dim=1)
    if not torch.all(per_row == 1):
        bad = int((per_row != 1).nonzero()[0, 0])
        raise ValueError(
            f"info_nce expects exactly one unmasked positive per row; row {bad} has {int(per_row[bad])}. "
            "InfoNCE needs exactly one positive per question."
        )
    logits = (student_scores.float() / temperature).masked_fill(~mask, float("-inf"))  # [B, N]
    target = positives.float().argmax(dim=1)  # [B]
    return nn.functional.cross_entropy(logits, target)


class InfoNCELoss(TemperatureLoss):
    """Contrastive loss with one positive per question against hard and in-batch negatives.

    Args:
        temperature: τ dividing the student's similarities.

    Relations: its soft-label counterpart is a KL distillation loss, which matches the whole teacher
    distribution over the candidates instead of one positive.
    """

    citation = """@inproceedings{karpukhin2020dense,
  title={Dense Passage Retrieval for Open-Domain Question Answering},
  author={Karpukhin, Vladimir and O{\\u{g}}uz, Barlas and Min, Sewon and others},
  booktitle={EMNLP}, year={2020}, note={arXiv:2004.04906}}"""

    needs_positives = True
    single_positive = True

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar InfoNCE loss (``teacher_scores`` is unused: only positives matter)."""
        return info_nce(inputs.student_scores, inputs.positives, inputs.mask, temperature=self.temperature)
