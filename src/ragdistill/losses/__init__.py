"""Retriever losses: plain functions of score tensors plus thin modules holding hyperparameters.

Every loss module's ``forward(student_scores, teacher_scores, mask, positive_mask)`` takes ``[B, N]``
tensors built from teacher signals and knows nothing about which teacher made them.
"""

from ragdistill.losses.infonce import InfoNCELoss, info_nce

__all__ = ["InfoNCELoss", "info_nce"]
