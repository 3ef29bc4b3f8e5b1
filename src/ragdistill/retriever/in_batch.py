"""Lay a batch of per-question candidate groups out as the ``[B, N]`` tensors every loss takes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ragdistill.data.signal import NO_OPINION


@dataclass
class ScoreLayout:
    """Teacher scores and masks aligned with the student's score matrix.

    Attributes:
        teacher_scores: ``[B, N]``; ``NO_OPINION`` (-inf) on other questions' columns and on positives the
            teacher did not score.
        mask: ``[B, N]`` bool, True where the column takes part in the loss. Own-group columns the teacher
            has no opinion on are False unless they are positives, so within the mask a -inf teacher score
            means an in-batch negative or an unscored positive (a generated unit, a gold passage outside the
            teacher's pool): contrastive losses train on both, distillation losses read neither.
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
    as a "negative"), a copy of a passage already in row ``b``'s group, or a repeat of an earlier
    in-batch column (so a passage counts once). Tensors are created on the inputs' device.

    Args:
        teacher_scores: ``[B, G]`` teacher scores of each row's group.
        group_mask: ``[B, G]`` bool, False on padding.
        positive_mask: ``[B, G]`` bool.
        pids: ``B`` lists of ``G`` passage ids ("" for padding).
        positive_ids: Each row's positive passage ids.
        in_batch_negatives: Lay out ``[B, B·G]`` instead of ``[B, G]``.
    """
    own_mask = group_mask.bool() & ((teacher_scores > NO_OPINION) | positive_mask.bool())  # [B, G]
    if not in_batch_negatives:
        return ScoreLayout(teacher_scores, own_mask, positive_mask.bool())
    batch, group = teacher_scores.shape
    device = teacher_scores.device
    flat_ids = [pid for row in pids for pid in row]  # B·G, row-major
    own = torch.block_diag(*[torch.ones(1, group, dtype=torch.bool)] * batch).to(device)  # [B, B·G]
    allowed = []  # [B][B·G]: may row b use column j as an in-batch negative?
    for b in range(batch):
        seen = positive_ids[b] | set(pids[b])
        row = []
        for pid in flat_ids:
            row.append(pid not in seen)
            seen.add(pid)
        allowed.append(row)
    in_batch = torch.tensor(allowed, dtype=torch.bool, device=device) & group_mask.bool().reshape(1, -1)
    mask = torch.where(own, own_mask.reshape(1, -1).expand(batch, -1), in_batch)
    full_teacher = torch.full((batch, batch * group), NO_OPINION, dtype=teacher_scores.dtype, device=device)
    full_positive = torch.zeros(batch, batch * group, dtype=torch.bool, device=device)
    full_teacher[own] = teacher_scores.reshape(-1)
    full_positive[own] = positive_mask.bool().reshape(-1)
    return ScoreLayout(full_teacher, mask, full_positive)
