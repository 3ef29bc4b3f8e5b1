import math

import torch

from ragdistill.retriever.in_batch import layout_scores


def _batch():
    # two questions sharing gold paragraph "p1" (common on SQuAD), group size 2
    pids = [["p1", "n1"], ["p1", "n2"]]
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    positive = torch.tensor([[True, False], [True, False]])
    group_mask = torch.tensor([[True, True], [True, True]])
    return teacher, group_mask, positive, pids, [{"p1"}, {"p1"}]


def test_own_group_layout_is_unchanged():
    teacher, group_mask, positive, pids, positive_ids = _batch()
    layout = layout_scores(teacher, group_mask, positive, pids, positive_ids, in_batch_negatives=False)
    assert torch.equal(layout.teacher_scores, teacher)
    assert torch.equal(layout.positive_mask, positive)


def test_in_batch_masks_shared_positive_of_other_rows():
    teacher, group_mask, positive, pids, positive_ids = _batch()
    layout = layout_scores(teacher, group_mask, positive, pids, positive_ids, in_batch_negatives=True)
    assert layout.mask.shape == (2, 4)
    # row 0 sees its own group, not row 1's copy of p1, but does see n2
    assert layout.mask[0].tolist() == [True, True, False, True]
    assert layout.mask[1].tolist() == [False, True, True, True]
    assert layout.positive_mask.tolist() == [[True, False, False, False], [False, False, True, False]]
    assert layout.teacher_scores[0, 2].item() == -math.inf
    assert layout.teacher_scores[1, 2].item() == 1.0


def test_padding_is_masked_for_every_row():
    teacher, group_mask, positive, pids, positive_ids = _batch()
    group_mask[1, 1] = False
    pids[1][1] = ""
    layout = layout_scores(teacher, group_mask, positive, pids, positive_ids, in_batch_negatives=True)
    assert not layout.mask[:, 3].any()


def test_a_passage_repeated_in_other_rows_counts_once_and_no_opinion_is_masked():
    pids = [["g0", "x"], ["g1", "shared"], ["g2", "shared"]]
    teacher = torch.tensor([[1.0, -math.inf], [1.0, 0.0], [1.0, 0.0]])
    positive = torch.tensor([[True, False], [True, False], [True, False]])
    layout = layout_scores(
        teacher, torch.ones(3, 2, dtype=torch.bool), positive, pids, [{"g0"}, {"g1"}, {"g2"}], in_batch_negatives=True
    )
    assert layout.mask[0].tolist() == [True, False, True, True, True, False]  # "x": no opinion; 2nd "shared": repeat
    own = layout_scores(teacher, torch.ones(3, 2, dtype=torch.bool), positive, pids, [set()] * 3, False)
    assert own.mask[0].tolist() == [True, False]
