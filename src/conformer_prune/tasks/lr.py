"""Learning-rate schedules: pure functions of the optimiser step that multiply a group's base lr.

A schedule factory is called with ``total_steps=`` (a Hydra ``_partial_`` in ``model.scheduler`` or
``pruning.logit_scheduler``) and returns ``factor(step) -> float``; the task wraps the factors of all
parameter groups in one ``torch.optim.lr_scheduler.LambdaLR``, so the weights and the keep logits can
follow different schedules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

LRFactor = Callable[[int], float]
"""``factor(step)``: the multiplier of a parameter group's base learning rate at optimiser step ``step``."""


def warmup_cosine(total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.05) -> LRFactor:
    """Linear warm-up to the base lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` × lr
    at ``total_steps``."""
    if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError("model.scheduler needs warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def constant(total_steps: int) -> LRFactor:
    """The base lr at every step (``total_steps`` is accepted for a uniform signature)."""
    del total_steps
    return lambda step: 1.0
