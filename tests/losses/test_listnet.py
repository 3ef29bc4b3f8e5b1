import math

import pytest
import torch

from ragdistill.losses import ListNetLoss, kl_distill, list_net

INF = math.inf


def test_matches_the_top_one_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(3, 5, generator=generator), torch.randn(3, 5, generator=generator)
    p_t = torch.softmax(teacher / 2.0, dim=1)
    expected = -(p_t * torch.log_softmax(student / 0.1, dim=1)).sum(dim=1).mean()
    assert torch.allclose(list_net(student, teacher, None, tau_student=0.1, tau_teacher=2.0), expected, atol=1e-6)


def test_equals_kl_plus_the_teacher_entropy():
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 6, generator=generator), torch.randn(2, 6, generator=generator)
    teacher[1, 3:] = -INF  # in-batch columns carry no teacher mass, so no entropy
    mask = torch.tensor([[True, True, True, True, False, True], [True] * 6])
    entropies = torch.stack(
        [
            torch.special.entr(torch.softmax(teacher[0, [0, 1, 2, 3, 5]], 0)).sum(),
            torch.special.entr(torch.softmax(teacher[1, :3], 0)).sum(),
        ]
    )
    kl = kl_distill(student, teacher, mask, tau_student=1.0, tau_teacher=1.0)
    assert torch.allclose(list_net(student, teacher, mask, tau_student=1.0, tau_teacher=1.0), kl + entropies.mean())


def test_minimum_is_at_the_teacher_distribution():
    teacher = torch.tensor([[-1.0, -3.0, -0.2, -2.0]])
    matched = list_net(teacher * 0.05, teacher, None, tau_student=0.05, tau_teacher=1.0)
    for shift in ([0.05, 0, 0, 0], [0, 0, -0.05, 0], [0, 0.1, 0, -0.1]):
        other = list_net(teacher * 0.05 + torch.tensor([shift]), teacher, None, tau_student=0.05, tau_teacher=1.0)
        assert other > matched


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match=r"loss\.tau_student"):
        ListNetLoss(tau_student=0.0)
    with pytest.raises(ValueError, match=r"loss\.tau_teacher"):
        ListNetLoss(tau_teacher=-0.5)


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(ListNetLoss, {"tau_student": 0.05, "tau_teacher": 1.0}, "cao2007")
