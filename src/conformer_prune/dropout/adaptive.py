"""Adaptive dropout (Kubo, Cai, Bacchiani, arXiv 2412.04836): a learned retention probability per unit.

Each unit ``d`` has a trainable logit ``β_d``; its retention (keep) probability is ``σ(β_d)``. In
training the mask is the binary Gumbel-softmax ("Gumbel-sigmoid") relaxation of a Bernoulli draw::

    m_d = σ((β_d + log u − log(1 − u)) / τ),   u ~ U(0, 1)

so the ASR loss back-propagates into ``β``. The regulariser ``R = Σ_d (β_d − c(t))²`` pulls every
logit toward a target ``c(t)`` that a schedule lowers during training (the task weights it with
``pruning.alpha``); units the loss does not need follow the target down and are pruned.

In eval mode a unit with ``σ(β_d) < threshold`` is removed (gate 0). A kept unit is scaled by the
expectation of its training mask, ``E[m_d]`` (``eval_mode="expected"``, the default), so the eval
model is the mean of the training model at every site that is linear in its mask. For the soft
relaxation ``E[m_d] ≠ σ(β_d)`` (at τ = 2/3: σ 0.9 → E[m] 0.855) and has no closed form; it is computed
by Gauss–Legendre quadrature over ``u``. With straight-through masks (a hard 0/1 forward) it is exactly
``σ(β_d)``. ``"scale"`` uses ``σ(β_d)`` whatever the relaxation (the predecessor paper's test-time
rule); ``"hard"`` passes kept units unchanged. The compactor folds exactly this gate into the
neighbouring weights, so the eval model and the compacted model compute the same function.

The noise and the mask are computed in float32 whatever the activation dtype: under bf16 autocast a
bf16 ``rand`` can return 1.0 and truncates the logistic tail near 5.5, so a unit at β = −10 would still
fire; the mask is cast to the activation dtype only when it multiplies.

Choices the paper leaves open are constructor arguments (defaults from ``reference/paper.md`` §8).
Shapes: ``B`` batch, ``U`` units; inputs are ``(B, ..., U)``.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from conformer_prune.dropout.base import UnitDropout

NoiseGranularity = Literal["element", "utterance"]
EvalMode = Literal["expected", "scale", "hard"]

_EPS = 1e-6
QUADRATURE_NODES = 128
"""Gauss–Legendre nodes for ``E[m]`` of the soft relaxation (max error 1e-6 at τ = 2/3, 1e-4 at τ = 0.1)."""


@functools.lru_cache(maxsize=4)
def _legendre_on_unit_interval(n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``u`` in (0, 1) and weights (summing to 1) of an ``n``-point Gauss–Legendre rule."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy((nodes + 1.0) / 2.0).float(), torch.from_numpy(weights / 2.0).float()


def expected_soft_mask(keep_logits: Tensor, temperature: float | Tensor, nodes: int = QUADRATURE_NODES) -> Tensor:
    """``E[σ((β + L)/τ)]`` with ``L = log u − log(1 − u)``, ``u ~ U(0, 1)``, per unit: ``(U,) -> (U,)``.

    Computed in float32 by Gauss–Legendre quadrature of the integral over ``u`` (no closed form).
    """
    u, weights = _legendre_on_unit_interval(nodes)
    u, weights = u.to(keep_logits.device), weights.to(keep_logits.device)
    logistic = torch.logit(u)  # (n,)
    beta = keep_logits.detach().float()[:, None]  # (U, 1)
    tau = torch.as_tensor(temperature, dtype=torch.float32, device=keep_logits.device)
    return torch.sigmoid((beta + logistic[None, :]) / tau) @ weights  # (U,)


def logit(prob: float) -> float:
    """Inverse of the logistic sigmoid."""
    return math.log(prob) - math.log1p(-prob)


class AdaptiveDropout(UnitDropout):
    """Unit dropout whose per-unit keep probability is learned through a Gumbel-sigmoid relaxation.

    Args:
        num_units: width ``U`` of the site.
        init_keep_prob: initial ``σ(β)`` of every unit; also the regulariser's initial target.
        temperature: initial Gumbel temperature ``τ`` (a callback may anneal it).
        straight_through: forward a hard 0/1 mask (``m > 0.5``) with the soft mask's gradient.
        noise: ``"element"`` draws noise per (batch, frame, unit) like standard dropout;
            ``"utterance"`` draws one mask per utterance, shared by its frames.
        inverted: divide the training mask by ``σ(β)`` (inverted dropout); eval gates are then 0/1.
        eval_mode: what multiplies a kept unit in eval: ``"expected"`` the expectation of its training
            mask (``E[m]``, divided by ``σ(β)`` when ``inverted``), ``"scale"`` ``σ(β)``, ``"hard"`` 1.
        threshold: units with ``σ(β) < threshold`` are pruned (eval gate 0).
    """

    label = "adaptive dropout"
    role = "method"
    uses_alpha = True
    learns_retention = True
    temperature_schedule = "gumbel/tau"  # the Gumbel temperature callback (callbacks/temperature.py)

    def __init__(
        self,
        num_units: int,
        init_keep_prob: float = 0.9,
        temperature: float = 2.0 / 3.0,
        straight_through: bool = False,
        noise: NoiseGranularity = "element",
        inverted: bool = False,
        eval_mode: EvalMode = "expected",
        threshold: float = 0.5,
    ) -> None:
        super().__init__(num_units)
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"dropout init_keep_prob must be in (0, 1), got {init_keep_prob}")
        if temperature <= 0:
            raise ValueError(f"dropout temperature must be > 0, got {temperature}")
        if noise not in ("element", "utterance"):
            raise ValueError(f"dropout noise must be 'element' or 'utterance', got {noise!r}")
        if eval_mode not in ("expected", "scale", "hard"):
            raise ValueError(f"dropout eval_mode must be 'expected', 'scale' or 'hard', got {eval_mode!r}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"dropout threshold must be in [0, 1), got {threshold}")
        self.straight_through = straight_through
        self.noise = noise
        self.inverted = inverted
        self.eval_mode = eval_mode
        self.threshold = threshold
        self.keep_logits = nn.Parameter(torch.full((num_units,), logit(init_keep_prob)))
        # Schedules are pure functions of the step, re-applied every step: never checkpointed.
        self.register_buffer("temperature", torch.tensor(float(temperature)), persistent=False)
        self.register_buffer("target", torch.tensor(logit(init_keep_prob)), persistent=False)

    # -- capabilities -------------------------------------------------------------------------
    def set_temperature(self, temperature: float) -> None:
        self.temperature.fill_(temperature)

    def set_target(self, target: float) -> None:
        self.target.fill_(target)

    def keep_prob(self) -> Tensor:
        """``(U,)`` retention probabilities ``σ(β)``."""
        return torch.sigmoid(self.keep_logits)

    # -- UnitDropout --------------------------------------------------------------------------
    def mask_like(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.eval_gate().to(x.dtype)
        if self.noise == "element":
            noise_shape = x.shape
        else:  # one draw per utterance: (B, 1, ..., 1, U)
            noise_shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        # float32 whatever the autocast dtype (see the module docstring). Logistic noise
        # log u - log(1 - u) = logit(u); in-place ops keep this hot path to few passes.
        logistic = torch.rand(noise_shape, device=x.device, dtype=torch.float32).logit_(_EPS)
        mask = logistic.add_(self.keep_logits.float()).div_(self.temperature).sigmoid_()
        if self.straight_through:
            mask = (mask > 0.5).float() + mask - mask.detach()
        if self.inverted:
            mask = mask / self.keep_prob().float().clamp_min(_EPS)
        return mask.to(x.dtype)

    def expected_mask(self) -> Tensor:
        """``(U,)`` expectation of the training mask (what ``eval_mode="expected"`` scales kept units by)."""
        keep_prob = self.keep_prob().detach().float()
        # a hard forward mask is 1 exactly when β + L > 0, which has probability σ(β)
        expected = keep_prob if self.straight_through else expected_soft_mask(self.keep_logits, self.temperature)
        return expected / keep_prob.clamp_min(_EPS) if self.inverted else expected

    def penalty(self) -> Tensor:
        """``Σ_d (β_d − c)²``: the uncentred L2 toward the scheduled target ``c``."""
        return (self.keep_logits - self.target).pow(2).sum()

    def eval_gate(self) -> Tensor:
        keep_prob = self.keep_prob().detach()
        kept = keep_prob >= self.threshold
        if self.eval_mode == "hard":
            return kept.to(keep_prob.dtype)
        if self.eval_mode == "scale":
            return (kept.to(keep_prob.dtype) if self.inverted else keep_prob) * kept
        return self.expected_mask().to(keep_prob.dtype) * kept

    def extra_repr(self) -> str:
        return (
            f"num_units={self.num_units}, noise={self.noise}, straight_through={self.straight_through}, "
            f"inverted={self.inverted}, eval_mode={self.eval_mode}, threshold={self.threshold}"
        )
