"""A fixed 0/1 unit mask with standard dropout on the kept units: the magnitude-pruning baseline.

Magnitude structured pruning (``conformer_prune.baselines``) ranks the units of every site by weight
norms, keeps the top ``k`` and fine-tunes. This strategy holds that decision: pruned units are zero in
training and in eval, kept units get ordinary inverted dropout in training. The eval gate *is* the
mask, so the exporter removes the pruned units exactly as it does for adaptive dropout.

The mask is a persistent buffer (it travels in checkpoints, so the fine-tuned checkpoint exports
with its mask) and starts all ones: until a mask is set the strategy is :class:`StandardDropout`.

Shapes: ``U`` units; inputs are ``(..., U)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from conformer_prune.dropout.base import UnitDropout


class FixedMaskDropout(UnitDropout):
    """Unit dropout with a fixed keep mask (0 = pruned) and inverted dropout of the kept elements.

    Implements :class:`~conformer_prune.dropout.base.LearnsRetention` with a 0/1 retention
    probability, so the sparsity monitor and the exporter treat it as a pruning strategy.

    Args:
        num_units: width ``U`` of the site.
        drop_prob: probability of zeroing a kept element in training.

    It learns nothing (``learns_retention = False``): its 0/1 retention probability is set from outside.
    """

    label = "fixed mask"
    role = "baseline"

    def __init__(self, num_units: int, drop_prob: float = 0.1) -> None:
        super().__init__(num_units)
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"dropout drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.register_buffer("mask", torch.ones(num_units))

    @torch.no_grad()
    def set_mask(self, keep: Tensor) -> None:
        """Fix the kept units: ``keep`` is a ``(U,)`` bool (or 0/1) tensor."""
        keep = torch.as_tensor(keep)
        if keep.shape != (self.num_units,):
            raise ValueError(f"a keep mask must have shape ({self.num_units},), got {tuple(keep.shape)}")
        self.mask.copy_(keep.to(self.mask.dtype) != 0)

    def keep_prob(self) -> Tensor:
        """``(U,)`` retention probability: 1 for kept units, 0 for pruned ones."""
        return self.mask.detach().clone()

    def mask_like(self, x: Tensor) -> Tensor:
        gate = self.mask.to(x.dtype)
        if not self.training or self.drop_prob == 0.0:
            return gate
        keep_prob = 1.0 - self.drop_prob
        return gate * (torch.empty_like(x).bernoulli_(keep_prob) / keep_prob)

    def eval_gate(self) -> Tensor:
        return self.mask.detach().clone()

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, kept={int(self.mask.sum())}, drop_prob={self.drop_prob}"
