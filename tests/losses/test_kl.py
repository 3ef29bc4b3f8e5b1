import math

import pytest
import torch
import torch.nn.functional as F

from ragdistill.losses import KLDistillLoss, ListNetLoss, kl_distill

INF = math.inf


def test_zero_when_student_equals_teacher_up_to_the_temperatures():
    teacher = torch.tensor([[-1.0, -3.0, -0.2, -7.0], [-2.0, -2.5, -4.0, -0.1]])  # log-probabilities
    student = teacher * 0.05  # s/τ_s == t/τ_t
    assert kl_distill(student, teacher, None, tau_student=0.05, tau_teacher=1.0).abs() < 1e-6
    assert kl_distill(student + 0.3, teacher, None, tau_student=0.05, tau_teacher=1.0).abs() < 1e-6  # shift-free
    assert kl_distill(student.flip(1), teacher, None, tau_student=0.05, tau_teacher=1.0) > 0.1


def test_matches_torch_kl_div_batchmean():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(3, 5, generator=generator), torch.randn(3, 5, generator=generator)
    expected = F.kl_div(
        F.log_softmax(student / 0.1, dim=1), F.log_softmax(teacher / 2.0, dim=1), reduction="batchmean", log_target=True
    )
    assert torch.allclose(kl_distill(student, teacher, None, tau_student=0.1, tau_teacher=2.0), expected, atol=1e-6)


def test_papers_form_reads_only_the_judged_candidates():
    """Atlas / REPLUG: KL between two softmaxes over the same K candidates; in-batch columns change nothing."""
    student = torch.tensor([[0.5, 0.2, 0.4, 0.9]], requires_grad=True)
    teacher = torch.tensor([[-1.0, -2.0, -INF, -INF]])  # columns 2, 3: other questions' passages
    loss = kl_distill(student, teacher, None, tau_student=0.5, tau_teacher=1.0)
    p_t = torch.softmax(torch.tensor([-1.0, -2.0]), dim=0)
    log_p_s = torch.log_softmax(student.detach()[0, :2] / 0.5, dim=0)  # the student's softmax over K = 2
    assert torch.allclose(loss, (p_t * (p_t.log() - log_p_s)).sum())
    assert torch.allclose(loss, kl_distill(student[:, :2], teacher[:, :2], None, tau_student=0.5, tau_teacher=1.0))
    loss.backward()
    assert student.grad is not None and torch.all(student.grad[0, 2:] == 0)  # in-batch passages untouched


def test_in_batch_form_spreads_the_student_over_the_batch_and_pushes_those_columns_down():
    student = torch.tensor([[0.5, 0.2, 0.4, 0.9]], requires_grad=True)
    teacher = torch.tensor([[-1.0, -2.0, -INF, -INF]])
    loss = kl_distill(student, teacher, None, tau_student=0.5, tau_teacher=1.0, in_batch=True)
    p_t = torch.softmax(torch.tensor([-1.0, -2.0]), dim=0)
    log_p_s = torch.log_softmax(student.detach()[0] / 0.5, dim=0)[:2]
    assert torch.allclose(loss, (p_t * (p_t.log() - log_p_s)).sum())
    loss.backward()
    assert student.grad is not None and torch.all(student.grad[0, 2:] > 0)  # descent lowers them
    assert KLDistillLoss(0.5, 1.0, in_batch_negatives=True)(student, teacher) == loss


def test_unscored_positive_stays_out_of_both_forms():
    """A positive the teacher never scored (a generated unit) is neither distilled nor pushed away."""
    student = torch.tensor([[0.5, 0.2, 0.8, 0.1]], requires_grad=True)
    teacher = torch.tensor([[-1.0, -2.0, -INF, -INF]])  # column 2: an unscored positive; 3: in-batch
    positive = torch.tensor([[False, False, True, False]])
    for in_batch in (False, True):
        loss = KLDistillLoss(0.5, 1.0, in_batch_negatives=in_batch)(student, teacher, None, positive)
        (grad,) = torch.autograd.grad(loss, student)
        assert grad[0, 2] == 0
    expected = kl_distill(
        student[:, [0, 1, 3]], teacher[:, [0, 1, 3]], None, tau_student=0.5, tau_teacher=1.0, in_batch=True
    )
    assert torch.allclose(KLDistillLoss(0.5, 1.0, in_batch_negatives=True)(student, teacher, None, positive), expected)


def test_masked_column_leaves_both_distributions():
    student = torch.tensor([[0.5, 0.2, 100.0]])
    teacher = torch.tensor([[-1.0, -2.0, 50.0]])
    mask = torch.tensor([[True, True, False]])
    expected = kl_distill(student[:, :2], teacher[:, :2], None, tau_student=0.1, tau_teacher=1.0)
    assert torch.allclose(kl_distill(student, teacher, mask, tau_student=0.1, tau_teacher=1.0), expected)


def test_small_teacher_temperature_approaches_cross_entropy_on_the_top():
    student = torch.tensor([[0.3, 0.1, -0.2]])
    teacher = torch.tensor([[1.0, 0.0, 0.0]])  # gold-teacher scores
    loss = kl_distill(student, teacher, None, tau_student=0.05, tau_teacher=1e-3)
    assert torch.allclose(loss, F.cross_entropy(student / 0.05, torch.tensor([0])), atol=1e-5)


def test_same_student_gradient_as_listnet():
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(2, 6, generator=generator)
    teacher[0, 4:] = -INF
    mask = torch.tensor([[True] * 6, [True, True, True, False, True, True]])
    grads = []
    for module in (KLDistillLoss(0.1, 2.0), ListNetLoss(0.1, 2.0)):
        student = torch.randn(2, 6, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
        module(student, teacher, mask).backward()
        grads.append(student.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tau_student": 0.0}, r"loss\.tau_student"), ({"tau_teacher": -1.0}, r"loss\.tau_teacher")],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KLDistillLoss(**kwargs)
    with pytest.raises(ValueError, match=message.removeprefix(r"loss\.")):
        kl_distill(torch.zeros(1, 2), torch.zeros(1, 2), None, **{"tau_student": 1.0, "tau_teacher": 1.0, **kwargs})


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(
        KLDistillLoss,
        {"tau_student": 0.05, "tau_teacher": 1.0, "in_batch_negatives": False},
        "2012.04584",
        "2208.03299",
        "2301.12652",
    )
