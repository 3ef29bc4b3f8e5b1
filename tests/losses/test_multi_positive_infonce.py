import math

import pytest
import torch

from ragdistill.losses import MultiPositiveInfoNCELoss, info_nce, multi_positive_info_nce


def brute_force(student, positive, mask, temperature, reduction):
    """Both reductions written out row by row, in plain Python."""
    rows = []
    for b in range(student.shape[0]):
        x = {j: float(student[b, j]) / temperature for j in range(student.shape[1]) if mask[b, j]}
        positives = [j for j in x if positive[b, j]]
        negatives = [j for j in x if not positive[b, j]]
        if reduction == "mean":
            terms = [-(x[p] - math.log(math.exp(x[p]) + sum(math.exp(x[n]) for n in negatives))) for p in positives]
            rows.append(sum(terms) / len(terms))
        else:
            rows.append(
                -(math.log(sum(math.exp(x[p]) for p in positives)) - math.log(sum(math.exp(v) for v in x.values())))
            )
    return sum(rows) / len(rows)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_with_several_positives(reduction, seed):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    positive = torch.rand(3, 6, generator=generator) < 0.4
    positive[:, 0] = True
    mask = torch.rand(3, 6, generator=generator) > 0.2
    mask[:, 0] = True
    expected = brute_force(student, positive, mask, 0.5, reduction)
    loss = multi_positive_info_nce(student, positive, mask, temperature=0.5, reduction=reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_positive_equals_info_nce(reduction):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 7, generator=generator)
    positive = torch.nn.functional.one_hot(torch.tensor([0, 3, 6, 2]), 7).bool()
    mask = torch.rand(4, 7, generator=generator) > 0.3
    mask |= positive
    expected = info_nce(student, positive, mask, temperature=0.05)
    loss = multi_positive_info_nce(student, positive, mask, temperature=0.05, reduction=reduction)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_other_positives_stay_out_of_a_positives_denominator():
    student = torch.tensor([[5.0, 5.0, 0.0]])  # two confident positives, one negative
    positive = torch.tensor([[True, True, False]])
    mean = multi_positive_info_nce(student, positive, temperature=1.0)
    assert torch.allclose(mean, torch.nn.functional.softplus(torch.tensor(-5.0)))  # -log σ(5 - 0)
    only_positives = multi_positive_info_nce(student, positive, torch.tensor([[True, True, False]]), temperature=1.0)
    assert only_positives.item() == 0.0  # no negative left: nothing to beat


def test_sum_is_satisfied_by_one_strong_positive_but_mean_is_not():
    student = torch.tensor([[0.9, -0.5, 0.0]])
    positive = torch.tensor([[True, True, False]])
    assert multi_positive_info_nce(student, positive, reduction="sum") < 1e-6
    assert multi_positive_info_nce(student, positive, reduction="mean") > 1.0


def test_training_ranks_every_positive_above_every_negative():
    generator = torch.Generator().manual_seed(2)
    student = torch.nn.Parameter(torch.randn(4, 8, generator=generator) * 0.1)
    positive = torch.rand(4, 8, generator=generator) < 0.3
    positive[:, 0] = True
    loss = MultiPositiveInfoNCELoss()
    optimizer = torch.optim.SGD([student], lr=0.01)
    for _ in range(50):
        optimizer.zero_grad()
        loss(student, None, None, positive).backward()
        optimizer.step()
    worst_positive = student.detach().masked_fill(~positive, math.inf).min(dim=1).values
    best_negative = student.detach().masked_fill(positive, -math.inf).max(dim=1).values
    assert torch.all(worst_positive > best_negative)


def test_rows_without_a_positive_raise():
    positive = torch.tensor([[True, False, False], [False, False, True]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with pytest.raises(ValueError, match="row 1 has none"):
        multi_positive_info_nce(torch.zeros(2, 3), positive, mask)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_skipped_rows_without_a_positive_add_nothing(reduction):
    student = torch.tensor([[0.3, 0.1, 0.2], [0.5, 0.4, 0.1]], requires_grad=True)
    positive = torch.tensor([[True, False, False], [False, False, False]])
    loss = multi_positive_info_nce(
        student, positive, temperature=0.1, reduction=reduction, skip_rows_without_positive=True
    )
    assert torch.allclose(
        loss, multi_positive_info_nce(student[:1], positive[:1], temperature=0.1, reduction=reduction)
    )
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.all(grad[1] == 0) and torch.isfinite(grad).all()
    nothing = MultiPositiveInfoNCELoss(0.1, skip_rows_without_positive=True)(
        student, None, None, positive[1:].expand(2, 3)
    )
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_module_requires_positive_mask():
    with pytest.raises(ValueError, match="positive_mask"):
        MultiPositiveInfoNCELoss()(torch.zeros(1, 2))


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match=r"loss\.temperature"):
        MultiPositiveInfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match=r"loss\.reduction"):
        MultiPositiveInfoNCELoss(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        multi_positive_info_nce(torch.zeros(1, 2), torch.tensor([[True, False]]), reduction="max")  # type: ignore[arg-type]


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(
        MultiPositiveInfoNCELoss, {"temperature": 0.05, "reduction": "mean"}, "2305.17331", "1912.06430"
    )
