"""Lay a batch of per-question candidate groups out as the ``[B, N]`` tensors every loss takes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ragdistill.teachers.signal import NO_OPINION


@dataclass
class ScoreLayout:
    """Teacher scores and masks aligned with the student's score matrix.

    Attributes:
        teacher_scores: ``[B, N]``; ``NO_OPINION`` (-inf) on other questions' columns.
        mask: ``[B, N]`` bool, True where the column takes part in the loss.
        positive_mask: ``[B, N]`` bool, True on the row's own positives.
    """

    teacher_scores: Tensor
    mask: Tensor
    positive_mask: Tensor


def layout_scores(
    teacher_scores: Tensor,
    group_mask: Tensor,
    positive_mask: Tensor,
    pids: list[list[str]],
    positive_ids: list[set[str]],
    in_batch_negatives: bool,
) -> ScoreLayout:
    """Return the loss inputs for own-group scores ``[B, G]`` or in-batch scores ``[B, B·G]``.

    With in-batch negatives, row ``b`` sees every passage of the batch; its own group sits in columns
    ``b·G … b·G+G-1``. Another question's passage is masked out when it is one of row ``b``'s positives
    (on SQuAD ~4.6 questions share a paragraph, so without this a gold paragraph would be pushed away
    as a "negative") or a copy of a passage already in row ``b``'s own group.

    Args:
        teacher_scores: ``[B, G]`` teacher scores of each row's group.
        group_mask: ``[B, G]`` bool, False on padding.
        positive_mask: ``[B, G]`` bool.
        pids: ``B`` lists of ``G`` passage ids ("" for padding).
        positive_ids: Each row's positive passage ids.
        in_batch_negatives: Lay out ``[B, B·G]`` instead of ``[B, G]``.
    """
    if not in_batch_negatives:
        return ScoreLayout(teacher_scores, group_mask.bool(), positive_mask.bool())
    batch, group = teacher_scores.shape
    flat_ids = [pid for row in pids for pid in row]  # B·G
    own = torch.zeros(batch, batch * group, dtype=torch.bool)
    for b in range(batch):
        own[b, b * group : (b + 1) * group] = True
    mask = group_mask.bool().reshape(1, -1).expand(batch, -1).clone()  # [B, B·G]
    for b in range(batch):
        excluded = positive_ids[b] | set(pids[b])
        for column, pid in enumerate(flat_ids):
            if not own[b, column] and pid in excluded:
                mask[b, column] = False
    full_teacher = torch.full((batch, batch * group), NO_OPINION, dtype=teacher_scores.dtype)
    full_positive = torch.zeros(batch, batch * group, dtype=torch.bool)
    full_teacher[own] = teacher_scores.reshape(-1)
    full_positive[own] = positive_mask.bool().reshape(-1)
    return ScoreLayout(full_teacher, mask, full_positive)
