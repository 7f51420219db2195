"""SGD for the keep logits, with one step size for all of them set by the gradients' overall scale.

Adam divides every parameter's step by that parameter's own running gradient RMS. For the keep logits
β that is wrong twice over: their loss gradient is mostly noise, so Adam's unit-sized steps become a
random walk of about ``lr`` per step (units pushed low get little gradient back and stay pruned: the
walk, not the loss, decides); and the prior's pull ``2α(β − c)`` is divided by a different RMS for
every unit, so ``α`` means something else at every unit. Plain SGD has neither problem, but its
learning rate depends on the loss's scale (a CTC loss averaged per token has logit gradients near
1e-5).

:class:`SharedScaleSGD` is SGD (with optional momentum) whose step is divided by **one** running RMS of
the gradient over all its parameters. The direction and the relative size of every unit's step are
SGD's — a unit's drift is its mean gradient, loss and prior together, so units are compared on one
scale — and ``lr`` is in parameter units per step (logit units here) whatever the loss's scale.

The step size is best given as a **walk**: a logit whose gradient is pure noise moves about
``lr · sqrt(steps)`` over a run, so ``lr = walk / sqrt(total_steps)`` holds that random walk fixed
whatever the run's length, while a unit's drift (its mean gradient, ``∝ lr · steps``) grows as
``sqrt(total_steps)``: a longer run separates important from unimportant units better, and the
prior's ``α`` keeps its equilibrium ``β* = c + mean gradient / 2α`` (independent of ``lr``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class SharedScaleSGD(Optimizer):
    """``p ← p − lr · b / sqrt(v̂)`` with ``b = μ·b + g`` per parameter and ``v`` the running mean of
    ``g²`` over **all** elements of all parameters (one scalar, bias-corrected like Adam's).

    Args:
        params: parameters or parameter groups (the scale is shared across groups too).
        lr: step size in parameter units per step for a gradient at the running RMS; or give
            ``walk`` and ``total_steps`` instead.
        walk: the spread a pure-noise parameter reaches over ``total_steps`` steps (parameter units):
            ``lr = walk / sqrt(total_steps)``.
        total_steps: the run's optimiser steps (``trainer.max_steps``), with ``walk``.
        momentum: heavy-ball momentum ``μ`` (0: none).
        beta2: decay of the running mean of ``g²``.
        eps: added to ``sqrt(v̂)``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        momentum: float = 0.0,
        beta2: float = 0.99,
        eps: float = 1e-12,
        walk: float | None = None,
        total_steps: int | None = None,
    ) -> None:
        lr = self.step_size(lr, walk, total_steps)
        if lr <= 0 or not 0.0 <= momentum < 1.0 or not 0.0 < beta2 < 1.0 or eps <= 0:
            raise ValueError(
                f"SharedScaleSGD needs lr > 0, 0 <= momentum < 1, 0 < beta2 < 1, eps > 0; got lr={lr}, "
                f"momentum={momentum}, beta2={beta2}, eps={eps}"
            )
        super().__init__(params, {"lr": lr, "momentum": momentum, "beta2": beta2, "eps": eps})

    @staticmethod
    def step_size(lr: float | None, walk: float | None, total_steps: int | None) -> float:
        """``lr``, or ``walk / sqrt(total_steps)``; exactly one of the two ways."""
        if (lr is None) == (walk is None):
            raise ValueError(f"SharedScaleSGD needs lr or walk (with total_steps), not both or neither; got "
                             f"lr={lr}, walk={walk}")  # fmt: skip
        if walk is None:
            return float(lr)
        if total_steps is None or total_steps <= 0 or walk <= 0:
            raise ValueError(
                f"SharedScaleSGD(walk={walk}) needs walk > 0 and total_steps > 0 (trainer.max_steps; a run "
                f"bounded by epochs only has no step count: set trainer.max_steps); got total_steps={total_steps}"
            )
        return walk / math.sqrt(total_steps)

    def _shared_state(self) -> dict[str, Any]:
        """The scalar state lives with the first parameter, so it travels in ``state_dict``."""
        return self.state[self.param_groups[0]["params"][0]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        count = sum(g.numel() for g in grads)
        mean_sq = sum(g.float().pow(2).sum() for g in grads) / max(count, 1)
        shared = self._shared_state()
        beta2 = self.param_groups[0]["beta2"]
        shared["shared_steps"] = shared.get("shared_steps", 0) + 1
        shared["shared_sq_avg"] = beta2 * shared.get("shared_sq_avg", torch.zeros_like(mean_sq)) + (1 - beta2) * mean_sq
        scale = (shared["shared_sq_avg"] / (1 - beta2 ** shared["shared_steps"])).sqrt()
        for group in self.param_groups:
            denom = scale + group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad
                if group["momentum"]:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = p.grad.detach().clone()
                    else:
                        buf.mul_(group["momentum"]).add_(p.grad)
                    direction = buf
                p.sub_(direction * (group["lr"] / denom).to(p.dtype))
        return loss
