"""Margin-MSE: regress the student's positive-vs-negative score margins onto the teacher's."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ragdistill.losses.base import LossInputs, ScoreLoss
from ragdistill.losses.checks import check_positive, check_score_shapes
from ragdistill.losses.masking import as_float, judged_columns, mean_over_rows, resolve_mask
from ragdistill.utils.constraints import PositiveFloat


def margin_mse_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    positive_mask: Tensor | None = None,
    *,
    student_scale: float,
) -> Tensor:
    """Mean over rows of the mean squared error between scaled student margins and teacher margins.

    Formula: ``L_b = 1/|P_b| Σ_{(p,j)∈P_b} (c·(s_p - s_j) - (t_p - t_j))²`` with ``c`` the student scale and
    ``P_b`` the pairs (anchor ``p``, other judged column ``j``). The anchors are the row's positives with a
    finite teacher score; a row without one (or every row, when ``positive_mask`` is ``None``) uses its
    teacher-top candidate (the first on ties). ``L`` averages ``L_b`` over the rows with a pair. In-batch
    (``-inf``) columns are ignored: they have no teacher margin to match.

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        teacher_scores: Teacher scores, higher = more useful; ``-inf`` inside the mask marks another
            question's passage. Never receives a gradient.
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        positive_mask: True at the row's positives, or ``None`` to anchor every row on its teacher-top.
        student_scale: ``c`` multiplying the student margins before they meet the teacher's.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with
        in-batch negatives); pairs are built as ``[B, N, N]``.

    Returns:
        Scalar loss; a zero attached to the graph when no row has two judged columns.

    Raises:
        ValueError: Bad shapes, ``student_scale <= 0``, or a NaN / ``+inf`` teacher score inside the mask.
    """
    check_score_shapes(student_scores, teacher_scores=teacher_scores, mask=mask, positive_mask=positive_mask)
    check_positive("student_scale", student_scale)
    mask = resolve_mask(mask, student_scores)
    judged = judged_columns(teacher_scores, mask)  # [B, N]
    student = torch.where(judged, as_float(student_scores), 0.0)  # [B, N]
    teacher = torch.where(judged, teacher_scores.detach().to(student.dtype), 0.0)  # [B, N]
    anchors = judged & positive_mask.bool() if positive_mask is not None else torch.zeros_like(judged)  # [B, N]
    top = torch.where(judged, teacher, float("-inf")).argmax(dim=1)  # [B]
    top_anchor = nn.functional.one_hot(top, judged.shape[1]).bool() & judged  # [B, N]
    anchors = torch.where(anchors.any(dim=1, keepdim=True), anchors, top_anchor)  # [B, N]
    others = judged & ~anchors  # [B, N]
    pairs = anchors[:, :, None] & others[:, None, :]  # [B, N, N]: (anchor p, other j)
    student_margins = student_scale * (student[:, :, None] - student[:, None, :])  # [B, N, N]
    teacher_margins = teacher[:, :, None] - teacher[:, None, :]  # [B, N, N]
    errors = torch.where(pairs, (student_margins - teacher_margins).square(), 0.0)  # [B, N, N]
    counts = pairs.sum(dim=(1, 2))  # [B]
    per_row = errors.sum(dim=(1, 2)) / counts.clamp(min=1)  # [B]
    return mean_over_rows(per_row, counts > 0)


class MarginMSELoss(ScoreLoss):
    """Distil the teacher's score margins between each positive and the other judged candidates.

    Args:
        student_scale: ``c``; 20.0 = 1/0.05, the student temperature of ``KLDistillLoss`` and InfoNCE. Cosine
            margins lie in [-2, 2] while LM log-probability margins span several nats. With ``c = 1/τ_s``
            (and the teacher unscaled, as KL's τ_t = 1) both losses want the same student: ``s/τ_s - t``
            constant across a row's judged candidates.

    References:
        Hofstätter et al., Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
        Distillation, arXiv:2010.02666.

    Relations: unlike ``KLDistillLoss`` it ignores in-batch (``-inf``) columns and matches margins, not a
    distribution; ``RankNetLoss`` keeps only the margins' signs.
    """

    citation = """@article{hofstatter2020improving,
  title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
  author={Hofst{\\"a}tter, Sebastian and Althammer, Sophia and Schr{\\"o}der, Michael and Sertkan, Mete
    and Hanbury, Allan},
  journal={arXiv preprint arXiv:2010.02666}, year={2020}}"""

    reads_teacher_scores = True

    def __init__(self, student_scale: PositiveFloat = 20.0) -> None:
        super().__init__()
        self.student_scale = check_positive("loss.student_scale", student_scale)

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar Margin-MSE loss; rows without a positive anchor on their teacher-top candidate."""
        return margin_mse_loss(
            inputs.student_scores, inputs.teacher, inputs.mask, inputs.positive_mask, student_scale=self.student_scale
        )
