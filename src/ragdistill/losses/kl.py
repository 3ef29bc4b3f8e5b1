"""KL distillation: match the student's softmax over the candidates to the teacher's (Atlas, REPLUG)."""

from __future__ import annotations

import torch
from torch import Tensor

from ragdistill.losses.base import LossInputs, SoftTargetLoss
from ragdistill.losses.masking import mean_over_rows, soft_distributions


def kl_distill(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    tau_student: float,
    tau_teacher: float,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """Mean over rows of ``KL(p_t ‖ p_s)`` between the teacher's and the student's softmax over the candidates.

    Formula: ``L = 1/|V| Σ_{b∈V} Σ_{j∈J_b} p_t,bj (log p_t,bj - log p_s,bj)`` with ``J_b`` the row's judged
    columns (the teacher gave them a finite score), ``p_t = softmax_J(t/τ_t)``, ``p_s = softmax_J(s/τ_s)``,
    and ``V`` the rows with a judged column. With ``in_batch`` the student's softmax also runs over the
    row's unjudged columns (in-batch negatives, ``p_t = 0``), so the student is pushed to put no mass on them.

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        teacher_scores: Teacher scores, higher = more useful (log-probabilities for LM teachers); ``-inf``
            inside the mask marks another question's passage. Never receives a gradient.
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        tau_student: τ_s dividing the student scores.
        tau_teacher: τ_t dividing the teacher scores.
        in_batch: The student's softmax over the in-batch columns too (not in the papers; see ``student_columns``).
        positive_mask: True at the row's positives: with ``in_batch``, an unjudged positive stays out.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with in-batch
        negatives).

    Returns:
        Scalar loss; a zero attached to the graph when no row has a judged column.

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
    # xlogy: a teacher probability that underflows to 0 contributes 0, never 0 · -inf
    per_row = (torch.special.xlogy(p_t, p_t) - p_t * log_p_s).sum(dim=1)  # [B]
    return mean_over_rows(per_row, valid)


class KLDistillLoss(SoftTargetLoss):
    """Distil the teacher's distribution over each question's candidates into the student's softmax.

    Args:
        tau_student: τ_s; 0.05 (scale 20, as InfoNCE) lets cosine scores in [-1, 1] express a peaked
            distribution: at τ_s = 1 the student softmax could never be sharper than ``e²`` between two
            candidates.
        tau_teacher: τ_t; 1.0 keeps an LM teacher's log-probabilities as they are, i.e. ``p_t`` is the LM's
            own normalised likelihood of the answer given each passage (Atlas' and REPLUG's choice).
        in_batch_negatives: Also spread the student's softmax over the batch's other passages (``loss=kl_in_batch``,
            this project's form before it followed the papers); off: both softmaxes over the same K candidates.

    References:
        Izacard & Grave, Distilling Knowledge from Reader to Retriever for Question Answering, ICLR 2021,
        arXiv:2012.04584; Izacard et al., Atlas, arXiv:2208.03299; Shi et al., REPLUG, arXiv:2301.12652.

    Relations: ``ListNetLoss`` is the same objective less the teacher entropy (equal student gradients);
    ``InfoNCELoss`` is its hard-label counterpart (a one-hot teacher over the positive).
    """

    citation = """@inproceedings{izacard2021distilling,
  title={Distilling Knowledge from Reader to Retriever for Question Answering},
  author={Izacard, Gautier and Grave, Edouard},
  booktitle={ICLR}, year={2021}, note={arXiv:2012.04584}}
@article{izacard2022atlas,
  title={Atlas: Few-shot Learning with Retrieval Augmented Language Models},
  author={Izacard, Gautier and Lewis, Patrick and Lomeli, Maria and Hosseini, Lucas and Petroni, Fabio
    and Schick, Timo and Dwivedi-Yu, Jane and Joulin, Armand and Riedel, Sebastian and Grave, Edouard},
  journal={arXiv preprint arXiv:2208.03299}, year={2022}}
@article{shi2023replug,
  title={REPLUG: Retrieval-Augmented Black-Box Language Models},
  author={Shi, Weijia and Min, Sewon and Yasunaga, Michihiro and Seo, Minjoon and James, Rich and Lewis, Mike
    and Zettlemoyer, Luke and Yih, Wen-tau},
  journal={arXiv preprint arXiv:2301.12652}, year={2023}}"""

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar KL loss (``positive_mask`` is unused: the teacher's scores say everything)."""
        return kl_distill(
            inputs.student_scores, inputs.teacher, inputs.mask, positive_mask=inputs.positive_mask, **self.temperatures
        )
