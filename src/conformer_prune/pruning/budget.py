"""A parameter budget: prune to a requested compacted size by itself, without tuning ``pruning.alpha``.

The expected parameter count of the compacted model is differentiable in the keep logits β::

    E[P](β) = P_dense − Σ_d cost_d · (1 − σ(β_d))

(``cost_d``: the parameters compaction removes with unit ``d``, from its site). The budget adds a
Lagrangian term ``λ · Σ_d (cost_d / c̄) · σ(β_d)`` to the loss (``c̄``: the mean unit cost, so ``λ`` is
a pull per unit in loss units, like the paper's ``2α(β − c)``), and a controller sets ``λ`` so that the
compacted count follows a target that falls from ``P_dense`` to the requested size between
``start_frac`` and ``end_frac`` of training (as the paper's ``c(t)`` does), then holds it:

* integral (dual ascent in log space): ``log λ_I += ki · e`` every step;
* proportional: ``λ = λ_I · exp(kp · e)``;

with ``e`` the relative error of the smaller of ``E[P]`` and the count compaction would leave now
while the target falls, of the latter alone once it holds (:meth:`ParamBudget.error`).

Working in log space makes the gains dimensionless: ``λ`` finds its own scale whatever the loss's.
Its state (``log λ_I``) is a buffer, so a resumed run continues exactly. Plain PyTorch; the task calls
:meth:`penalty` in the training step and :meth:`update` after the optimiser step.

Shapes: ``U`` units of a site.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from conformer_prune.dropout.base import LearnsRetention
from conformer_prune.dropout.schedules import AnnealSchedule
from conformer_prune.pruning.compact import count_params, encoder_of, params_if_compacted, strategy_params


class ParamBudget(nn.Module):
    """Drives the compacted parameter count to ``target`` with a Lagrange multiplier on ``E[P]``.

    Args:
        target: the compacted model's parameter count (``> 1``), or a fraction of the dense model's
            (``0 < target <= 1``); ``None`` disables the budget.
        start_frac, end_frac: the target falls linearly from the dense count to ``target`` between
            these fractions of training.
        ki: integral gain (per step, per unit of relative error).
        kp: proportional gain (per unit of relative error).
        init_multiplier: ``λ`` before the controller has raised it.
    """

    def __init__(
        self,
        target: float | None,
        start_frac: float = 0.1,
        end_frac: float = 0.6,
        ki: float = 2.0,
        kp: float = 50.0,
        init_multiplier: float = 1e-7,
    ) -> None:
        super().__init__()
        if target is not None and target <= 0:
            raise ValueError(f"pruning.target_params must be > 0 (a count, or a fraction <= 1), got {target}")
        if ki < 0 or kp < 0 or init_multiplier <= 0:
            raise ValueError("pruning.budget needs ki >= 0, kp >= 0 and init_multiplier > 0")
        self.target = target
        self.schedule_fracs = (start_frac, end_frac)
        AnnealSchedule(1.0, 0.0, "linear", start_frac, end_frac)  # validates the fractions
        self.ki, self.kp = ki, kp
        self.log_floor = math.log(init_multiplier)
        self.register_buffer("log_integral", torch.tensor(self.log_floor))
        self.dense_params = 0
        self.target_params = 0

    @property
    def enabled(self) -> bool:
        return self.target is not None

    def bind(self, net: nn.Module) -> None:
        """Record the dense count of ``net`` (its compacted size with nothing pruned) and the target."""
        encoder = encoder_of(net)
        self.dense_params = count_params(net) - strategy_params(net)
        self.target_params = int(round(self.target * self.dense_params)) if self.target <= 1 else int(self.target)
        smallest = self.dense_params - sum(s.unit_cost * s.module.num_units for s in encoder.sites())
        if not smallest < self.target_params <= self.dense_params:
            raise ValueError(
                f"pruning.target_params={self.target}: {self.target_params} parameters is outside what pruning this "
                f"model reaches ({smallest} with every unit removed .. {self.dense_params} dense)"
            )
        if not any(isinstance(s.module, LearnsRetention) for s in encoder.sites()):
            raise ValueError(
                "pruning.target_params needs a strategy that learns retention probabilities (dropout=adaptive ...)"
            )

    def target_at(self, step: int, total_steps: int) -> float:
        """The scheduled parameter target at ``step``."""
        start, end = self.schedule_fracs
        return AnnealSchedule(float(self.dense_params), float(self.target_params), "linear", start, end)(
            step, total_steps
        )

    def expected_params(self, net: nn.Module) -> Tensor:
        """``E[P]``: the differentiable expected compacted count."""
        kept: list[Tensor] = []
        removable = 0
        for site in encoder_of(net).sites():
            removable += site.unit_cost * site.module.num_units
            probs = site.module.keep_prob() if isinstance(site.module, LearnsRetention) else site.module.keep_mask()
            kept.append(site.unit_cost * probs.float().sum())
        device = kept[0].device if kept else None
        return torch.stack([k.to(device) for k in kept]).sum() + float(self.dense_params - removable)

    def mean_unit_cost(self, net: nn.Module) -> float:
        sites = encoder_of(net).sites()
        return sum(s.unit_cost * s.module.num_units for s in sites) / max(1, sum(s.module.num_units for s in sites))

    def multiplier(self, e_soft: float) -> float:
        """``λ = λ_I · exp(kp · e_soft)``."""
        return math.exp(float(self.log_integral) + self.kp * e_soft)

    def error(self, net: nn.Module, expected: float, step: int, total_steps: int) -> tuple[float, int]:
        """The controlled error (relative to the dense count) and the thresholded count.

        While the target falls, the error is that of the *smaller* of ``E[P]`` and the thresholded count:
        units on their way down count as pruned in ``E[P]`` before they cross the threshold, and kept
        units count fully in the thresholded count before their ``σ(β)`` reaches 1 — so the pull stops
        as soon as either says the target is met, instead of overshooting (pruning is nearly absorbing:
        a unit far below the threshold gets little gradient back). Once the target holds, the error is
        the thresholded count's alone: what compaction will keep.
        """
        hard = params_if_compacted(net)
        count = hard if step >= self.schedule_fracs[1] * total_steps else min(hard, expected)
        return (count - self.target_at(step, total_steps)) / self.dense_params, hard

    def penalty(self, net: nn.Module, step: int, total_steps: int) -> tuple[Tensor, dict[str, float]]:
        """The Lagrangian term to add to the loss (proportional part applied), and what to log."""
        expected = self.expected_params(net)
        e, _ = self.error(net, float(expected.detach()), step, total_steps)
        lam = self.multiplier(e)
        term = lam * expected / self.mean_unit_cost(net)
        stats = {"budget/target": self.target_at(step, total_steps), "budget/expected": float(expected.detach())}
        return term, {**stats, "budget/lambda": lam}

    @torch.no_grad()
    def update(self, net: nn.Module, step: int, total_steps: int) -> float:
        """The integral step after the optimiser step; returns the thresholded count."""
        e, hard = self.error(net, float(self.expected_params(net)), step, total_steps)
        self.log_integral.add_(self.ki * e).clamp_(min=self.log_floor)
        return float(hard)
