"""RankNet: logistic loss on every pair of candidates the teacher orders."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ragdistill.losses.base import LossInputs, TemperatureLoss
from ragdistill.losses.masking import mean_over_rows, ranking_inputs
from ragdistill.utils.constraints import PositiveFloat


def rank_net(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    temperature: float,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """Mean over rows of the mean logistic loss over the pairs the teacher orders.

    Formula: ``L_b = 1/|P_b| Σ_{(i,j)∈P_b} log(1 + exp(-(s_i - s_j)/τ))`` with ``P_b`` the pairs of judged
    columns where ``t_i > t_j`` (teacher ties form no pair). With ``in_batch`` a ``-inf`` in-batch column also
    lies below every judged one (two in-batch columns form no pair). ``L`` averages ``L_b`` over the rows with
    a pair; averaging per row first gives every question the same weight, however many pairs it makes.

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        teacher_scores: Teacher scores, higher = more useful; ``-inf`` inside the mask marks another
            question's passage. Only their order matters. Never receives a gradient.
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        temperature: τ dividing the student's score differences.
        in_batch: Pair every judged column with the in-batch columns too (see ``student_columns``).
        positive_mask: True at the row's positives: with ``in_batch``, an unjudged positive stays out.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with in-batch
        negatives); pairs are built as ``[B, N, N]``.

    Returns:
        Scalar loss; a zero attached to the graph when no row has a pair.

    Raises:
        ValueError: Bad shapes, a temperature ``<= 0``, or a NaN / ``+inf`` teacher score inside the mask.
    """
    logits, teacher, mask, judged = ranking_inputs(
        student_scores, teacher_scores, mask, temperature=temperature, in_batch=in_batch, positive_mask=positive_mask
    )
    teacher = torch.where(judged, teacher, float("-inf"))  # [B, N]
    both = mask[:, :, None] & mask[:, None, :]  # [B, N, N]
    pairs = both & (teacher[:, :, None] > teacher[:, None, :])  # [B, N, N]; -inf > -inf is False: no pair
    margins = torch.where(pairs, logits[:, :, None] - logits[:, None, :], 0.0)  # [B, N, N]
    pair_losses = torch.where(pairs, nn.functional.softplus(-margins), 0.0)  # [B, N, N]
    counts = pairs.sum(dim=(1, 2))  # [B]
    per_row = pair_losses.sum(dim=(1, 2)) / counts.clamp(min=1)  # [B]
    return mean_over_rows(per_row, counts > 0)


class RankNetLoss(TemperatureLoss):
    """Teach the student every pairwise preference of the teacher with a logistic loss.

    Args:
        temperature: τ; 0.05 (as InfoNCE). Cosine differences lie in [-2, 2]: at τ = 1 the logistic never
            saturates, so correctly ordered pairs keep pulling as hard as wrong ones; at 0.05 a pair ordered
            by ~0.15 is done.
        in_batch_negatives: Also pair each judged candidate with the batch's other passages; off by default.

    References:
        Burges et al., Learning to Rank using Gradient Descent, ICML 2005.

    Relations: the pairwise counterpart of ``ListMLELoss`` (both use only the teacher's order);
    ``MarginMSELoss`` also matches the teacher's margins.
    """

    citation = """@inproceedings{burges2005learning,
  title={Learning to Rank using Gradient Descent},
  author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole
    and Hullender, Greg},
  booktitle={ICML}, pages={89--96}, year={2005}}"""

    reads_teacher_scores = True

    def __init__(self, temperature: PositiveFloat = 0.05, in_batch_negatives: bool = False) -> None:
        super().__init__(temperature)
        self.in_batch_negatives = in_batch_negatives

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar RankNet loss."""
        return rank_net(
            inputs.student_scores,
            inputs.teacher,
            inputs.mask,
            temperature=self.temperature,
            in_batch=self.in_batch_negatives,
            positive_mask=inputs.positive_mask,
        )
