"""The retention-target schedule c(step) of the adaptive-dropout regulariser."""

from __future__ import annotations

from typing import Any

from conformer_prune.callbacks.schedule import ScheduleCallback
from conformer_prune.dropout.base import TargetScheduled


class RetentionTarget(ScheduleCallback):
    """Sets c = ``schedule(global_step, max_steps)`` on every :class:`TargetScheduled` site; logs ``prune/target``."""

    capability = TargetScheduled
    metric = "prune/target"

    def apply(self, site: Any, value: float) -> None:
        site.set_target(value)
