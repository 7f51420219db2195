"""Adaptive dropout (Kubo, Cai, Bacchiani, arXiv 2412.04836): a learned retention probability per unit.

Each unit ``d`` has a trainable logit ``β_d``; its retention (keep) probability is ``σ(β_d)``. In
training the mask is the binary Gumbel-softmax ("Gumbel-sigmoid") relaxation of a Bernoulli draw::

    m_d = σ((β_d + log u − log(1 − u)) / τ),   u ~ U(0, 1)

so the ASR loss back-propagates into ``β``. The regulariser ``R = Σ_d (β_d − c(t))²`` pulls every
logit toward a target ``c(t)`` that a schedule lowers during training (the task weights it with
``pruning.alpha``); units the loss does not need follow the target down and are pruned.

In eval mode a unit with ``σ(β_d) < threshold`` is removed (gate 0) and a kept unit is scaled by
``σ(β_d)`` (``eval_mode="scale"``, the predecessor paper's test-time rule) or passed unchanged
(``"hard"``). The compactor folds exactly this gate into the neighbouring weights, so the eval
model and the compacted model compute the same function.

Choices the paper leaves open are constructor arguments (defaults from ``reference/paper.md`` §8).
Shapes: ``B`` batch, ``U`` units; inputs are ``(B, ..., U)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from conformer_prune.dropout.base import UnitDropout

NoiseGranularity = Literal["element", "utterance"]
EvalMode = Literal["scale", "hard"]

_EPS = 1e-6


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
        eval_mode: ``"scale"`` multiplies kept units by ``σ(β)`` in eval; ``"hard"`` by 1.
        threshold: units with ``σ(β) < threshold`` are pruned (eval gate 0).
    """

    def __init__(
        self,
        num_units: int,
        init_keep_prob: float = 0.9,
        temperature: float = 2.0 / 3.0,
        straight_through: bool = False,
        noise: NoiseGranularity = "element",
        inverted: bool = False,
        eval_mode: EvalMode = "scale",
        threshold: float = 0.5,
    ) -> None:
        super().__init__(num_units)
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"dropout init_keep_prob must be in (0, 1), got {init_keep_prob}")
        if temperature <= 0:
            raise ValueError(f"dropout temperature must be > 0, got {temperature}")
        if noise not in ("element", "utterance"):
            raise ValueError(f"dropout noise must be 'element' or 'utterance', got {noise!r}")
        if eval_mode not in ("scale", "hard"):
            raise ValueError(f"dropout eval_mode must be 'scale' or 'hard', got {eval_mode!r}")
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
        # Logistic noise log u - log(1 - u) = logit(u); in-place ops keep this hot path to few passes.
        logistic = torch.rand(noise_shape, device=x.device, dtype=x.dtype).logit_(_EPS)
        mask = logistic.add_(self.keep_logits.to(x.dtype)).div_(self.temperature).sigmoid_()
        if self.straight_through:
            mask = (mask > 0.5).to(x.dtype) + mask - mask.detach()
        if self.inverted:
            mask = mask / self.keep_prob().to(x.dtype).clamp_min(_EPS)
        return mask

    def penalty(self) -> Tensor:
        """``Σ_d (β_d − c)²``: the uncentred L2 toward the scheduled target ``c``."""
        return (self.keep_logits - self.target).pow(2).sum()

    def eval_gate(self) -> Tensor:
        keep_prob = self.keep_prob().detach()
        kept = keep_prob >= self.threshold
        if self.eval_mode == "hard" or self.inverted:
            return kept.to(keep_prob.dtype)
        return keep_prob * kept

    def extra_repr(self) -> str:
        return (
            f"num_units={self.num_units}, noise={self.noise}, straight_through={self.straight_through}, "
            f"inverted={self.inverted}, eval_mode={self.eval_mode}, threshold={self.threshold}"
        )
