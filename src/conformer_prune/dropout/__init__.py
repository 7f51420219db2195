"""Pluggable unit-dropout strategies for the prunable sites."""

from conformer_prune.dropout.adaptive import AdaptiveDropout
from conformer_prune.dropout.base import (
    DropoutFactory,
    LearnsRetention,
    TargetScheduled,
    TemperatureScheduled,
    Thresholded,
    UnitDropout,
)
from conformer_prune.dropout.hard_concrete import HardConcreteGate
from conformer_prune.dropout.schedules import AnnealSchedule, RetentionTargetSchedule, TemperatureSchedule
from conformer_prune.dropout.standard import NoDropout, StandardDropout

__all__ = [
    "AdaptiveDropout",
    "AnnealSchedule",
    "DropoutFactory",
    "HardConcreteGate",
    "LearnsRetention",
    "NoDropout",
    "RetentionTargetSchedule",
    "StandardDropout",
    "TargetScheduled",
    "TemperatureSchedule",
    "TemperatureScheduled",
    "Thresholded",
    "UnitDropout",
]
