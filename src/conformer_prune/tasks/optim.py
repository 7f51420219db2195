"""Optimiser set-up: the weights and the strategies' keep logits, each with its own algorithm and schedule.

The keep logits β are not weights. Their loss gradient is mostly noise (per-batch std 4–10× the mean,
``benchmarks/logit_gradient_noise.py``), and their regulariser ``α·Σ(β − c)²`` is a prior whose pull
``2α(β − c)`` should mean the same for every unit. Adam divides each step by the gradient's running
RMS, which turns that noise into a random walk of about the learning rate per step and rescales the
prior's pull unit by unit. So the logits can get an optimiser of their own (``pruning.logit_optimizer``,
e.g. plain SGD), stepped together with the weights' optimiser as one
:class:`CombinedOptimizer`, and a schedule of their own (``pruning.logit_scheduler``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from conformer_prune.tasks.lr import LRFactor, constant

OptimizerFactory = Callable[..., Optimizer]
ScheduleFactory = Callable[..., LRFactor]


class CombinedOptimizer(Optimizer):
    """Several optimisers over disjoint parameters, stepped (and checkpointed) as one.

    ``param_groups`` is the concatenation of the inner optimisers' groups (the same dicts), so a
    learning-rate scheduler, gradient clipping and the LR monitor see every group; each inner
    optimiser applies its own algorithm to its own groups.
    """

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        self.optimizers = list(optimizers)
        super().__init__([group for opt in self.optimizers for group in opt.param_groups], defaults={})

    @property
    def state(self) -> dict:  # type: ignore[override]
        """A merged view of the inner optimisers' states (they own them: the per-parameter dicts are theirs)."""
        return {param: value for opt in self.optimizers for param, value in opt.state.items()}

    @state.setter
    def state(self, value: Any) -> None:  # Optimizer.__init__ assigns an empty state: the inner ones are kept
        del value

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("optimizers")
        if saved is None or len(saved) != len(self.optimizers):
            raise ValueError(
                "the checkpoint's optimizer state does not match the configured optimizers (pruning.logit_optimizer "
                "changed since it was written?): resume with the settings it was trained with"
            )
        for opt, opt_state in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(opt_state)
        # load_state_dict gives every inner optimiser new group dicts: share them again
        self.param_groups = [group for opt in self.optimizers for group in opt.param_groups]


def parameter_groups(net: nn.Module, strategy_params: Iterable[nn.Parameter]) -> tuple[list, list, list]:
    """``(decayed, not_decayed, keep_logits)``: matrices get weight decay; biases, norms and the
    strategies' own parameters (their penalty is their regulariser) do not."""
    strategy_ids = {id(p) for p in strategy_params}
    decay, no_decay, logits = [], [], []
    for param in net.parameters():
        if not param.requires_grad:
            continue
        if id(param) in strategy_ids:
            logits.append(param)
        else:
            (no_decay if param.dim() < 2 else decay).append(param)
    return decay, no_decay, logits


def build_optimizer(
    net: nn.Module,
    strategy_params: Iterable[nn.Parameter],
    optimizer: OptimizerFactory,
    logit_optimizer: OptimizerFactory | None = None,
    logit_lr_scale: float = 1.0,
) -> tuple[Optimizer, list[bool]]:
    """The optimiser of ``net``, and for each of its parameter groups whether it holds keep logits.

    Args:
        net: the model.
        strategy_params: the dropout strategies' parameters (keep logits).
        optimizer: partial optimiser of the weights, called with parameter groups.
        logit_optimizer: partial optimiser of the keep logits; ``None`` puts them into the weights'
            optimiser as a group at ``lr × logit_lr_scale``.
        logit_lr_scale: see ``logit_optimizer``.
    """
    decay, no_decay, logits = parameter_groups(net, strategy_params)
    weights = optimizer([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
    if not logits:
        return weights, [False] * len(weights.param_groups)
    if logit_optimizer is None:
        base_lr = weights.param_groups[0]["lr"]
        weights.add_param_group({"params": logits, "weight_decay": 0.0, "lr": base_lr * logit_lr_scale})
        return weights, [False] * (len(weights.param_groups) - 1) + [True]
    logit_opt = logit_optimizer([{"params": logits}])
    combined = CombinedOptimizer([weights, logit_opt])
    return combined, [False] * len(weights.param_groups) + [True] * len(logit_opt.param_groups)


def build_scheduler(
    optimizer: Optimizer,
    is_logit_group: Sequence[bool],
    total_steps: int,
    schedule: ScheduleFactory | None,
    logit_schedule: ScheduleFactory | None,
) -> LambdaLR:
    """One ``LambdaLR`` over every group: the weights follow ``schedule``, the keep logits
    ``logit_schedule`` (``None``: a constant learning rate)."""
    weights_factor = (schedule or constant)(total_steps=total_steps)
    logit_factor = (logit_schedule or constant)(total_steps=total_steps)
    return LambdaLR(optimizer, [logit_factor if is_logit else weights_factor for is_logit in is_logit_group])
