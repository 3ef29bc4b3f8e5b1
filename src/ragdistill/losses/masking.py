"""Masking helpers shared by the distillation losses.

Two rules hold in every loss: a column outside ``mask`` (padding, excluded in-batch passages) has no
influence at all, not even through NaN or inf garbage in its scores; and a ``-inf`` teacher score inside
the mask (``NO_OPINION``) means the teacher did not score that column: another question's passage (an
in-batch negative), or a positive the teacher never saw (a generated unit, a gold passage outside the pool).

The distillation losses read, by default, only the columns the teacher scored: student and teacher form
their distributions over the same K candidates, as in the papers (:func:`student_columns`). Their
``in_batch`` form also puts the batch's other passages into the student's softmax; contrastive losses
(InfoNCE) always use every column of the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ragdistill.losses.checks import check_positive, check_score_shapes


def as_float(scores: Tensor) -> Tensor:
    """Return ``scores`` as float32 or wider: bf16/fp16 similarities would tie close hard negatives."""
    return scores.to(torch.promote_types(scores.dtype, torch.float32))


def resolve_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """Return ``mask`` as bool, or all True with the shape of ``like`` when ``mask`` is ``None``."""
    return torch.ones_like(like, dtype=torch.bool) if mask is None else mask.bool()


def judged_columns(teacher_scores: Tensor, mask: Tensor) -> Tensor:
    """Return ``[B, N]`` bool, True inside the mask where the teacher gave a finite score.

    Args:
        teacher_scores: Teacher scores; ``-inf`` inside the mask marks an in-batch negative.
        mask: Bool, True where a column takes part.

    Returns:
        The judged columns: ``mask`` minus the in-batch (``-inf``) columns.

    Raises:
        ValueError: A NaN or ``+inf`` teacher score inside the mask.
    """
    bad = mask & (torch.isnan(teacher_scores) | torch.isposinf(teacher_scores))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"teacher_scores must be finite or -inf (NO_OPINION) inside the mask; "
            f"row {row}, column {col} is {float(teacher_scores[row, col])}"
        )
    return mask & torch.isfinite(teacher_scores)


def student_columns(mask: Tensor, judged: Tensor, *, in_batch: bool, positive_mask: Tensor | None = None) -> Tensor:
    """Return ``[B, N]`` bool: the columns the student's distribution (or ranking) runs over.

    Without ``in_batch`` (the papers' form: Atlas, REPLUG, FiD-KD): the judged columns, so student and
    teacher are distributions over the same candidates. With ``in_batch``: every column of the mask except
    a positive the teacher did not score (teacher probability 0 there would push a positive away); the
    in-batch passages then get teacher probability 0 and the student is pushed to put no mass on them,
    an unweighted contrastive term on top of the distillation.

    Args:
        mask: Bool, True where a column takes part.
        judged: Bool, the columns the teacher scored (:func:`judged_columns`).
        in_batch: Put the unjudged columns of the mask (in-batch negatives) into the student's distribution.
        positive_mask: True at the row's positives, or ``None``.
    """
    if not in_batch:
        return judged
    if positive_mask is None:
        return mask
    return mask & (judged | ~positive_mask.bool())


def masked_log_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Log-softmax of each row over its True columns; 0 elsewhere (and on rows without a True column).

    Excluded entries are replaced before any arithmetic, so NaN or inf there reaches neither the value nor
    the gradient, and the result is finite wherever it is later multiplied by a zero probability.

    Args:
        logits: Scores already divided by their temperature.
        mask: Bool, True where the column is in the distribution.

    Shapes:
        logits, mask, returned tensor: ``[B, N]``.
    """
    empty = ~mask.any(dim=1, keepdim=True)  # [B, 1]; such rows get a harmless uniform softmax, zeroed below
    safe = torch.where(mask, logits, 0.0)  # [B, N]
    log_probs = safe.masked_fill(~mask & ~empty, float("-inf")).log_softmax(dim=1)  # [B, N]
    return torch.where(mask, log_probs, 0.0)


def mean_over_rows(per_row: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_row`` over the valid rows; a zero still attached to the graph when none is valid.

    Args:
        per_row: ``[B]`` per-row losses, finite (values and gradients) even on invalid rows.
        valid: ``[B]`` bool, True where the loss is defined for the row.
    """
    return torch.where(valid, per_row, 0.0).sum() / valid.sum().clamp(min=1)


def tempered_logits(student_scores: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Return ``s/τ`` in float32 or wider inside the mask and 0 outside, so garbage there stays out of the graph.

    Shapes:
        student_scores, mask, returned tensor: ``[B, N]``.
    """
    return torch.where(mask, as_float(student_scores) / temperature, 0.0)


def ranking_inputs(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    temperature: float,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check the inputs of a loss on the teacher's order (ListMLE, RankNet) and return what it ranks.

    Args:
        student_scores: Student similarities.
        teacher_scores: Teacher scores, detached here; ``-inf`` inside the mask = in-batch negative.
        mask: True where a column takes part; ``None`` = all columns.
        temperature: τ dividing the student scores.
        in_batch: Keep the unjudged columns (in-batch negatives) as an unordered tail below every judged one;
            ``False`` (the default) drops them (:func:`student_columns`).
        positive_mask: True at the row's positives (an unjudged positive never joins the tail), or ``None``.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]``.

    Returns:
        ``(logits, teacher, mask, judged)``, all ``[B, N]``: ``s/τ`` inside the returned mask and 0 outside; the
        detached teacher scores in the logits' dtype; the columns that take part (:func:`student_columns`); the
        judged columns (``judged_columns``).

    Raises:
        ValueError: Bad shapes, a temperature ``<= 0``, or a NaN / ``+inf`` teacher score inside the mask.
    """
    check_score_shapes(student_scores, teacher_scores=teacher_scores, mask=mask, positive_mask=positive_mask)
    check_positive("temperature", temperature)
    mask = resolve_mask(mask, student_scores)
    judged = judged_columns(teacher_scores, mask)
    mask = student_columns(mask, judged, in_batch=in_batch, positive_mask=positive_mask)
    logits = tempered_logits(student_scores, mask, temperature)
    return logits, teacher_scores.detach().to(logits.dtype), mask, judged


def soft_distributions(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None,
    *,
    tau_student: float,
    tau_teacher: float,
    in_batch: bool = False,
    positive_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs of a soft-target loss (KL, ListNet) and return the student's and teacher's distributions.

    ``p_t = softmax(t/τ_t)`` over the judged columns; ``p_s = softmax(s/τ_s)`` over the same columns, or with
    ``in_batch`` over every column of the mask but unjudged positives (:func:`student_columns`), where an
    in-batch (``-inf``) column has teacher probability exactly 0.

    Args:
        student_scores: Student similarities.
        teacher_scores: Teacher scores, detached here; ``-inf`` inside the mask = in-batch negative.
        mask: True where a column takes part; ``None`` = all columns.
        tau_student: τ_s dividing the student scores.
        tau_teacher: τ_t dividing the teacher scores.
        in_batch: Spread the student's softmax over the in-batch columns too (see :func:`student_columns`).
        positive_mask: True at the row's positives, or ``None``.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]``.

    Returns:
        ``(log_p_s, p_t, valid)``: ``[B, N]`` tensors, 0 outside the mask (``p_t`` also 0 on in-batch
        columns), and ``[B]`` bool, True on rows with at least one judged column.

    Raises:
        ValueError: Bad shapes, a temperature ``<= 0``, or a NaN / ``+inf`` teacher score inside the mask.
    """
    check_score_shapes(student_scores, teacher_scores=teacher_scores, mask=mask, positive_mask=positive_mask)
    check_positive("tau_student", tau_student)
    check_positive("tau_teacher", tau_teacher)
    mask = resolve_mask(mask, student_scores)
    logits = as_float(student_scores)  # [B, N]
    judged = judged_columns(teacher_scores, mask)  # [B, N]
    teacher = teacher_scores.detach().to(logits.dtype)  # [B, N]
    columns = student_columns(mask, judged, in_batch=in_batch, positive_mask=positive_mask)  # [B, N]
    log_p_s = masked_log_softmax(logits / tau_student, columns)  # [B, N]
    log_p_t = masked_log_softmax(teacher / tau_teacher, judged)  # [B, N]
    p_t = torch.where(judged, log_p_t.exp(), 0.0)  # [B, N]
    return log_p_s, p_t, judged.any(dim=1)
