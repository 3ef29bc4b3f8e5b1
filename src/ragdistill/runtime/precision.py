"""The Lightning precision to run with on this machine: bfloat16 only where the hardware computes it natively.

The configs default to ``bf16-mixed`` because on CPUs with AVX-512 (oneDNN's bfloat16 kernels; AVX-512 BF16
or AMX make them fast) it runs MiniLM 1.45-1.74x faster than float32 (``benchmarks/results/precision.md``,
measured on AVX-512-BF16 CPUs), and GPUs have bfloat16 units. On a CPU without AVX-512 (AVX2 only: most
laptops and many cloud VMs) PyTorch has no bfloat16 kernel for a matmul and falls back to a scalar loop,
so the same default makes every training step, encoding pass and LM pass several times *slower* than float32
(``benchmarks/results/precision_avx2.md``). Everything that hands a precision to Lightning passes it
through :func:`resolve_precision`, which on such a CPU runs ``32-true`` instead and says so once.

``RAGDISTILL_CPU_BF16=1`` keeps bfloat16 on such a CPU anyway (to check numerics, or to time the fallback).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import torch

logger = logging.getLogger(__name__)

FORCE_ENV = "RAGDISTILL_CPU_BF16"
"""Environment variable: ``1`` keeps a bfloat16 precision on a CPU without native bfloat16 matmuls."""

BF16_PRECISIONS = frozenset({"bf16", "bf16-mixed", "bf16-true"})
"""Lightning precisions that compute matmuls in bfloat16."""

FALLBACK = "32-true"


def runs_on_cpu(accelerator: Any) -> bool:
    """Whether Lightning's ``accelerator`` (``cpu``, ``gpu``, ``auto``, ...) will put the work on the CPU."""
    if accelerator == "auto":
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return accelerator == "cpu"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls in oneDNN's vector kernels (x86 AVX-512, ARM BF16).

    The same check PyTorch makes before sending a bfloat16 matmul to oneDNN; where it fails the matmul takes
    the scalar fallback.
    """
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16_description() -> str:
    """One line on this CPU's bfloat16 support, for benchmark headers and logs."""
    native = "native (oneDNN)" if cpu_has_native_bf16() else "not native (scalar fallback)"
    return f"{torch.backends.cpu.get_cpu_capability()}, bfloat16 matmuls {native}"


def resolve_precision(precision: Any, accelerator: Any = "auto") -> Any:
    """``precision``, or ``32-true`` when it asks for bfloat16 on a CPU that would emulate it.

    Args:
        precision: A Lightning precision (``bf16-mixed``, ``32-true``, ``None``, ...).
        accelerator: Where it runs (``cpu``, ``gpu``, ``auto``); only CPU runs are changed.

    Returns:
        The precision to hand Lightning. Unchanged on GPUs, on CPUs with native bfloat16, for every
        non-bfloat16 precision, and when ``RAGDISTILL_CPU_BF16=1``.
    """
    if str(precision) not in BF16_PRECISIONS or not runs_on_cpu(accelerator):
        return precision
    if cpu_has_native_bf16() or os.environ.get(FORCE_ENV) == "1":
        return precision
    _warn_fallback(str(precision))
    return FALLBACK


@functools.cache
def _warn_fallback(precision: str) -> None:
    logger.warning(
        "precision=%s asked for bfloat16, but this CPU (%s) would emulate it several times slower than float32: "
        "running %s instead. Set %s=1 to keep bfloat16.",
        precision,
        cpu_bf16_description(),
        FALLBACK,
        FORCE_ENV,
    )


@contextmanager
def force_cpu_bf16() -> Iterator[None]:
    """Keep bfloat16 precisions as asked inside the block, whatever the CPU (benchmarks that time both)."""
    with mock.patch.dict(os.environ, {FORCE_ENV: "1"}):
        yield
