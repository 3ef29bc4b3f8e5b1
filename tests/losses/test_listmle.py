import math

import pytest
import torch

from ragdistill.losses import ListMLELoss, list_mle

INF = math.inf


def brute_force_list_mle(student, teacher, mask, temperature, top_k=None, in_batch=False):
    """Plackett–Luce NLL of the teacher's permutation of its judged candidates, position by position, in plain Python.

    With ``in_batch`` the unjudged (-inf) columns of the mask join every normaliser as an unordered tail.
    """
    rows = []
    for b in range(student.shape[0]):
        columns = [j for j in range(student.shape[1]) if mask[b, j]]
        judged = [j for j in columns if teacher[b, j] > -INF]
        tail = [j for j in columns if teacher[b, j] == -INF] if in_batch else []
        if not judged:
            continue
        order = sorted(judged, key=lambda j: -float(teacher[b, j]))  # stable: ties in column order
        loss = 0.0
        for k, j in enumerate(order[:top_k]):
            rest = order[k:] + tail
            normaliser = math.log(sum(math.exp(float(student[b, i]) / temperature) for i in rest))
            loss -= float(student[b, j]) / temperature - normaliser
        rows.append(loss)
    return sum(rows) / len(rows)


@pytest.mark.parametrize("in_batch", [False, True])
@pytest.mark.parametrize("top_k", [None, 1, 2, 5])
@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_masks_in_batch_columns_and_ties(seed, top_k, in_batch):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randint(-3, 3, (3, 7), generator=generator).double()  # integer scores: many ties
    teacher[torch.rand(3, 7, generator=generator) < 0.25] = -INF
    teacher[:, 0] = 1.0  # every row keeps a judged column
    mask = torch.rand(3, 7, generator=generator) > 0.2
    mask[:, 0] = True
    expected = brute_force_list_mle(student, teacher, mask, 0.7, top_k, in_batch)
    got = list_mle(student, teacher, mask, temperature=0.7, top_k=top_k, in_batch=in_batch)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_top_1_is_cross_entropy_on_the_teachers_first_and_top_k_ignores_the_tail_order():
    student = torch.tensor([[0.3, 0.9, -0.2, 0.1, 0.5]])
    teacher = torch.tensor([[2.0, 5.0, 1.0, 0.0, -1.0]])
    top1 = list_mle(student, teacher, None, temperature=0.5, top_k=1)
    assert torch.allclose(top1, torch.nn.functional.cross_entropy(student / 0.5, torch.tensor([1])))
    shuffled_tail = torch.tensor([[2.0, 5.0, -1.0, 1.0, 0.0]])  # same top 2, another order below them
    assert torch.allclose(
        list_mle(student, shuffled_tail, None, temperature=0.5, top_k=2),
        list_mle(student, teacher, None, temperature=0.5, top_k=2),
    )
    assert not torch.allclose(
        list_mle(student, shuffled_tail, None, temperature=0.5), list_mle(student, teacher, None, temperature=0.5)
    )
    assert torch.allclose(
        list_mle(student, teacher, None, temperature=0.5, top_k=99), list_mle(student, teacher, None, temperature=0.5)
    )


def test_only_the_teachers_order_matters():
    student = torch.tensor([[0.2, -0.1, 0.5, 0.0]])
    teacher = torch.tensor([[-1.0, -4.0, -0.5, -2.0]])
    base = list_mle(student, teacher, None, temperature=0.1)
    assert torch.allclose(list_mle(student, teacher.exp() * 10, None, temperature=0.1), base)


def test_teacher_order_scores_lower_than_its_reverse_and_near_zero_when_sharp():
    teacher = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    agreeing = torch.tensor([[0.9, 0.6, 0.3, 0.0]])
    assert list_mle(agreeing, teacher, None, temperature=0.05) < 0.01  # 3 gaps of 6 logits: ~3·e^-6
    assert list_mle(agreeing.flip(1), teacher, None, temperature=0.05) > 10


def test_papers_form_is_the_permutation_likelihood_of_the_judged_candidates_alone():
    student = torch.tensor([[0.4, 0.1, 0.3, 0.2]])
    teacher = torch.tensor([[-1.0, -INF, -2.0, -INF]])  # columns 1, 3: other questions' passages
    x = student[0] / 0.5
    expected = -(x[0] - x[[0, 2]].logsumexp(0)) - (x[2] - x[2])
    assert torch.allclose(list_mle(student, teacher, None, temperature=0.5), expected)
    assert torch.allclose(ListMLELoss(0.5)(student, teacher), expected)


def test_in_batch_tail_sits_in_every_normaliser_but_is_never_a_position():
    student = torch.tensor([[0.4, 0.1, 0.3, 0.2]])
    teacher = torch.tensor([[-1.0, -INF, -2.0, -INF]])
    x = student[0] / 0.5
    expected = -(x[0] - x.logsumexp(0)) - (x[2] - x[[2, 1, 3]].logsumexp(0))
    assert torch.allclose(list_mle(student, teacher, None, temperature=0.5, in_batch=True), expected)
    assert torch.allclose(ListMLELoss(0.5, in_batch_negatives=True)(student, teacher), expected)


def test_bad_hyperparameters_raise(check_bad_hyperparameter):
    check_bad_hyperparameter(ListMLELoss, list_mle, "temperature", 0.0, -1.0)
    with pytest.raises(ValueError, match=r"loss\.top_k"):
        ListMLELoss(top_k=0)
    with pytest.raises(ValueError, match=r"loss\.top_k"):
        list_mle(torch.zeros(1, 2), torch.zeros(1, 2), None, temperature=1.0, top_k=0)


def test_defaults_and_citation(check_defaults_and_citation):
    check_defaults_and_citation(
        ListMLELoss, {"temperature": 0.05, "top_k": None, "in_batch_negatives": False}, "xia2008", "xia2009topk"
    )
