import math

import pytest
import torch

from ragdistill.losses import MarginMSELoss, margin_mse_loss

INF = math.inf


def brute_force_margin_mse(student, teacher, mask, positive, scale):
    """Mean over (anchor, other judged) pairs per row, then over rows with a pair, in plain Python."""
    rows = []
    for b in range(student.shape[0]):
        judged = [j for j in range(student.shape[1]) if mask[b, j] and teacher[b, j] > -INF]
        anchors = [j for j in judged if positive is not None and positive[b, j]]
        if not anchors and judged:
            anchors = [max(judged, key=lambda j: (float(teacher[b, j]), -j))]  # teacher-top, first on ties
        errors = [
            (scale * float(student[b, p] - student[b, j]) - float(teacher[b, p] - teacher[b, j])) ** 2
            for p in anchors
            for j in judged
            if j not in anchors
        ]
        if errors:
            rows.append(sum(errors) / len(errors))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_positives", [True, False])
def test_matches_brute_force(seed, with_positives):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    teacher = torch.randn(4, 6, generator=generator, dtype=torch.float64) * 3
    teacher[torch.rand(4, 6, generator=generator) < 0.2] = -INF
    teacher[:, :2] = torch.tensor([1.0, 2.0], dtype=torch.float64)  # ties on the top are possible
    mask = torch.rand(4, 6, generator=generator) > 0.2
    mask[:, :3] = True
    positive = torch.rand(4, 6, generator=generator) < 0.3  # some rows have several positives, some none
    positive[0] = False
    positive[1, 0] = True
    positive = positive if with_positives else None
    expected = brute_force_margin_mse(student, teacher, mask, positive, 7.0)
    assert margin_mse_loss(student, teacher, mask, positive, student_scale=7.0).item() == pytest.approx(expected)


def test_zero_when_scaled_student_margins_equal_the_teachers():
    teacher = torch.tensor([[-1.0, -3.0, -0.2, -7.0]])
    student = (teacher + 4.0) / 20.0
    positive = torch.tensor([[False, False, True, False]])
    assert margin_mse_loss(student, teacher, None, positive, student_scale=20.0) < 1e-10
    assert margin_mse_loss(student, teacher, None, None, student_scale=20.0) < 1e-10
    assert margin_mse_loss(student, teacher, None, None, student_scale=1.0) > 1.0


def test_rows_without_positives_anchor_on_the_teacher_top():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, generator=generator), torch.randn(2, 5, generator=generator)
    top = torch.nn.functional.one_hot(teacher.argmax(dim=1), 5).bool()
    no_positive = torch.zeros(2, 5, dtype=torch.bool)
    expected = margin_mse_loss(student, teacher, None, top, student_scale=3.0)
    assert torch.allclose(margin_mse_loss(student, teacher, None, None, student_scale=3.0), expected)
    assert torch.allclose(margin_mse_loss(student, teacher, None, no_positive, student_scale=3.0), expected)


def test_in_batch_columns_are_ignored():
    teacher = torch.tensor([[-1.0, -2.0, -INF, -INF]])
    positive = torch.tensor([[True, False, False, False]])
    student = torch.tensor([[0.5, 0.2, 0.9, -0.4]], requires_grad=True)
    loss = margin_mse_loss(student, teacher, None, positive, student_scale=10.0)
    loss.backward()
    assert torch.allclose(loss, torch.tensor((10.0 * 0.3 - 1.0) ** 2))
    assert student.grad is not None and torch.all(student.grad[0, 2:] == 0)


def test_module_passes_positives():
    teacher = torch.tensor([[0.0, 1.0, 3.0]])
    student = torch.zeros(1, 3)
    positive = torch.tensor([[False, True, False]])
    loss = MarginMSELoss(student_scale=1.0)(student, teacher, None, positive)
    assert torch.allclose(loss, torch.tensor((1.0**2 + 2.0**2) / 2))  # anchor 1 vs columns 0 and 2


def test_bad_hyperparameters_raise(check_bad_hyperparameter):
    check_bad_hyperparameter(MarginMSELoss, margin_mse_loss, "student_scale", 0.0, -1.0)


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(MarginMSELoss, {"student_scale": 20.0}, "2010.02666")
