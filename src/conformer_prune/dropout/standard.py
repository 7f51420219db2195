"""Strategies that learn nothing: identity and standard (inverted) unit dropout."""

from __future__ import annotations

import torch
from torch import Tensor

from conformer_prune.dropout.base import UnitDropout


class NoDropout(UnitDropout):
    """Identity at every site: baselines, determinism checks and compacted models."""

    label = "dense (no dropout)"

    def mask_like(self, x: Tensor) -> Tensor:
        return x.new_ones(())

    def forward(self, x: Tensor) -> Tensor:
        return x


class StandardDropout(UnitDropout):
    """Ordinary inverted dropout of independent elements; the eval gate is all ones (nothing prunable).

    Args:
        num_units: width of the site.
        drop_prob: probability of zeroing an element in training.
    """

    label = "dense (standard dropout)"

    def __init__(self, num_units: int, drop_prob: float = 0.1) -> None:
        super().__init__(num_units)
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"dropout.drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def mask_like(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x.new_ones(())
        keep_prob = 1.0 - self.drop_prob
        return torch.empty_like(x).bernoulli_(keep_prob) / keep_prob

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.dropout(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, drop_prob={self.drop_prob}"
