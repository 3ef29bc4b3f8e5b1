"""The ``forward`` every loss module shares, and the hyperparameters several losses hold alike.

The bi-encoder calls every loss as ``loss(student_scores, teacher_scores, mask, positive_mask)`` whichever
teacher made the signal; :class:`ScoreLoss` writes that call once, and a loss module only says which pure
function of the scores it is, with which hyperparameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ragdistill.losses.checks import check_positive
from ragdistill.utils.constraints import PositiveFloat


@dataclass(frozen=True)
class LossInputs:
    """The four tensors a loss module receives; the optional ones it reads come through a checked property.

    Attributes:
        student_scores: Student similarities.
        teacher_scores: Teacher scores, higher = more useful, or ``None`` when the teacher gave none.
        mask: True where a column takes part; ``None`` = all columns.
        positive_mask: True at each row's positives, or ``None`` when the teacher marked none.
        loss_name: The loss module's class name, for the error when an input it reads is missing.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]`` (N = group size, or B·G with in-batch
        negatives).
    """

    student_scores: Tensor
    teacher_scores: Tensor | None
    mask: Tensor | None
    positive_mask: Tensor | None
    loss_name: str

    @property
    def teacher(self) -> Tensor:
        """``teacher_scores``, for a loss that reads them; ``ValueError`` when there are none."""
        if self.teacher_scores is None:
            raise ValueError(f"{self.loss_name} needs teacher_scores (the teacher gave no scores)")
        return self.teacher_scores

    @property
    def positives(self) -> Tensor:
        """``positive_mask``, for a loss that reads it; ``ValueError`` when there is none."""
        if self.positive_mask is None:
            raise ValueError(f"{self.loss_name} needs positive_mask (the teacher marked no positives)")
        return self.positive_mask


class ScoreLoss(nn.Module, ABC):
    """Base of the loss modules: one ``forward`` over ``[B, N]`` score tensors, whatever the teacher.

    A subclass holds its hyperparameters and its paper (``citation``, BibTeX) and implements
    :meth:`compute_loss` by calling its pure function; it never holds an encoder.

    Shapes:
        student_scores, teacher_scores, mask, positive_mask: ``[B, N]``; the loss is a scalar.
    """

    citation: ClassVar[str]

    reads_teacher_scores: ClassVar[bool] = False
    """Whether the loss learns the teacher's grading of the candidates (KL, ListNet, ListMLE, RankNet,
    Margin-MSE). The data module then gives each question its whole scored pool unless told otherwise, and
    warns when ``datamodule.group_size`` cuts it."""

    needs_positives: ClassVar[bool] = False
    """Whether the loss reads ``positive_mask`` (InfoNCE, multi-positive InfoNCE): a teacher that marks no
    positives (an LM grading candidates) cannot train it, which the pipeline says before any LM work."""

    single_positive: ClassVar[bool] = False
    """Whether each row must hold exactly one positive (InfoNCE): the data module then draws one per group."""

    def forward(
        self,
        student_scores: Tensor,
        teacher_scores: Tensor | None = None,
        mask: Tensor | None = None,
        positive_mask: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar loss; the inputs a loss does not read may be ``None``.

        Raises:
            ValueError: Bad shapes (see the loss's function), or ``None`` for an input the loss reads.
        """
        return self.compute_loss(LossInputs(student_scores, teacher_scores, mask, positive_mask, type(self).__name__))

    @abstractmethod
    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """Return the scalar loss of ``inputs`` under this module's hyperparameters."""


class TemperatureLoss(ScoreLoss):
    """A loss with one temperature τ dividing the student's scores (InfoNCE, multi-positive InfoNCE, ListMLE, RankNet).

    Args:
        temperature: τ; 0.05 (sentence-transformers' scale 20) suits cosine scores in [-1, 1].
    """

    def __init__(self, temperature: PositiveFloat = 0.05) -> None:
        super().__init__()
        self.temperature = check_positive("loss.temperature", temperature)


class SoftTargetLoss(ScoreLoss):
    """A loss between the student's ``softmax(s/τ_s)`` and the teacher's ``softmax(t/τ_t)`` (KL, ListNet).

    Args:
        tau_student: τ_s; 0.05 (scale 20, as InfoNCE) lets cosine scores in [-1, 1] form a peaked softmax.
        tau_teacher: τ_t; 1.0 keeps an LM teacher's log-probabilities as the LM's own normalised likelihoods.
        in_batch_negatives: Spread the student's softmax over the batch's other passages too (teacher
            probability 0 there). Off by default: the papers match student and teacher over the same K
            candidates; in-batch negatives belong in a separately weighted contrastive term (``kl_infonce``).
    """

    reads_teacher_scores = True

    def __init__(
        self, tau_student: PositiveFloat = 0.05, tau_teacher: PositiveFloat = 1.0, in_batch_negatives: bool = False
    ) -> None:
        super().__init__()
        self.tau_student = check_positive("loss.tau_student", tau_student)
        self.tau_teacher = check_positive("loss.tau_teacher", tau_teacher)
        self.in_batch_negatives = in_batch_negatives

    @property
    def temperatures(self) -> dict[str, Any]:
        """The keyword arguments of the soft-target functions: ``tau_student``, ``tau_teacher``, ``in_batch``."""
        return {"tau_student": self.tau_student, "tau_teacher": self.tau_teacher, "in_batch": self.in_batch_negatives}
