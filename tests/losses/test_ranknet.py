import math

import pytest
import torch

from ragdistill.losses import RankNetLoss, rank_net

INF = math.inf


def brute_force_rank_net(student, teacher, mask, temperature, in_batch=False):
    """Mean over ordered pairs per row, then over rows with a pair, in plain Python.

    Pairs are among the judged columns; with ``in_batch`` an unjudged (-inf) column pairs below every judged one.
    """
    rows = []
    for b in range(student.shape[0]):
        columns = [j for j in range(student.shape[1]) if mask[b, j] and (in_batch or teacher[b, j] > -INF)]
        losses = [
            math.log1p(math.exp(-(float(student[b, i]) - float(student[b, j])) / temperature))
            for i in columns
            for j in columns
            if float(teacher[b, i]) > float(teacher[b, j])
        ]
        if losses:
            rows.append(sum(losses) / len(losses))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("in_batch", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_masks_in_batch_columns_and_ties(seed, in_batch):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randint(-3, 3, (3, 7), generator=generator).double()  # ties form no pair
    teacher[torch.rand(3, 7, generator=generator) < 0.3] = -INF  # two -inf columns form no pair either
    teacher[:, 0] = 5.0
    mask = torch.rand(3, 7, generator=generator) > 0.2
    mask[:, :2] = True
    expected = brute_force_rank_net(student, teacher, mask, 0.3, in_batch)
    got = rank_net(student, teacher, mask, temperature=0.3, in_batch=in_batch)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_one_judged_column_against_in_batch_columns_makes_pairs_only_in_the_in_batch_form():
    student = torch.tensor([[0.2, 0.5, 0.1]], requires_grad=True)
    teacher = torch.tensor([[-1.0, -INF, -INF]])
    x = student[0] / 0.5
    expected = torch.nn.functional.softplus(-(x[0] - x[1:])).mean()
    assert torch.allclose(rank_net(student, teacher, None, temperature=0.5, in_batch=True), expected)
    assert torch.allclose(RankNetLoss(0.5, in_batch_negatives=True)(student, teacher), expected)
    papers = RankNetLoss(0.5)(student, teacher)  # one judged candidate: no pair to learn
    assert papers.item() == 0.0 and papers.requires_grad


def test_every_question_weighs_the_same_however_many_pairs():
    student = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    teacher = torch.tensor([[3.0, 2.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])  # 6 pairs vs 3 pairs
    assert torch.allclose(rank_net(student, teacher, None, temperature=1.0), torch.tensor(math.log(2)))


def test_all_ties_give_an_attached_zero():
    student = torch.tensor([[0.3, 0.1]], requires_grad=True)
    loss = rank_net(student, torch.tensor([[1.0, 1.0]]), None, temperature=0.05)
    assert loss.item() == 0.0 and loss.requires_grad


def test_bad_hyperparameters_raise(check_bad_hyperparameter):
    check_bad_hyperparameter(RankNetLoss, rank_net, "temperature", -0.1, 0.0)


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(RankNetLoss, {"temperature": 0.05}, "burges2005")
