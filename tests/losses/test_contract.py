"""The contract every loss module keeps: shapes, masking, in-batch -inf, finiteness, gradients, batch mean."""

import math

import pytest
import torch

from ragdistill.losses import (
    InfoNCELoss,
    KLDistillLoss,
    ListMLELoss,
    ListNetLoss,
    MarginMSELoss,
    MultiPositiveInfoNCELoss,
    RankNetLoss,
    WeightedSumLoss,
)

INF = math.inf

# name -> (default module, module at a tiny temperature / huge scale)
FACTORIES = {
    "kl": (KLDistillLoss, lambda: KLDistillLoss(tau_student=1e-4, tau_teacher=1e-4)),
    "listnet": (ListNetLoss, lambda: ListNetLoss(tau_student=1e-4, tau_teacher=1e-4)),
    "listmle": (ListMLELoss, lambda: ListMLELoss(temperature=1e-4)),
    "ranknet": (RankNetLoss, lambda: RankNetLoss(temperature=1e-4)),
    "margin_mse": (MarginMSELoss, lambda: MarginMSELoss(student_scale=1e4)),
    "multi_positive_mean": (MultiPositiveInfoNCELoss, lambda: MultiPositiveInfoNCELoss(temperature=1e-4)),
    "multi_positive_sum": (
        lambda: MultiPositiveInfoNCELoss(reduction="sum"),
        lambda: MultiPositiveInfoNCELoss(temperature=1e-4, reduction="sum"),
    ),
    "kl_infonce": (
        lambda: WeightedSumLoss({"kl": KLDistillLoss(), "infonce": InfoNCELoss()}, {"kl": 1.0, "infonce": 0.1}),
        lambda: WeightedSumLoss(
            {"kl": KLDistillLoss(tau_student=1e-4, tau_teacher=1e-4), "infonce": InfoNCELoss(temperature=1e-4)},
            {"kl": 1.0, "infonce": 0.1},
        ),
    ),
}
ALL = sorted(FACTORIES)
# losses that read the teacher's scores (the others only read positives)
DISTILLATION = ["kl", "listmle", "listnet", "margin_mse", "ranknet"]


def make_batch(seed: int = 0):
    """3 rows × 6 columns: padding (mask False), in-batch columns (teacher -inf), one positive per row."""
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 6, generator=generator).tanh()  # cosine-like
    teacher = torch.randn(3, 6, generator=generator) * 3  # log-prob-like margins
    mask = torch.tensor(
        [
            [True, True, True, True, False, False],
            [True, True, True, True, True, True],
            [True, True, False, True, True, False],
        ]
    )
    teacher[0, 3] = -INF  # in-batch negatives
    teacher[2, 3:] = -INF
    positive = torch.zeros(3, 6, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = positive[2, 1] = True
    return student, teacher, mask, positive


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks_a = a.argsort().argsort().double()
    ranks_b = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ranks_a, ranks_b]))[0, 1])


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_only_the_student_and_are_finite(name):
    student, teacher, mask, positive = make_batch()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss = FACTORIES[name][0]()(student, teacher, mask, positive)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_masked_out_columns_have_no_influence(name):
    student, teacher, mask, positive = make_batch()
    module = FACTORIES[name][0]()
    clean = student.clone().requires_grad_(True)
    reference = module(clean, teacher, mask, positive)
    reference.backward()
    garbage = student.clone()
    garbage[~mask] = torch.tensor([float("nan"), 1e6, -1e6, INF]).repeat(3)[: int((~mask).sum())]
    dirty_teacher = teacher.clone()
    dirty_teacher[~mask] = float("nan")
    dirty_positive = positive | ~mask  # a positive outside the mask is not a positive
    garbage.requires_grad_(True)
    loss = module(garbage, dirty_teacher, mask, dirty_positive)
    loss.backward()
    assert torch.allclose(loss, reference)
    assert garbage.grad is not None and clean.grad is not None
    assert torch.all(garbage.grad[~mask] == 0)
    assert torch.allclose(garbage.grad, clean.grad)


@pytest.mark.parametrize("name", ALL)
def test_mask_none_means_every_column(name):
    student, teacher, _, positive = make_batch()
    teacher = teacher.clamp(min=-10)  # no in-batch columns: a mask of all True is the same as none
    module = FACTORIES[name][0]()
    full = torch.ones_like(positive)
    assert torch.allclose(module(student, teacher, None, positive), module(student, teacher, full, positive))


@pytest.mark.parametrize("name", ALL)
def test_tiny_temperature_with_large_gaps_stays_finite(name):
    student, teacher, mask, positive = make_batch()
    student = (student * 50).requires_grad_(True)  # gaps of tens of cosines, divided by 1e-4
    loss = FACTORIES[name][1]()(student, teacher * 100, mask, positive)
    loss.backward()
    assert torch.isfinite(loss)
    assert student.grad is not None and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_loss_is_the_mean_over_rows(name):
    student, teacher, mask, positive = make_batch()
    module = FACTORIES[name][0]()
    rows = [module(student[i : i + 1], teacher[i : i + 1], mask[i : i + 1], positive[i : i + 1]) for i in range(3)]
    assert torch.allclose(module(student, teacher, mask, positive), torch.stack(rows).mean(), atol=1e-6)


@pytest.mark.parametrize("name", DISTILLATION)
def test_rows_without_a_judged_candidate_are_skipped(name):
    student, teacher, mask, positive = make_batch()
    module = FACTORIES[name][0]()
    unjudged = teacher.clone()
    unjudged[1] = -INF  # row 1 has only in-batch columns: the loss is undefined there
    kept = torch.tensor([0, 2])
    expected = module(student[kept], teacher[kept], mask[kept], positive[kept])
    assert torch.allclose(module(student, unjudged, mask, positive), expected)


@pytest.mark.parametrize("name", DISTILLATION)
def test_no_valid_row_gives_an_attached_zero(name):
    student, teacher, mask, _ = make_batch()
    student.requires_grad_(True)
    loss = FACTORIES[name][0]()(student, torch.full_like(teacher, -INF), mask, None)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert student.grad is not None and torch.all(student.grad == 0)


@pytest.mark.parametrize("name", DISTILLATION)
def test_nan_teacher_inside_the_mask_raises(name):
    student, teacher, mask, positive = make_batch()
    teacher[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"row 0, column 0"):
        FACTORIES[name][0]()(student, teacher, mask, positive)


@pytest.mark.parametrize("name", ALL)
def test_bad_shapes_raise(name):
    student, teacher, mask, positive = make_batch()
    module = FACTORIES[name][0]()
    with pytest.raises(ValueError, match="expected"):
        module(student, teacher, mask[:, :4], positive)
    with pytest.raises(ValueError, match=r"\[batch, candidates\]"):
        module(student[0], teacher[0], mask[0], positive[0])
    if name in DISTILLATION:
        with pytest.raises(ValueError, match="teacher_scores has shape"):
            module(student, teacher[:2], mask, positive)


@pytest.mark.parametrize("name", [n for n in ALL if n != "kl_infonce"])
def test_gradients_match_finite_differences(name):
    student, teacher, mask, positive = make_batch()
    module = FACTORIES[name][0]()
    if hasattr(module, "temperature"):
        module.temperature = 0.5  # keep the function gentle enough for finite differences
    for attribute in ("tau_student", "tau_teacher"):
        if hasattr(module, attribute):
            setattr(module, attribute, 0.5)
    if name == "margin_mse":
        module.student_scale = 2.0
    teacher = teacher.double()
    assert torch.autograd.gradcheck(lambda s: module(s, teacher, mask, positive), student.double().requires_grad_(True))


@pytest.mark.parametrize("name", DISTILLATION)
def test_training_moves_the_student_towards_the_teachers_order(name):
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(4, 8, generator=generator)  # log-prob-like margins
    student = torch.nn.Parameter(torch.randn(4, 8, generator=generator) * 0.1)  # cosine-like, unrelated
    module = FACTORIES[name][0]()
    before = sum(spearman(student[i].detach(), teacher[i]) for i in range(4)) / 4
    optimizer = torch.optim.Adam([student], lr=0.02)
    for _ in range(50):
        optimizer.zero_grad()
        module(student, teacher, None, None).backward()
        optimizer.step()
    after = sum(spearman(student[i].detach(), teacher[i]) for i in range(4)) / 4
    assert after > 0.9 and after > before + 0.5
