"""Learning-rate schedules built from a total step count only known once the Trainer has the data."""

from __future__ import annotations

from typing import Annotated

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ragdistill.utils.constraints import Bound

WarmupRatio = Annotated[float, Bound(">=", 0), Bound("<", 1)]
"""The share of training steps spent warming up: in ``[0, 1)``, as some steps must remain to decay over."""


def linear_warmup_decay(optimizer: Optimizer, total_steps: int, warmup_ratio: WarmupRatio = 0.1) -> LambdaLR:
    """Warm the learning rate up linearly over ``warmup_ratio`` of the steps, then decay it linearly to 0.

    The BERT/DPR schedule: warm-up keeps the first noisy updates from wrecking a pretrained encoder.
    """
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)
