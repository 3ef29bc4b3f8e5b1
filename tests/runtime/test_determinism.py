"""Deterministic training keeps its kernels and loses only torch's NaN fill of new tensors."""

import pytest
import pytorch_lightning as pl
import torch

from ragdistill.runtime.determinism import skip_nan_fill


@pytest.fixture
def torch_flags():
    """Put torch's process-wide determinism flags back as they were."""
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.utils.deterministic.fill_uninitialized_memory = before[1]


def test_a_deterministic_trainer_keeps_its_kernels_without_the_nan_fill(torch_flags):
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True  # torch's default (an earlier run may have cleared it)
    pl.Trainer(accelerator="cpu", deterministic=True, logger=False, enable_progress_bar=False)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.isnan(torch.empty(64)).all()  # the fill at work: every new tensor starts as NaN
    assert skip_nan_fill()
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.utils.deterministic.fill_uninitialized_memory


def test_without_deterministic_algorithms_nothing_changes(torch_flags):
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert not skip_nan_fill()
    assert torch.utils.deterministic.fill_uninitialized_memory
