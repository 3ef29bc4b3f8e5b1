"""The teacher-student rank correlation logged at validation."""

import math

import pytest
import torch

from ragdistill.retriever.rank_agreement import own_group_scores, teacher_student_spearman

NO_OPINION = float("-inf")


def test_same_order_is_one_reversed_is_minus_one():
    teacher = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    mask = torch.ones_like(teacher, dtype=torch.bool)
    assert teacher_student_spearman(teacher * 10, teacher, mask) == pytest.approx(1.0)
    assert teacher_student_spearman(-teacher, teacher, mask) == pytest.approx(-1.0)
    mixed = torch.stack([teacher[0], -teacher[1]])
    assert teacher_student_spearman(mixed, teacher, mask) == pytest.approx(0.0)


def test_padding_and_unjudged_candidates_are_left_out():
    student = torch.tensor([[0.9, 0.5, 0.1, 5.0, -5.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0, NO_OPINION, 7.0]])
    mask = torch.tensor([[True, True, True, True, False]])  # the last column is padding
    assert teacher_student_spearman(student, teacher, mask) == pytest.approx(1.0)


def test_rows_without_an_order_are_skipped_and_none_when_nothing_is_left():
    student = torch.tensor([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    teacher = torch.tensor([[1.0, 1.0, 1.0], [2.0, NO_OPINION, NO_OPINION]])  # constant; one judged
    mask = torch.ones_like(student, dtype=torch.bool)
    assert teacher_student_spearman(student, teacher, mask) is None
    teacher[1] = torch.tensor([0.0, 1.0, 2.0])
    assert teacher_student_spearman(student, teacher, mask) == pytest.approx(1.0)


def test_ties_get_average_ranks():
    student = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    teacher = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # a gold teacher: one positive, tied negatives
    rho = teacher_student_spearman(student, teacher, torch.ones_like(student, dtype=torch.bool))
    assert rho is not None and math.isclose(rho, 0.7745966692414834, rel_tol=1e-9)


def test_own_group_columns_are_taken_from_in_batch_scores():
    batch, group = 3, 2
    in_batch = torch.arange(batch * batch * group, dtype=torch.float32).view(batch, batch * group)
    own = own_group_scores(in_batch, group)
    expected = torch.stack([in_batch[b, b * group : (b + 1) * group] for b in range(batch)])
    assert torch.equal(own, expected)
    assert own_group_scores(expected, group) is expected  # [B, G] scores are already own-group
