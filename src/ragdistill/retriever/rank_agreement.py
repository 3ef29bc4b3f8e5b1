"""How far the student already ranks each question's candidates as its teacher does (a training diagnostic).

The loss says how far the student's distribution is from the teacher's; the rank correlation says whether the
two *orders* agree, which is what retrieval uses. Logged on the held-out questions at every validation as
``val/teacher_student_spearman`` (1 = the student orders every group as the teacher does, 0 = no relation).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import ConstantInputWarning, spearmanr
from torch import Tensor


def own_group_scores(student: Tensor, group: int) -> Tensor:
    """The ``[B, G]`` scores of each question's own candidates, from ``[B, G]`` or in-batch ``[B, B·G]`` scores.

    With in-batch negatives, row ``b``'s own group sits in columns ``b·G … b·G+G-1``.
    """
    batch = student.shape[0]
    if student.shape[1] == group:
        return student
    return student.view(batch, batch, group).diagonal(dim1=0, dim2=1).T


def teacher_student_spearman(student: Tensor, teacher: Tensor, mask: Tensor) -> float | None:
    """Mean Spearman correlation between student and teacher scores over each group's judged candidates.

    Args:
        student: ``[B, G]`` student scores of each question's own candidates.
        teacher: ``[B, G]`` teacher scores; non-finite = no opinion (left out).
        mask: ``[B, G]`` bool, False on padding (left out).

    Returns:
        The mean over questions with at least two judged candidates and a teacher that does not score them all
        alike (a constant order has no correlation: e.g. a gold teacher with no positive in the group);
        ``None`` when no question qualifies.
    """
    student_np = student.detach().float().cpu().numpy()
    teacher_np = teacher.detach().float().cpu().numpy()
    judged = mask.cpu().numpy() & np.isfinite(teacher_np)
    values = []
    for row in range(student_np.shape[0]):
        keep = judged[row]
        if keep.sum() < 2 or np.ptp(teacher_np[row, keep]) == 0:
            continue
        with warnings.catch_warnings():  # a constant student row (e.g. identical passages) is nan: skipped
            warnings.simplefilter("ignore", ConstantInputWarning)
            rho = spearmanr(student_np[row, keep], teacher_np[row, keep]).statistic
        if np.isfinite(rho):
            values.append(float(rho))
    return float(np.mean(values)) if values else None
