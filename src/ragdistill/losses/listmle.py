"""ListMLE: the Plackett–Luce likelihood of the teacher's ranking under the student's scores."""

from __future__ import annotations

import torch
from torch import Tensor

from ragdistill.losses.base import LossInputs, TemperatureLoss
from ragdistill.losses.checks import check_top_k
from ragdistill.losses.masking import mean_over_rows, ranking_inputs
from ragdistill.utils.constraints import PositiveFloat


def list_mle(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    temperature: float,
    top_k: int | None = None,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """Mean over rows of the negative Plackett–Luce log-likelihood of the teacher's order (or of its top k).

    Formula: with ``π`` the judged columns sorted by teacher score (descending),
    ``L_b = -Σ_k [ s_π(k)/τ - log Σ_{j≥k} exp(s_π(j)/τ) ]``, averaged over the rows with a judged column: the
    likelihood of the teacher's permutation of its own candidates (Xia et al.). With ``in_batch`` the row's
    in-batch (``-inf``) columns ``U`` join every normaliser, ``+ Σ_{u∈U} exp(s_u/τ)``, as an unordered tail
    that each judged candidate must beat; they are never a position of their own.
    Teacher ties are broken in column order; the likelihood of a tied pair depends on that order, which
    is as arbitrary as any other. With ``top_k`` the sum runs over the first ``k`` positions only (top-k
    ListMLE, Xia et al. 2009): the student must put the teacher's top k first and in order, and the order
    among the rest is not taught — for a teacher whose tail order is noise (a small LM's likelihoods).

    Args:
        student_scores: Student similarities (cosines for a normalised retriever).
        teacher_scores: Teacher scores, higher = more useful; ``-inf`` inside the mask marks another
            question's passage. Only their order matters. Never receives a gradient.
        mask: True where a column takes part; False columns have no influence. ``None`` = all columns.
        temperature: τ dividing the student scores.
        top_k: Positions of the teacher's order that count (``None``: all; ``1`` is InfoNCE on the teacher's
            top-1 against every other column).
        in_batch: Put the in-batch columns into every normaliser (not in the paper; see ``student_columns``).
        positive_mask: True at the row's positives: with ``in_batch``, an unjudged positive stays out.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with in-batch
        negatives).

    Returns:
        Scalar loss (a sum over positions per row, as in the paper); a zero attached to the graph when no
        row has a judged column.

    Raises:
        ValueError: Bad shapes, a temperature or ``top_k`` ``<= 0``, or a NaN / ``+inf`` teacher score inside
            the mask.
    """
    check_top_k("loss.top_k", top_k)
    logits, teacher, mask, judged = ranking_inputs(
        student_scores, teacher_scores, mask, temperature=temperature, in_batch=in_batch, positive_mask=positive_mask
    )
    # Sort key: excluded columns first (+inf), so they sit in no judged position's suffix; then the judged
    # columns by teacher score; then the in-batch tail (-inf), which sits in every judged suffix.
    key = torch.where(judged, teacher, torch.where(mask, float("-inf"), float("inf")))  # [B, N]
    order = key.argsort(dim=1, descending=True, stable=True)  # [B, N]
    ranked = logits.gather(1, order)  # [B, N]
    ranked_judged = judged.gather(1, order)  # [B, N]
    if top_k is not None:  # number the judged positions in the teacher's order; keep the first k
        ranked_judged = ranked_judged & (ranked_judged.cumsum(dim=1) <= top_k)
    # log Σ_{j ≥ k} exp(logit_j): a reverse cumulative logsumexp; every entry is finite, so are its gradients
    suffix_lse = ranked.flip(1).logcumsumexp(dim=1).flip(1)  # [B, N]
    per_row = torch.where(ranked_judged, suffix_lse - ranked, 0.0).sum(dim=1)  # [B]
    return mean_over_rows(per_row, judged.any(dim=1))


class ListMLELoss(TemperatureLoss):
    """Maximise the likelihood of the teacher's ranking of the candidates under a Plackett–Luce student.

    Args:
        temperature: τ; 0.05 (as InfoNCE). Cosine scores lie in [-1, 1]: at τ = 1 no Plackett–Luce choice can
            be more than ``e²`` likelier than another, so the loss stays near ``log N!`` whatever the order.
        top_k: Only the teacher's first ``k`` positions are taught (top-k ListMLE); ``None``: the whole order.
        in_batch_negatives: Also put the batch's other passages into every normaliser; off by default.

    References:
        Xia et al., Listwise Approach to Learning to Rank: Theory and Algorithm, ICML 2008.
        Xia et al., Statistical Consistency of Top-k Ranking, NeurIPS 2009 (the top-k variant).

    Relations: uses only the teacher's order, not its margins (unlike ``KLDistillLoss``, ``ListNetLoss`` and
    ``MarginMSELoss``), so it is indifferent to the teacher's temperature; ``RankNetLoss`` is its pairwise
    counterpart.
    """

    citation = """@inproceedings{xia2008listwise,
  title={Listwise Approach to Learning to Rank: Theory and Algorithm},
  author={Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang},
  booktitle={ICML}, pages={1192--1199}, year={2008}}
@inproceedings{xia2009topk,
  title={Statistical Consistency of Top-k Ranking},
  author={Xia, Fen and Liu, Tie-Yan and Li, Hang},
  booktitle={NeurIPS}, year={2009}}"""

    reads_teacher_scores = True

    def __init__(
        self, temperature: PositiveFloat = 0.05, top_k: int | None = None, in_batch_negatives: bool = False
    ) -> None:
        super().__init__(temperature)
        self.top_k = check_top_k("loss.top_k", top_k)
        self.in_batch_negatives = in_batch_negatives

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar ListMLE loss (``positive_mask`` is unused)."""
        return list_mle(
            inputs.student_scores,
            inputs.teacher,
            inputs.mask,
            temperature=self.temperature,
            top_k=self.top_k,
            in_batch=self.in_batch_negatives,
            positive_mask=inputs.positive_mask,
        )
