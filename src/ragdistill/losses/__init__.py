"""Retriever losses: plain functions of score tensors plus thin modules holding hyperparameters.

Every loss module is a ``ScoreLoss``: its ``forward(student_scores, teacher_scores, mask, positive_mask)``
takes ``[B, N]`` tensors built from teacher signals and knows nothing about which teacher made them.
"""

from ragdistill.losses.base import ScoreLoss
from ragdistill.losses.infonce import InfoNCELoss, info_nce
from ragdistill.losses.kl import KLDistillLoss, kl_distill
from ragdistill.losses.listmle import ListMLELoss, list_mle
from ragdistill.losses.listnet import ListNetLoss, list_net
from ragdistill.losses.margin_mse import MarginMSELoss, margin_mse_loss
from ragdistill.losses.multi_positive_infonce import MultiPositiveInfoNCELoss, multi_positive_info_nce
from ragdistill.losses.ranknet import RankNetLoss, rank_net
from ragdistill.losses.weighted_sum import WeightedSumLoss

__all__ = [
    "InfoNCELoss",
    "KLDistillLoss",
    "ListMLELoss",
    "ListNetLoss",
    "MarginMSELoss",
    "MultiPositiveInfoNCELoss",
    "RankNetLoss",
    "ScoreLoss",
    "WeightedSumLoss",
    "info_nce",
    "kl_distill",
    "list_mle",
    "list_net",
    "margin_mse_loss",
    "multi_positive_info_nce",
    "rank_net",
]
