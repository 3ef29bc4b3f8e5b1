import pytest
import torch

from ragdistill.losses import InfoNCELoss, info_nce


def test_matches_cross_entropy_reference():
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    positive = torch.tensor([[True, False, False], [False, False, True]])
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([0, 2]))
    assert torch.allclose(info_nce(scores, positive, temperature=1.0), expected)
    scaled = torch.nn.functional.cross_entropy(scores / 0.1, torch.tensor([0, 2]))
    assert torch.allclose(info_nce(scores, positive, temperature=0.1), scaled)


def test_masked_columns_leave_the_softmax():
    scores = torch.tensor([[1.0, 0.0, 100.0]])
    positive = torch.tensor([[True, False, False]])
    mask = torch.tensor([[True, True, False]])
    expected = -torch.log_softmax(torch.tensor([1.0, 0.0]), dim=0)[0]
    assert torch.allclose(info_nce(scores, positive, mask, temperature=1.0), expected)


def test_near_zero_when_positive_dominates_and_grad_reaches_student_only():
    scores = torch.tensor([[50.0, 0.0, 0.0]], requires_grad=True)
    loss = InfoNCELoss()(scores, torch.zeros(1, 3), None, torch.tensor([[True, False, False]]))
    assert loss.item() < 1e-6
    loss.backward()
    assert scores.grad is not None


@pytest.mark.parametrize("positives", [[False, False, False], [True, True, False]])
def test_rows_without_exactly_one_positive_raise(positives):
    with pytest.raises(ValueError, match="exactly one unmasked positive"):
        info_nce(torch.zeros(1, 3), torch.tensor([positives]))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="expected"):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[batch, candidates\]"):
        info_nce(torch.zeros(3), torch.zeros(3, dtype=torch.bool))


def test_module_requires_positive_mask():
    with pytest.raises(ValueError, match="positive_mask"):
        InfoNCELoss()(torch.zeros(1, 2))
