"""A weighted sum of losses (e.g. KL distillation plus InfoNCE on the positives), each logged apart."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ragdistill.losses.base import LossInputs, ScoreLoss


class WeightedSumLoss(ScoreLoss):
    """Add several losses with fixed weights, keeping each one's value for logging.

    Formula: ``L = Σ_k w_k · L_k(student_scores, teacher_scores, mask, positive_mask)``.

    Args:
        losses: Named loss modules; each gets all four arguments.
        weights: One weight ``>= 0`` per name in ``losses`` (same keys).

    Attributes:
        components: After each forward, ``{name: detached L_k}`` (unweighted), for ``train/loss_<name>``.

    References:
        Hinton et al., Distilling the Knowledge in a Neural Network, arXiv:1503.02531 (a weighted sum of the
        soft-target and the hard-label objectives).

    Relations: ``kl_infonce`` combines ``KLDistillLoss`` with ``InfoNCELoss``; a weight of 0 keeps a loss
    logged without training on it.
    """

    citation = """@article{hinton2015distilling,
  title={Distilling the Knowledge in a Neural Network},
  author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal={arXiv preprint arXiv:1503.02531}, year={2015}}"""

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        if not isinstance(losses, Mapping) or not isinstance(weights, Mapping):
            raise ValueError("loss.losses and loss.weights must be mappings from loss name to module / weight")
        if not losses:
            raise ValueError("loss.losses must name at least one loss")
        if set(losses) != set(weights):
            raise ValueError(
                f"loss.weights must have the same keys as loss.losses; losses: {sorted(losses)}, "
                f"weights: {sorted(weights)}"
            )
        for name, module in losses.items():
            if not isinstance(module, nn.Module):
                raise ValueError(f"loss.losses.{name} must be a loss module, got {type(module).__name__}")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ValueError(f"loss.weights.{name} must be a finite number, got {weight!r}")
            if weight < 0:
                raise ValueError(f"loss.weights.{name} must be >= 0, got {weight}")
        self.losses = nn.ModuleDict({str(name): losses[name] for name in losses})
        self.weights = {str(name): float(weights[name]) for name in losses}
        self.components: dict[str, Tensor] = {}

    @property
    def reads_teacher_scores(self) -> bool:  # type: ignore[override]
        """Whether any part learns the teacher's grading (then the whole scored pool is its default group)."""
        return any(getattr(loss, "reads_teacher_scores", False) for loss in self.losses.values())

    @property
    def needs_positives(self) -> bool:  # type: ignore[override]
        """Whether any part with a weight above 0 reads the positives."""
        return any(getattr(loss, "needs_positives", False) and self.weights[n] > 0 for n, loss in self.losses.items())

    @property
    def single_positive(self) -> bool:  # type: ignore[override]
        """Whether any part needs exactly one positive per row (then one is drawn per group)."""
        return any(getattr(loss, "single_positive", False) for loss in self.losses.values())

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return ``Σ_k w_k · L_k`` and set ``self.components`` to the detached ``L_k``."""
        tensors = (inputs.student_scores, inputs.teacher_scores, inputs.mask, inputs.positive_mask)
        values = {name: loss(*tensors) for name, loss in self.losses.items()}
        self.components = {name: value.detach() for name, value in values.items()}
        return torch.stack([self.weights[name] * value for name, value in values.items()]).sum()
