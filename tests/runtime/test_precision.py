"""bfloat16 precisions fall back to float32 on a CPU that would emulate them, and only there."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ragdistill.runtime import precision as precision_module
from ragdistill.runtime.precision import (
    FORCE_ENV,
    cpu_bf16_description,
    cpu_has_native_bf16,
    force_cpu_bf16,
    resolve_precision,
)
from ragdistill.runtime.predict import run_predict


@pytest.fixture
def cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make this machine look like an AVX2-only CPU (whatever it really is); the warning is fresh."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(FORCE_ENV, raising=False)
    precision_module._warn_fallback.cache_clear()
    yield
    precision_module._warn_fallback.cache_clear()


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true", "bf16"])
def test_bf16_falls_back_to_float32_on_a_cpu_without_it_and_says_so(
    cpu_without_bf16: None, asked: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ragdistill.runtime.precision"):
        assert resolve_precision(asked, "cpu") == "32-true"
        assert resolve_precision(asked, "cpu") == "32-true"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, "warned once per process, not per call"
    assert asked in warnings[0] and FORCE_ENV in warnings[0]


def test_other_precisions_and_accelerators_are_left_alone(cpu_without_bf16: None) -> None:
    for asked in ("32-true", "16-mixed", None, 32):
        assert resolve_precision(asked, "cpu") == asked
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"


def test_a_cpu_with_native_bf16_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_the_environment_variable_keeps_bf16_and_the_context_restores_it(cpu_without_bf16: None) -> None:
    with force_cpu_bf16():
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert FORCE_ENV not in os.environ
    assert resolve_precision("bf16-mixed", "cpu") == "32-true"


def test_the_real_cpu_is_described() -> None:
    assert isinstance(cpu_has_native_bf16(), bool)
    assert torch.backends.cpu.get_cpu_capability() in cpu_bf16_description()


class _AutocastProbe(pl.LightningModule):
    """Returns, per batch, whether CPU autocast to bfloat16 was on while it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> bool:
        return bool(torch.is_autocast_enabled("cpu"))


def test_run_predict_runs_float32_where_bf16_would_be_emulated(cpu_without_bf16: None) -> None:
    loader = DataLoader(torch.zeros(2, 2), batch_size=1)
    assert run_predict(_AutocastProbe(), loader, "cpu", "bf16-mixed", []) == [False, False]
    with force_cpu_bf16():
        assert run_predict(_AutocastProbe(), loader, "cpu", "bf16-mixed", []) == [True, True]


def test_the_intermediate_ranker_key_holds_the_precision_it_really_trains_in(cpu_without_bf16: None) -> None:
    from ragdistill.teachers.gold import GoldTeacher
    from ragdistill.teachers.intermediate import IntermediateTeacher

    assert IntermediateTeacher(GoldTeacher(), precision="bf16-mixed", accelerator="cpu").precision == "32-true"
