"""InfoNCE for questions with several positives (AAR's LM-preferred passages, several gold paragraphs)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ragdistill.losses.base import LossInputs, TemperatureLoss
from ragdistill.losses.checks import check_positive, check_score_shapes
from ragdistill.losses.masking import mean_over_rows, resolve_mask, tempered_logits
from ragdistill.utils.constraints import PositiveFloat

Reduction = Literal["mean", "sum"]
REDUCTIONS = ("mean", "sum")


def check_reduction(name: str, reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is one of ``REDUCTIONS``; ``name`` is what the error names."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name} must be one of {REDUCTIONS}, got {reduction!r}")


def multi_positive_info_nce(
    student_scores: Tensor,
    positive_mask: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 0.05,
    reduction: Reduction = "mean",
    skip_rows_without_positive: bool = False,
) -> Tensor:
    """Mean over rows of a contrastive loss with every positive of the row against its negatives.

    Formula (``x = s/τ``, ``P`` the row's positives, ``N`` its other masked-in columns):
    ``"mean"``: ``L_b = -1/|P| Σ_{p∈P} [ x_p - log(exp(x_p) + Σ_{n∈N} exp(x_n)) ]``, each positive against the
    negatives only, the other positives left out of its denominator;
    ``"sum"`` (MIL-NCE): ``L_b = -[ log Σ_{p∈P} exp(x_p) - log Σ_{j∈P∪N} exp(x_j) ]``.
    With exactly one positive both equal ``info_nce``. ``L`` averages ``L_b`` over the rows (with
    ``skip_rows_without_positive``, over the rows that hold a positive).

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        positive_mask: True at each row's positives (one or more inside the mask).
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        temperature: τ dividing the student scores.
        reduction: ``"mean"`` trains every positive to beat the negatives; ``"sum"`` is satisfied once the
            positives together hold the mass, so it may settle on the easiest positive.
        skip_rows_without_positive: A row without a positive adds nothing (G2R: a question whose generated
            unit was dropped learns from the KD term alone) instead of raising.

    Shapes:
        student_scores, positive_mask, mask: ``[B, N]`` (N = group size, or B·G with in-batch negatives).

    Returns:
        Scalar loss; a zero attached to the graph when no row may be used.

    Raises:
        ValueError: Bad shapes, a temperature ``<= 0``, an unknown reduction, or (unless
            ``skip_rows_without_positive``) a row without a positive inside the mask.
    """
    check_score_shapes(student_scores, positive_mask=positive_mask, mask=mask)
    check_positive("temperature", temperature)
    check_reduction("reduction", reduction)
    mask = resolve_mask(mask, student_scores)
    positives = positive_mask.bool() & mask  # [B, N]
    per_row = positives.sum(dim=1)  # [B]
    valid = per_row >= 1  # [B]
    if not skip_rows_without_positive and not torch.all(valid):
        bad = int((per_row == 0).nonzero()[0, 0])
        raise ValueError(
            f"multi_positive_info_nce expects at least one unmasked positive per row; row {bad} has none. "
            "A teacher without positives needs a distillation loss (kl, listnet, listmle, ranknet, margin_mse)."
        )
    negatives = mask & ~positives  # [B, N]
    logits = tempered_logits(student_scores, mask, temperature)  # [B, N]
    if reduction == "sum":
        # rows without a positive: a finite dummy, left out by mean_over_rows
        positive_lse = torch.where(valid[:, None] & ~positives, float("-inf"), logits).logsumexp(dim=1)  # [B]
        all_lse = logits.masked_fill(~mask, float("-inf")).logsumexp(dim=1)  # [B]
        return mean_over_rows(all_lse - positive_lse, valid)
    has_negative = negatives.any(dim=1)  # [B]
    # rows without a negative: logsumexp over finite dummies, then -inf (each positive is alone: loss 0)
    negative_lse = torch.where(has_negative[:, None], logits.masked_fill(~negatives, float("-inf")), 0.0)
    negative_lse = torch.where(has_negative, negative_lse.logsumexp(dim=1), float("-inf"))  # [B]
    per_positive = torch.logaddexp(logits, negative_lse[:, None]) - logits  # [B, N]
    return mean_over_rows(torch.where(positives, per_positive, 0.0).sum(dim=1) / per_row.clamp(min=1), valid)


class MultiPositiveInfoNCELoss(TemperatureLoss):
    """Contrastive loss for questions with one or more positives against hard and in-batch negatives.

    Args:
        temperature: τ; 0.05 (sentence-transformers' scale 20), as ``InfoNCELoss``, for cosine scores.
        reduction: ``"mean"`` (default): every positive must beat the negatives on its own, which is what AAR's
            several LM-preferred passages ask for; ``"sum"``: MIL-NCE, the positives' mass together.
        skip_rows_without_positive: Let a row without a positive add nothing instead of raising (for a
            weighted sum whose other term trains that row, as G2R's KD term does).

    References:
        Yu et al., Augmentation-Adapted Retriever Improves Generalization of Language Models as Generic
        Plug-In, ACL 2023, arXiv:2305.17331; Miech et al., End-to-End Learning of Visual Representations from
        Uncurated Instructional Videos (MIL-NCE), CVPR 2020, arXiv:1912.06430.

    Relations: equals ``InfoNCELoss`` with one positive per row; ``KLDistillLoss`` is the soft-label
    alternative when the teacher grades candidates instead of marking them.
    """

    citation = """@inproceedings{yu2023augmentation,
  title={Augmentation-Adapted Retriever Improves Generalization of Language Models as Generic Plug-In},
  author={Yu, Zichun and Xiong, Chenyan and Yu, Shi and Liu, Zhiyuan},
  booktitle={ACL}, year={2023}, note={arXiv:2305.17331}}
@inproceedings{miech2020end,
  title={End-to-End Learning of Visual Representations from Uncurated Instructional Videos},
  author={Miech, Antoine and Alayrac, Jean-Baptiste and Smaira, Lucas and Laptev, Ivan and Sivic, Josef
    and Zisserman, Andrew},
  booktitle={CVPR}, year={2020}, note={arXiv:1912.06430}}"""

    needs_positives = True

    def __init__(
        self, temperature: PositiveFloat = 0.05, reduction: Reduction = "mean", skip_rows_without_positive: bool = False
    ) -> None:
        super().__init__(temperature)
        check_reduction("loss.reduction", reduction)
        self.reduction: Reduction = reduction
        self.skip_rows_without_positive = skip_rows_without_positive

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar loss (``teacher_scores`` is unused: only the positives matter)."""
        return multi_positive_info_nce(
            inputs.student_scores,
            inputs.positives,
            inputs.mask,
            temperature=self.temperature,
            reduction=self.reduction,
            skip_rows_without_positive=self.skip_rows_without_positive,
        )
