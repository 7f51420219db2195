"""L0 hard-concrete gates (Louizos, Welling, Kingma 2018, arXiv 1712.01312): the learned baseline.

Each unit has a gate ``z = clamp(s̄, 0, 1)`` with ``s̄ = σ((log u − log(1 − u) + log α)/β)(ζ − γ) + γ``;
the penalty is the expected number of non-zero gates, ``Σ_j σ(log α_j − β log(−γ/ζ))``. In eval mode
the gate is ``clamp(σ(log α)(ζ − γ) + γ, 0, 1)``, exactly 0 for pruned units.

Shapes: ``U`` units; inputs are ``(..., U)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from conformer_prune.dropout.adaptive import logit
from conformer_prune.dropout.base import UnitDropout

_EPS = 1e-6


class HardConcreteGate(UnitDropout):
    """Stochastic L0 gates per unit with the expected-L0 penalty.

    Args:
        num_units: width ``U`` of the site.
        init_keep_prob: initial probability that a gate is non-zero.
        temperature: the concrete temperature ``β`` (2/3 in the paper); a callback may anneal it.
        stretch_low: ``γ`` (< 0).
        stretch_high: ``ζ`` (> 1).

    Its concrete temperature ``β`` is its own (``temperature``): the Gumbel temperature schedule of
    adaptive dropout does not drive it (``temperature_schedule = None``).
    """

    label = "L0 hard-concrete"
    role = "baseline"
    uses_alpha = True
    learns_retention = True

    def __init__(
        self,
        num_units: int,
        init_keep_prob: float = 0.9,
        temperature: float = 2.0 / 3.0,
        stretch_low: float = -0.1,
        stretch_high: float = 1.1,
    ) -> None:
        super().__init__(num_units)
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"dropout init_keep_prob must be in (0, 1), got {init_keep_prob}")
        if not (stretch_low < 0.0 and stretch_high > 1.0):
            raise ValueError("dropout stretch_low must be < 0 and stretch_high > 1")
        self.stretch_low = stretch_low
        self.stretch_high = stretch_high
        self.register_buffer("temperature", torch.tensor(float(temperature)), persistent=False)
        self._shift = math.log(-stretch_low / stretch_high)
        init = logit(init_keep_prob) + temperature * self._shift
        self.log_alpha = nn.Parameter(torch.full((num_units,), init))

    def set_temperature(self, temperature: float) -> None:
        self.temperature.fill_(temperature)

    def keep_prob(self) -> Tensor:
        """``(U,)`` probability that each gate is non-zero."""
        return torch.sigmoid(self.log_alpha - self.temperature * self._shift)

    def _stretch(self, s: Tensor) -> Tensor:
        return (s * (self.stretch_high - self.stretch_low) + self.stretch_low).clamp(0.0, 1.0)

    def mask_like(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.eval_gate().to(x.dtype)
        # float32 noise whatever the autocast dtype (a bf16 rand can return 1.0 and truncates the tail)
        u = torch.rand(x.shape, device=x.device, dtype=torch.float32).clamp_(_EPS, 1.0 - _EPS)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha.float()) / self.temperature)
        return self._stretch(s).to(x.dtype)

    def penalty(self) -> Tensor:
        """Expected number of non-zero gates (the relaxed L0 norm)."""
        return self.keep_prob().sum()

    def eval_gate(self) -> Tensor:
        return self._stretch(torch.sigmoid(self.log_alpha.detach()))
