"""The unit-dropout strategy interface and the capabilities walkers look for.

A *site* is a place in the model whose last tensor dimension holds ``U`` prunable units (FFN hidden
neurons, attention query/value dims, LConv channels; :mod:`conformer_prune.sites`). Each site owns one
:class:`UnitDropout` built by a :data:`DropoutFactory` (a Hydra ``_partial_``), so swapping the strategy
never edits a model.

A strategy declares what the rest of the code needs to know about it as class attributes (its
metadata: :attr:`UnitDropout.label`, ``role``, ``uses_alpha``, ``learns_retention``,
``temperature_schedule``); the report and the schedule callbacks read them, so a new strategy is one
class plus one ``conf/dropout`` YAML file.

Shapes: ``U`` units; inputs are ``(..., U)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


class UnitDropout(nn.Module):
    """Drops whole units along the last dim of a ``(..., U)`` tensor.

    Subclasses implement :meth:`mask_like`; ``forward`` multiplies by it. A site that must apply the
    *same* mask to two tensors (attention queries with their two relative-position biases) calls
    :meth:`mask_like` once and multiplies both.

    Metadata (class attributes; a subclass sets its own):

    * ``label``: how reports name a run that uses it (``adaptive dropout``);
    * ``role``: ``method`` (the pruning method studied), ``baseline`` (a pruning baseline) or ``dense``
      (prunes nothing: the dense reference);
    * ``uses_alpha``: its :meth:`penalty` matters, weighted by ``pruning.alpha``: runs that differ in alpha
      are different settings, not replicates;
    * ``learns_retention``: it learns a per-unit retention probability (reports say how decided it is);
    * ``temperature_schedule``: the metric of the schedule callback that sets its temperature
      (``gumbel/tau``); ``None``: nothing does (its temperature is its own, fixed).
    """

    label: ClassVar[str] = "unit dropout"
    role: ClassVar[Literal["method", "baseline", "dense"]] = "dense"
    uses_alpha: ClassVar[bool] = False
    learns_retention: ClassVar[bool] = False
    temperature_schedule: ClassVar[str | None] = None

    def __init__(self, num_units: int) -> None:
        super().__init__()
        if num_units < 0:
            raise ValueError(f"a dropout site cannot have a negative width, got num_units={num_units}")
        self.num_units = num_units

    def mask_like(self, x: Tensor) -> Tensor:
        """Multiplier broadcastable to ``x`` (``(..., U)``): a sample in train mode, the eval gate otherwise."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask_like(x)

    def penalty(self) -> Tensor:
        """Unweighted regulariser added to the loss (the task multiplies by ``pruning.alpha``)."""
        return torch.zeros(())

    def eval_gate(self) -> Tensor:
        """``(U,)`` multiplier used in eval mode; ``0`` marks a unit that compaction removes."""
        return torch.ones(self.num_units)

    def keep_mask(self) -> Tensor:
        """``(U,)`` bool: the units compaction keeps."""
        return self.eval_gate() != 0

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}"


DropoutFactory = Callable[[int], UnitDropout]
"""Builds the strategy of one site from its unit count (a Hydra ``_partial_``)."""


@runtime_checkable
class TemperatureScheduled(Protocol):
    """A strategy with a relaxation temperature set from a schedule each step."""

    def set_temperature(self, temperature: float) -> None: ...


@runtime_checkable
class TargetScheduled(Protocol):
    """A strategy whose regulariser pulls toward a target that a schedule moves each step."""

    def set_target(self, target: float) -> None: ...


@runtime_checkable
class Thresholded(Protocol):
    """A strategy whose eval gate prunes the units with a retention probability below ``threshold``."""

    threshold: float


@runtime_checkable
class LearnsRetention(Protocol):
    """A strategy with a learned per-unit retention probability (what the sparsity monitor reports)."""

    def keep_prob(self) -> Tensor: ...
