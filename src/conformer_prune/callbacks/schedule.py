"""Shared base of the stateless schedule callbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L


def total_steps(trainer: L.Trainer) -> int:
    """The step budget schedules are expressed against (``trainer.max_steps``, else the estimate)."""
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    return int(trainer.estimated_stepping_batches)


class ScheduleCallback(L.Callback):
    """Applies ``schedule(global_step, total_steps)`` to every site of one capability before each batch.

    Holds no state: a resumed run recomputes the value from the restored global step. Subclasses set
    ``capability`` (a runtime-checkable protocol), ``apply`` and ``metric``; :meth:`drives` picks the
    modules it sets.
    """

    capability: type
    metric: str

    def __init__(self, schedule: Callable[[int, int], float]) -> None:
        self.schedule = schedule
        self.value: float | None = None

    def apply(self, site: Any, value: float) -> None:
        raise NotImplementedError

    def drives(self, module: Any) -> bool:
        """Whether this schedule sets ``module`` (by default: every module with the capability)."""
        return isinstance(module, self.capability)

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.value = float(self.schedule(trainer.global_step, total_steps(trainer)))
        for module in pl_module.modules():
            if self.drives(module):
                self.apply(module, self.value)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._update(trainer, pl_module)
        pl_module.log(self.metric, self.value, batch_size=1)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update(trainer, pl_module)
