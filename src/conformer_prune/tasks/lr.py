"""Learning-rate schedules (pure functions of the optimiser step, wrapped as ``LambdaLR``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.05
) -> LambdaLR:
    """Linear warm-up to the optimiser's lr over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio`` × lr at ``total_steps``."""
    if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError("model.scheduler needs warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def noam(optimizer: Optimizer, total_steps: int, warmup_steps: int = 10000) -> LambdaLR:
    """Transformer/Conformer schedule: linear warm-up then ``step^-0.5`` decay, peaking at the
    optimiser's lr at ``warmup_steps`` (``total_steps`` is accepted for a uniform signature)."""
    del total_steps

    def factor(step: int) -> float:
        step = step + 1
        return min(step / warmup_steps, (warmup_steps / step) ** 0.5)

    return LambdaLR(optimizer, factor)
