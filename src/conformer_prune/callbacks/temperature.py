"""Gumbel temperature annealing: τ(step) pushed into every temperature-scheduled strategy."""

from __future__ import annotations

from typing import Any

from conformer_prune.callbacks.schedule import ScheduleCallback
from conformer_prune.dropout.base import TemperatureScheduled


class GumbelTemperature(ScheduleCallback):
    """Sets τ = ``schedule(global_step, max_steps)`` on every :class:`TemperatureScheduled` site whose strategy
    says this schedule drives its temperature (``temperature_schedule == "gumbel/tau"``: adaptive dropout; not
    the L0 gates, whose concrete temperature is their own).

    Logs ``gumbel/tau``.
    """

    capability = TemperatureScheduled
    metric = "gumbel/tau"

    def drives(self, module: Any) -> bool:
        return super().drives(module) and getattr(module, "temperature_schedule", None) == self.metric

    def apply(self, site: Any, value: float) -> None:
        site.set_temperature(value)
