"""Checks shared by every loss, so a bad batch or hyperparameter fails with one clear message."""

from __future__ import annotations

from torch import Tensor


def check_score_shapes(student_scores: Tensor, **others: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``student_scores`` is ``[B, N]`` and every other tensor matches it.

    Args:
        student_scores: ``[B, N]`` student scores.
        **others: Named tensors (teacher scores, masks) that must have the same shape; ``None`` is skipped.
    """
    if student_scores.dim() != 2:
        raise ValueError(f"student_scores must be [batch, candidates], got shape {tuple(student_scores.shape)}")
    for name, tensor in others.items():
        if tensor is not None and tensor.shape != student_scores.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(student_scores.shape)} like student_scores"
            )


def check_positive(name: str, value: float) -> float:
    """Return ``value`` unless the hyperparameter ``name`` (a temperature, a scale) is not ``> 0``.

    Args:
        name: What the error names: ``"tau_student"`` in a function, ``"loss.tau_student"`` in a module.
        value: The hyperparameter; NaN is rejected too.

    Raises:
        ValueError: ``value`` is not a positive number.
    """
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_top_k(name: str, value: int | None) -> int | None:
    """Return ``value`` unless the cut-off ``name`` (a top-k) is set and below 1; ``None`` means no cut-off.

    Args:
        name: What the error names: ``"loss.top_k"``, ``"teacher.ranker_top_k"``.
        value: The cut-off or ``None``.

    Raises:
        ValueError: ``value`` is an integer below 1.
    """
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1 or null, got {value}")
    return value
