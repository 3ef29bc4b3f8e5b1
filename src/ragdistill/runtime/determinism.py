"""Deterministic training without the cost torch's debugging aid adds to it.

``trainer.deterministic: true`` (``conf/trainer/cpu.yaml``) makes Lightning call
``torch.use_deterministic_algorithms(True)``. Besides choosing deterministic kernels, that also turns on
``torch.utils.deterministic.fill_uninitialized_memory``: every tensor allocated uninitialised
(``torch.empty``, the outputs of most ops before they are written) is first filled with NaN, so that code
reading memory it never wrote shows NaN instead of leftovers. On a float32 MiniLM training step on the CPU
this fill (``aten::fill_``) was the largest gap to sentence-transformers' trainer
(benchmarks/results/training_vs_st.md). It changes nothing for code that reads only what it wrote: the same
command still gives identical metrics twice (tests/test_pipeline.py,
``test_same_command_twice_gives_the_same_metrics``).
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def skip_nan_fill() -> bool:
    """Turn off torch's NaN fill of new tensors when deterministic algorithms are on; return whether it did.

    Deterministic kernels stay on. Process-wide, like ``torch.use_deterministic_algorithms`` itself.
    """
    if not torch.are_deterministic_algorithms_enabled():
        return False
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    logger.debug("Deterministic algorithms on, NaN fill of uninitialised tensors off")
    return True
