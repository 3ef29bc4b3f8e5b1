"""ListNet: cross entropy between the teacher's and the student's top-one probabilities."""

from __future__ import annotations

from torch import Tensor

from ragdistill.losses.base import LossInputs, SoftTargetLoss
from ragdistill.losses.masking import mean_over_rows, soft_distributions


def list_net(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    tau_student: float,
    tau_teacher: float,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """Mean over rows of the top-one cross entropy ``-Σ_j p_t,j log p_s,j``.

    Formula: ``L = -1/|V| Σ_{b∈V} Σ_{j∈J_b} p_t,bj log p_s,bj`` with ``J_b`` the row's judged columns,
    ``p_t = softmax_J(t/τ_t)``, ``p_s = softmax_J(s/τ_s)`` (with ``in_batch`` also over the row's in-batch
    columns, where ``p_t = 0``), and ``V`` the rows with a judged column.

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        teacher_scores: Teacher scores, higher = more useful; ``-inf`` inside the mask marks another
            question's passage. Never receives a gradient.
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        tau_student: τ_s dividing the student scores.
        tau_teacher: τ_t dividing the teacher scores.
        in_batch: The student's softmax over the in-batch columns too (see ``student_columns``).
        positive_mask: True at the row's positives: with ``in_batch``, an unjudged positive stays out.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with in-batch
        negatives).

    Returns:
        Scalar loss (its minimum is the teacher entropy, not 0); a zero attached to the graph when no row
        has a judged column.

    Raises:
        ValueError: Bad shapes, a temperature ``<= 0``, or a NaN / ``+inf`` teacher score inside the mask.
    """
    log_p_s, p_t, valid = soft_distributions(
        student_scores,
        teacher_scores,
        mask,
        tau_student=tau_student,
        tau_teacher=tau_teacher,
        in_batch=in_batch,
        positive_mask=positive_mask,
    )
    per_row = -(p_t * log_p_s).sum(dim=1)  # [B]
    return mean_over_rows(per_row, valid)


class ListNetLoss(SoftTargetLoss):
    """Train the student's top-one probabilities on the teacher's (listwise learning to rank).

    Args:
        tau_student: τ_s; 0.05 (as InfoNCE and KL) so cosine scores can form a peaked softmax.
        tau_teacher: τ_t; 1.0 keeps LM log-probabilities as the LM's own normalised likelihoods.
        in_batch_negatives: Also spread the student's softmax over the batch's other passages; off by default.

    References:
        Cao et al., Learning to Rank: From Pairwise Approach to Listwise Approach, ICML 2007.

    Relations: equals ``KLDistillLoss`` plus the teacher entropy, which is constant for the student, so both
    give the same gradients; KL reads 0 at the optimum, which makes it the easier one to log.
    """

    citation = """@inproceedings{cao2007learning,
  title={Learning to Rank: From Pairwise Approach to Listwise Approach},
  author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
  booktitle={ICML}, pages={129--136}, year={2007}}"""

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar ListNet loss (``positive_mask`` is unused)."""
        return list_net(
            inputs.student_scores, inputs.teacher, inputs.mask, positive_mask=inputs.positive_mask, **self.temperatures
        )
